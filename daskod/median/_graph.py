"""Median tasks: one tile, all groups (or exposures) stacked in one block."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.median._kernels import nanmedian_stack
from daskod.resample._weights import build_driz_weight, weight_threshold

__all__ = ["median_of_resampled_tile", "median_of_exposures_tile", "exposure_weight_threshold",
           "has_usable_pixel", "usable_pixel_block"]


def median_of_resampled_tile(tile: Tile, groups: list[int], thresholds: Any,
                             resampled: Any) -> np.ndarray:
    """NaN-median over the drizzled groups of one tile, low-weight pixels masked.

    As the reference: ``data[wht < thr_g] = NaN`` per group ``g``, then the median over groups.
    Groups that do not touch the tile hold only NaN and are left out (same median).
    """
    if not groups:
        return np.full(tile.shape, np.nan, dtype=np.float32)
    resampled, thresholds = array_of(resampled), array_of(thresholds)
    stack = np.empty((len(groups), *tile.shape), dtype=np.float32)
    for n, g in enumerate(groups):
        block = np.asarray(resampled[(g, slice(None), *tile.slices)], dtype=np.float32)
        data, weight = block[0], block[1]
        with np.errstate(invalid="ignore"):
            data[weight < float(thresholds[g])] = np.nan
        stack[n] = data
    return nanmedian_stack(stack)


def _tile_weight(sources: dict[str, Any], region: tuple[slice, slice], weight_type: str,
                 bad_mask: int, exposure_time: float) -> np.ndarray:
    var = sources.get("var_rnoise")
    return build_driz_weight(
        np.asarray(array_of(sources["dq"])[region]), weight_type=weight_type,
        bad_mask=bad_mask,
        var_rnoise=None if var is None else np.asarray(array_of(var)[region]),
        exposure_time=exposure_time)


class _ExposureWeights:
    """One exposure's drizzle weight map, ``(ny, nx)``, computed strip by strip from its DQ
    (and VAR_RNOISE) as :func:`weight_threshold` reads it."""

    def __init__(self, sources: dict[str, Any], weight_type: str, bad_mask: int,
                 exposure_time: float) -> None:
        self.sources, self.weight_type = sources, weight_type
        self.bad_mask, self.exposure_time = bad_mask, exposure_time
        self.shape = tuple(np.shape(array_of(sources["dq"])))
        self.chunks = None

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        return _tile_weight(self.sources, (rows, slice(None)), self.weight_type,
                            self.bad_mask, self.exposure_time)


def exposure_weight_threshold(sources: dict[str, Any], *, maskpt: float, weight_type: str,
                              bad_mask: int, exposure_time: float) -> np.ndarray:
    """Weight threshold of one exposure's own weight map (``resample_data=False`` path),
    bit for bit the reference's (the map read in raster order, strip by strip)."""
    weights = _ExposureWeights(sources, weight_type, bad_mask, exposure_time)
    return np.array([weight_threshold(weights, maskpt)])


def has_usable_pixel(sources: dict[str, Any], rule: Any, *, first_rows: int = 16) -> int:
    """1 when one exposure has a usable pixel (finite SCI and a non-zero weight, as
    ``rule``, a :class:`~daskod.flag._graph.UsableRule`, counts them), else 0.

    Reads strips of rows from the top, each twice as tall as the one before, and stops at the
    first strip with a usable pixel: a few rows for any real exposure, the whole exposure
    (in a logarithmic number of reads) only when none is usable.
    """
    dq = array_of(sources["dq"])
    ny, nx = (int(n) for n in np.shape(dq))
    var = sources.get("var_rnoise")
    y, rows = 0, max(1, int(first_rows))
    while y < ny:
        region = (slice(y, min(ny, y + rows)), slice(0, nx))
        sci = np.asarray(array_of(sources["sci"])[region])
        if rule.count(sci, np.asarray(dq[region]),
                      None if var is None else np.asarray(array_of(var)[region])):
            return 1
        y, rows = y + rows, rows * 2
    return 0


def usable_pixel_block(sources: dict[str, Any], rule: Any) -> np.ndarray:
    """Task: :func:`has_usable_pixel` as a one-element block."""
    return np.array([has_usable_pixel(sources, rule)], dtype=np.int64)


def median_of_exposures_tile(tile: Tile, all_sources: list[dict[str, Any]], thresholds: Any,
                             exposure_times: list[float], *, weight_type: str,
                             bad_mask: int) -> np.ndarray:
    """``resample_data=False``: median over exposures of one detector tile, masked by weight."""
    thresholds = array_of(thresholds)
    stack = np.empty((len(all_sources), *tile.shape), dtype=np.float32)
    for n, (sources, texp) in enumerate(zip(all_sources, exposure_times, strict=True)):
        block = np.array(array_of(sources["sci"])[tile.slices], dtype=np.float32)
        weight = _tile_weight(sources, tile.slices, weight_type, bad_mask, texp)
        with np.errstate(invalid="ignore"):
            block[weight < float(thresholds[n])] = np.nan
        stack[n] = block
    return nanmedian_stack(stack)
