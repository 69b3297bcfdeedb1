"""daskod: out-of-core outlier detection for stacks of astronomical exposures.

The JWST calibration pipeline's outlier-detection science (drizzle each exposure group onto
a common grid, median, blot back, flag) as a chunked Dask engine over Zarr: the same answer,
in a fixed memory budget, on one core or a cluster.

Public names are imported on first use, so that worker processes, which only need the task
modules, start quickly and small.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "detect_outliers": "daskod._api",
    "OutlierDetection": "daskod._api",
    "OutlierResult": "daskod._result",
    "estimate_memory": "daskod._estimate",
    "clean_leftovers": "daskod.io._leftovers",
    "read_parameter_file": "daskod._parameters",
    "write_parameter_file": "daskod._parameters",
    "read_jwst": "daskod.io._jwst",
    "Exposure": "daskod.exposure",
    "Cube": "daskod.cube",
    "flag_cr": "daskod.flag._kernels",
    "abs_deriv": "daskod.flag._kernels",
    "set_options": "daskod.options",
    "options": "daskod.options",
    "datasets": "daskod.datasets",
    "DaskodError": "daskod._exceptions",
    "InputError": "daskod._exceptions",
    "WCSError": "daskod._exceptions",
    "OutputTooLargeError": "daskod._exceptions",
    "MemoryBudgetError": "daskod._exceptions",
    "StoreError": "daskod._exceptions",
    "ProductExistsError": "daskod._exceptions",
    "DaskodWarning": "daskod._exceptions",
    "SkippedWarning": "daskod._exceptions",
    "InputWarning": "daskod._exceptions",
    "ImplausibleFlagsWarning": "daskod._exceptions",
}

__all__ = [
    "detect_outliers",
    "OutlierDetection",
    "OutlierResult",
    "estimate_memory",
    "clean_leftovers",
    "read_parameter_file",
    "write_parameter_file",
    "read_jwst",
    "Exposure",
    "Cube",
    "flag_cr",
    "abs_deriv",
    "set_options",
    "options",
    "datasets",
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
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'daskod' has no attribute {name!r}"
        raise AttributeError(msg)
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
