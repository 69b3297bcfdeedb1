"""daskod: out-of-core outlier detection for stacks of astronomical exposures."""

from daskod._exceptions import (
    DaskodError,
    DaskodWarning,
    InputError,
    MemoryBudgetError,
    OutputTooLargeError,
    SkippedWarning,
    StoreError,
    WCSError,
)
from daskod.exposure import Exposure

__version__ = "0.1.0"

__all__ = [
    "Exposure",
    "DaskodError",
    "InputError",
    "WCSError",
    "OutputTooLargeError",
    "MemoryBudgetError",
    "StoreError",
    "DaskodWarning",
    "SkippedWarning",
    "__version__",
]
