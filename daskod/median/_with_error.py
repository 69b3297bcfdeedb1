"""Median tasks that also combine the drizzled errors (imaging ``noise_model="median"`` and
``combine="minmed"``): one tile, all groups."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.median._kernels import minmed_stack
from daskod.spec._kernels import mask_below_threshold
from daskod.spec._tasks import median_spec_tile

__all__ = ["median_and_error_of_resampled_tile"]


def median_and_error_of_resampled_tile(tile: Tile, groups: list[int], thresholds: Any,
                                       resampled: Any, *, combine: str
                                       ) -> tuple[np.ndarray, np.ndarray]:
    """Median frame and median error of one tile from ``(G, 3, ny, nx)`` drizzled planes
    (image, weight, error).

    Each group's image and error are masked where its weight is below its threshold (as
    the reference masks the data, and spec mode the errors); ``combine="median"`` takes
    both NaN-medians (spec mode's median), ``"minmed"``
    (:func:`~daskod.median._kernels.minmed_stack`) the minimum at low coverage.

    Returns
    -------
    median, median_err : ndarray of float32, shape ``tile.shape``
    """
    resampled, thresholds = array_of(resampled), array_of(thresholds)
    if not groups:
        empty = np.full(tile.shape, np.nan, dtype=np.float32)
        return empty, empty.copy()
    blocks = np.stack([np.asarray(resampled[(g, slice(None), *tile.slices)], dtype=np.float32)
                       for g in groups])
    limits = [float(thresholds[g]) for g in groups]
    if combine == "median":
        return median_spec_tile(blocks[:, 0], blocks[:, 2], blocks[:, 1], limits)
    data = np.empty((len(groups), *tile.shape), dtype=np.float32)
    err = np.empty_like(data)
    for n, limit in enumerate(limits):
        data[n], err[n] = mask_below_threshold(blocks[n, 0], blocks[n, 2], blocks[n, 1], limit)
    return minmed_stack(data, err)
