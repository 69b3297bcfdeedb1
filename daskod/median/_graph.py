"""Median tasks: one output tile, all groups in one block, written to the working store."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._tiles import Tile
from daskod.median._kernels import nanmedian_stack
from daskod.resample._weights import build_driz_weight, compute_weight_threshold

__all__ = ["median_of_resampled_tile", "median_of_exposures_tile", "exposure_weight_threshold",
           "count_usable_pixels"]


def median_of_resampled_tile(
    tile: Tile,
    groups: list[int],
    thresholds: list[float],
    *,
    data: Any,
    wht: Any,
    median: Any,
    after: Any = None,
) -> int:
    """NaN-median over the drizzled groups of one tile, low-weight pixels masked.

    As the reference: ``data[wht < thr_g] = NaN`` per group ``g``, then the median over groups.
    Groups that do not touch the tile hold only NaN and are left out (same median).
    Returns the number of finite median pixels.
    """
    stack = np.empty((len(groups), *tile.shape), dtype=np.float32)
    for n, (g, thr) in enumerate(zip(groups, thresholds, strict=True)):
        block = np.asarray(data[(g, *tile.slices)], dtype=np.float32)
        weight = np.asarray(wht[(g, *tile.slices)])
        block[weight < thr] = np.nan
        stack[n] = block
    result = nanmedian_stack(stack)
    median[tile.slices] = result
    return int(np.count_nonzero(np.isfinite(result)))


def exposure_weight_threshold(sources: dict[str, Any], tiles: list[Tile], *, maskpt: float,
                              weight_type: str, bad_mask: int, exposure_time: float) -> float:
    """Weight threshold of one exposure's own weight map (``resample_data=False`` path)."""
    parts = []
    for tile in tiles:
        weight = _tile_weight(sources, tile, weight_type, bad_mask, exposure_time)
        parts.append(weight[np.isfinite(weight) & (weight != 0)])
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)
    return float(compute_weight_threshold(values, maskpt))


def count_usable_pixels(sources: dict[str, Any], tiles: list[Tile], *, weight_type: str,
                        bad_mask: int, exposure_time: float) -> int:
    """Pixels of one exposure with a finite SCI value and a non-zero weight."""
    n = 0
    for tile in tiles:
        weight = _tile_weight(sources, tile, weight_type, bad_mask, exposure_time)
        sci = np.asarray(sources["sci"][tile.slices])
        n += int(np.count_nonzero(np.isfinite(sci) & (weight > 0)))
    return n


def _tile_weight(sources: dict[str, Any], tile: Tile, weight_type: str, bad_mask: int,
                 exposure_time: float) -> np.ndarray:
    var = sources.get("var_rnoise")
    return build_driz_weight(
        np.asarray(sources["dq"][tile.slices]), weight_type=weight_type, bad_mask=bad_mask,
        var_rnoise=None if var is None else np.asarray(var[tile.slices]),
        exposure_time=exposure_time)


def median_of_exposures_tile(
    tile: Tile,
    all_sources: list[dict[str, Any]],
    thresholds: list[float],
    exposure_times: list[float],
    *,
    weight_type: str,
    bad_mask: int,
    median: Any,
    after: Any = None,
) -> int:
    """``resample_data=False``: median over exposures of one detector tile, masked by weight."""
    stack = np.empty((len(all_sources), *tile.shape), dtype=np.float32)
    for n, (sources, thr, texp) in enumerate(
            zip(all_sources, thresholds, exposure_times, strict=True)):
        block = np.array(sources["sci"][tile.slices], dtype=np.float32)
        weight = _tile_weight(sources, tile, weight_type, bad_mask, texp)
        block[weight < thr] = np.nan
        stack[n] = block
    result = nanmedian_stack(stack)
    median[tile.slices] = result
    return int(np.count_nonzero(np.isfinite(result)))
