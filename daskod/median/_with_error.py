"""Median tasks of the imaging options: one tile, all groups, from drizzled planes (image,
weight, and the ERR and/or variance planes of :mod:`daskod.resample._with_error`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.median._kernels import minmed_stack, nanmedian_stack

__all__ = ["median_of_resampled_planes"]


def median_of_resampled_planes(tile: Tile, groups: list[int], thresholds: Any, resampled: Any,
                               *, planes: tuple[str, ...], combine: str
                               ) -> tuple[np.ndarray, ...]:
    """Median frame (and median error) of one tile from ``(G, len(planes), ny, nx)`` blocks.

    Each group's planes are masked where its weight is below its threshold (as the
    reference masks the data, and spec mode the errors). ``combine="median"``: the
    NaN-median of the data; ``"minmed"``: :func:`~daskod.median._kernels.minmed_stack` with
    each drizzled value's standard deviation from the ``variance`` plane. With an ``error``
    plane, the NaN-median of the drizzled errors too (spec mode's ``median_err``).

    Returns
    -------
    tuple of ndarray of float32, shape ``tile.shape``
        ``(median,)`` or ``(median, median_err)``.
    """
    n_out = 2 if "error" in planes else 1
    if not groups:
        return tuple(np.full(tile.shape, np.nan, dtype=np.float32) for _ in range(n_out))
    resampled, thresholds = array_of(resampled), array_of(thresholds)
    index = {name: planes.index(name) for name in planes}
    stacks: dict[str, np.ndarray] = {name: np.empty((len(groups), *tile.shape), np.float32)
                                     for name in ("data", "error", "variance") if name in index}
    for n, g in enumerate(groups):
        block = np.asarray(resampled[(g, slice(None), *tile.slices)], dtype=np.float32)
        weight, limit = block[index["weight"]], float(thresholds[g])
        with np.errstate(invalid="ignore"):
            low = weight < limit
        for name, stack in stacks.items():
            stack[n] = np.where(low, np.float32(np.nan), block[index[name]])
    if combine == "minmed":
        median = minmed_stack(stacks["data"], np.sqrt(stacks["variance"]))[0]
    else:
        median = nanmedian_stack(stacks["data"])
    if n_out == 1:
        return (median,)
    return median, nanmedian_stack(stacks["error"])
