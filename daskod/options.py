"""Package-wide options: defaults for the memory budget, tiles and temporary space.

Use :func:`set_options` as a global setter or as a context manager::

    with daskod.set_options(memory_limit="512MiB", temp_dir="/scratch"):
        daskod.detect_outliers(exposures)

Each option can also be set through Dask's configuration under ``daskod.<name>`` (for
example the environment variable ``DASK_DASKOD__TEMP_DIR``); an explicit ``set_options`` wins.
"""

from __future__ import annotations

import tempfile
from typing import Any, TypedDict

__all__ = ["OPTIONS", "get_option", "set_options", "parse_bytes"]


class _Options(TypedDict):
    memory_limit: int | str | None
    tile_size: int | None
    temp_dir: str | None
    max_output_pixels: int
    pixmap_stepsize: float
    pixmap_order: int
    implausible_flag_fraction: float | None


#: Current values.
#:
#: - ``memory_limit``: bytes (or a string like ``"2GiB"``) the whole run may use; None means
#:   a quarter of the machine's memory, at most 4 GiB.
#: - ``tile_size``: tile edge in pixels; None derives it from the memory limit.
#: - ``temp_dir``: where working stores and temporary files go; None means the system's
#:   temporary folder.
#: - ``max_output_pixels``: refuse output frames larger than this (default 2**32).
#: - ``pixmap_stepsize``: coarse pixel-map grid step in detector pixels (default 16; 1 means
#:   evaluate the WCS on every pixel like the reference's default).
#: - ``pixmap_order``: spline order of the coarse pixel map (default 3).
#: - ``implausible_flag_fraction``: warn (``ImplausibleFlagsWarning``) when a run flags more
#:   than this fraction of an exposure's usable pixels (default 0.05; None: never).
OPTIONS: _Options = {
    "memory_limit": None,
    "tile_size": None,
    "temp_dir": None,
    "max_output_pixels": 2**32,
    "pixmap_stepsize": 16,
    "pixmap_order": 3,
    "implausible_flag_fraction": 0.05,
}
_SET_EXPLICITLY: set[str] = set()


def parse_bytes(value: int | float | str | None) -> int | None:
    """Parse ``"1GiB"``, ``"512 MB"``, ``2e9`` or None into bytes."""
    if value is None:
        return None
    if isinstance(value, int | float):
        if value <= 0:
            msg = f"A byte count must be positive, got {value!r}."
            raise ValueError(msg)
        return int(value)
    from dask.utils import parse_bytes as _parse

    try:
        out = int(_parse(str(value)))
    except (ValueError, TypeError) as err:
        msg = f"Could not read {value!r} as a size; write it like '1GiB' or '512MB'."
        raise ValueError(msg) from err
    if out <= 0:
        msg = f"A byte count must be positive, got {value!r}."
        raise ValueError(msg)
    return out


def get_option(name: str) -> Any:
    """The value of one option, looking at ``dask.config`` under ``daskod.<name>`` too."""
    if name not in OPTIONS:
        msg = f"Unknown daskod option {name!r}; known options: {sorted(OPTIONS)}."
        raise KeyError(msg)
    if name not in _SET_EXPLICITLY:
        import dask

        value = dask.config.get(f"daskod.{name}", default=None)
        if value is not None:
            return value
    return OPTIONS[name]


def default_temp_dir() -> str:
    """The folder that holds working stores when none is given."""
    return get_option("temp_dir") or tempfile.gettempdir()


class set_options:
    """Set daskod options globally or, as a context manager, for a block of code.

    Parameters
    ----------
    **kwargs
        Any of the keys of :data:`OPTIONS` (see its documentation).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._old: dict[str, Any] = {}
        self._old_explicit = set(_SET_EXPLICITLY)
        for key, value in kwargs.items():
            if key not in OPTIONS:
                msg = f"Unknown daskod option {key!r}; known options: {sorted(OPTIONS)}."
                raise ValueError(msg)
            if key == "memory_limit":
                parse_bytes(value)
            if key == "implausible_flag_fraction" and value is not None and not (
                    0.0 < float(value) <= 1.0):
                msg = f"implausible_flag_fraction must be in (0, 1] or None, got {value!r}."
                raise ValueError(msg)
            self._old[key] = OPTIONS[key]
            OPTIONS[key] = value
            _SET_EXPLICITLY.add(key)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self._old)
        _SET_EXPLICITLY.clear()
        _SET_EXPLICITLY.update(self._old_explicit)
