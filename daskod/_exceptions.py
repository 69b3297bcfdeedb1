"""Exceptions and warnings raised by daskod.

Every exception subclasses a built-in, so ``except ValueError`` in user code keeps working.
Messages state the rule, the offending value and the fix.
"""

from __future__ import annotations

__all__ = [
    "DaskodError",
    "InputError",
    "WCSError",
    "OutputTooLargeError",
    "MemoryBudgetError",
    "StoreError",
    "ProductExistsError",
    "DaskodWarning",
    "SkippedWarning",
    "InputWarning",
    "ImplausibleFlagsWarning",
]


class DaskodError(Exception):
    """Base class of every error raised on purpose by daskod."""


class InputError(DaskodError, ValueError):
    """An input exposure (or cube) is malformed; the message names it and the problem.

    Attributes
    ----------
    exposure : str or None
        The name of the offending exposure, when there is one.
    """

    def __init__(self, msg: str, *, exposure: str | None = None) -> None:
        super().__init__(msg)
        self.exposure = exposure


class WCSError(InputError):
    """An exposure's WCS is missing, or cannot map its pixels to the sky and back."""


class OutputTooLargeError(DaskodError, ValueError):
    """The output (median) frame would be absurdly large, usually from bad pointing metadata.

    Attributes
    ----------
    shape : tuple of int
        The output frame shape (ny, nx) that was computed.
    nbytes : int
        Bytes one float32 frame of that shape would take.
    exposure : str or None
        The exposure whose footprint lies farthest from the others, when there are several.
    """

    def __init__(self, msg: str, *, shape: tuple[int, int], nbytes: int,
                 exposure: str | None = None) -> None:
        super().__init__(msg)
        self.shape = shape
        self.nbytes = nbytes
        self.exposure = exposure


class MemoryBudgetError(DaskodError, MemoryError):
    """The memory budget cannot be met by any tile size; the message says what would fit."""


class StoreError(DaskodError, OSError):
    """A store, output or temporary location cannot be created, reached or written.

    Attributes
    ----------
    needed, free : int or None
        Bytes a run needs and bytes free, when the error is about free space.
    """

    def __init__(self, msg: str, *, needed: int | None = None,
                 free: int | None = None) -> None:
        super().__init__(msg)
        self.needed = needed
        self.free = free


class ProductExistsError(DaskodError, FileExistsError):
    """Products a run would write exist already and the run may not replace them.

    Attributes
    ----------
    paths : list of str
        The existing products.
    """

    def __init__(self, msg: str, *, paths: list[str]) -> None:
        super().__init__(msg)
        self.paths = list(paths)


class DaskodWarning(UserWarning):
    """Base class of daskod's warnings."""


class SkippedWarning(DaskodWarning):
    """The step was skipped (as the reference does), e.g. fewer than two groups."""


class InputWarning(DaskodWarning):
    """An input looks implausible (e.g. ERR zero where SCI is valid); the run goes on, but
    its flags are probably wrong. The message names the exposure, the array and the cause.

    Attributes
    ----------
    exposure : str or None
        The name of the exposure.
    """

    def __init__(self, msg: str, *, exposure: str | None = None) -> None:
        super().__init__(msg)
        self.exposure = exposure


class ImplausibleFlagsWarning(DaskodWarning):
    """A run flagged an implausible share of an exposure's usable pixels (see
    :func:`daskod._flag_fractions.check_flag_fractions`): the inputs probably disagree."""
