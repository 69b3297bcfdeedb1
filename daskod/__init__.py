"""daskod: out-of-core outlier detection for stacks of astronomical exposures.

The JWST calibration pipeline's outlier-detection science (drizzle each exposure group onto
a common grid, median, blot back, flag) as a chunked Dask engine over Zarr: the same answer,
in a fixed memory budget, on one core or a cluster.
"""

from daskod import options
from daskod._api import OutlierDetection, detect_outliers
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
from daskod._result import OutlierResult
from daskod.exposure import Exposure
from daskod.flag._kernels import abs_deriv, flag_cr
from daskod.options import set_options

__version__ = "0.1.0"

__all__ = [
    "detect_outliers",
    "OutlierDetection",
    "OutlierResult",
    "Exposure",
    "flag_cr",
    "abs_deriv",
    "set_options",
    "options",
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
