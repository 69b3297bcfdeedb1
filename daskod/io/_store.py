"""Input arrays as the tasks see them, and the bytes a run writes into its working store.

Layout of the working store (one Zarr v3 group per run; see :mod:`daskod.engine._store`)::

    inputs/<k>/<name>     copies of inputs that tasks cannot read in place
    resampled             (groups, 2, ny, nx) drizzled image and weight per group
    thresholds            (groups,) weight threshold per group
    median                (ny, nx) median frame
    outputs/<k>/dq        new DQ per exposure; outputs/<k>/count: outliers per tile
    manifest/<array>      one checksum per written block of each array above
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["INPUT_ARRAYS", "is_zarr_array", "array_of", "reads_in_place", "ingested_bytes",
           "store_bytes"]

#: The arrays of an Exposure or Cube that tasks read.
INPUT_ARRAYS = ("sci", "err", "dq", "var_rnoise", "var_poisson", "var_flat")


def is_zarr_array(obj: Any) -> bool:
    """True for a ``zarr.Array`` (read directly, never copied)."""
    try:
        import zarr
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, zarr.Array)


def array_of(value: Any) -> Any:
    """The array a task reads: a source given as the list of the stored blocks a region
    spans (all the same stored array), the first of several stored arrays a task wrote, or
    the array itself."""
    while isinstance(value, list | tuple):
        value = value[0]
    return value


def reads_in_place(value: Any, *, shares_memory: bool) -> bool:
    """Whether tasks read ``value`` where it is: zarr arrays and lazy file arrays always,
    numpy arrays when tasks run in this process; Dask arrays and numpy arrays bound for
    other processes are copied into the working store first."""
    if isinstance(value, np.ndarray):
        return shares_memory
    return not (hasattr(value, "dask") and hasattr(value, "chunks"))


def ingested_bytes(container: Any, *, shares_memory: bool) -> int:
    """Bytes copied into the store for one Exposure/Cube (4 per pixel of every array that is
    not read in place). Reads no pixel."""
    total = 0
    for name in INPUT_ARRAYS:
        value = getattr(container, name, None)
        if value is None or reads_in_place(value, shares_memory=shares_memory):
            continue
        total += 4 * int(np.prod(np.shape(value)))
    return total


def store_bytes(containers: list[Any], *, shares_memory: bool, frame_pixels: int = 0,
                n_groups: int = 0, median_pixels: int = 0) -> int:
    """Bytes a run writes into its working store, at most (arrays are compressed).

    Ingested copies of inputs, the new DQ of every input (4 bytes per pixel), the drizzled
    groups (image and weight: ``n_groups * frame_pixels * 8``) and the median
    (``median_pixels * 4``).
    """
    total = 8 * n_groups * int(frame_pixels) + 4 * int(median_pixels)
    for item in containers:
        total += ingested_bytes(item, shares_memory=shares_memory)
        total += 4 * int(np.prod(np.shape(item.dq)))
    return total
