"""Flag tasks: one detector tile of one exposure (blot the median, compare, update DQ)."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.blot._kernels import blot_tile, median_window_for
from daskod.flag._kernels import (
    apply_outlier_flags,
    flag_crs,
    flag_resampled_crs,
    nan_or_unusable_flags,
)
from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile

__all__ = ["FLAG_HALO", "blot_and_flag_tile", "flag_tile_against_median", "blot_region",
           "update_dq_block"]

#: Detector pixels around a tile that the rule needs: 1 for the 3x3 growth of the first
#: pass, 1 more for the derivative of the blot behind it.
FLAG_HALO = 2

_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def _halo_box(tile: Tile, shape: tuple[int, int], halo: int) -> tuple[int, int, int, int]:
    return (max(tile.y0 - halo, 0), min(tile.y1 + halo, shape[0]),
            max(tile.x0 - halo, 0), min(tile.x1 + halo, shape[1]))


def blot_region(pixel_map: PixelMap, box: tuple[int, int, int, int], median: Any,
                median_shape: tuple[int, int]) -> np.ndarray:
    """Blot of the median frame on detector pixels ``box`` (NaN outside the median)."""
    pixmap = pixel_map.evaluate(*box)
    window = median_window_for(pixmap, median_shape)
    if window is None:
        return np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
    y0, y1, x0, x1 = window
    return blot_tile(np.asarray(median[y0:y1, x0:x1]), pixmap, (y0, x0), median_shape)


def update_dq_block(sources: dict[str, Any], region: tuple[slice, ...], cr: np.ndarray,
                    out: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """New DQ of one block of an exposure or cube: ``|= 17`` where ``cr``, then DO_NOT_USE
    wherever SCI/ERR/VAR (``arrays`` holds SCI and ERR of the block; the variances are read
    here) is NaN, as the reference's NaN matching.

    Returns
    -------
    dict
        ``n``: pixels flagged as outliers; ``dq``: the new DQ block, unless it was written
        to ``out[region]``.
    """
    dq = np.asarray(sources["dq"][region]).astype(np.uint32)
    dq = apply_outlier_flags(dq, cr)
    for key in _VARIANCES:
        if sources.get(key) is not None:
            arrays[key] = np.asarray(sources[key][region])
    dq = nan_or_unusable_flags(dq, arrays)
    n = int(np.count_nonzero(cr))
    if out is not None:
        out[region] = dq
        return {"n": n}
    return {"dq": dq, "n": n}


def _crop(a: np.ndarray, tile: Tile, y0: int, x0: int) -> np.ndarray:
    return a[tile.y0 - y0:tile.y1 - y0, tile.x0 - x0:tile.x1 - x0]


def blot_and_flag_tile(
    sources: dict[str, Any],
    pixel_map: PixelMap,
    tile: Tile,
    *,
    shape: tuple[int, int],
    median: Any,
    median_shape: tuple[int, int],
    snr: tuple[float, float],
    scale: tuple[float, float],
    backg: float,
    out: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """The reference's resampled flag rule on one detector tile.

    Returns
    -------
    dict
        ``dq``: the updated DQ tile (uint32; absent when written to ``out``); ``n``: pixels
        flagged as outliers.
    """
    box = _halo_box(tile, shape, FLAG_HALO)
    y0, y1, x0, x1 = box
    blot = blot_region(pixel_map, box, median, median_shape)
    sci = np.asarray(sources["sci"][y0:y1, x0:x1])
    err = np.asarray(sources["err"][y0:y1, x0:x1])
    cr = flag_resampled_crs(sci, err, blot, snr1=snr[0], snr2=snr[1], scale1=scale[0],
                            scale2=scale[1], backg=backg)
    arrays = {"sci": _crop(sci, tile, y0, x0), "err": _crop(err, tile, y0, x0)}
    return update_dq_block(sources, tile.slices, _crop(cr, tile, y0, x0), out, arrays)


def flag_tile_against_median(
    sources: dict[str, Any], tile: Tile, *, median: Any, snr1: float, out: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """``resample_data=False``: ``|S - median| > snr1 * err`` on one detector tile."""
    sci = np.asarray(sources["sci"][tile.slices])
    err = np.asarray(sources["err"][tile.slices])
    med = np.asarray(median[tile.slices])
    cr = flag_crs(sci, err, med, snr1=snr1)
    return update_dq_block(sources, tile.slices, cr, out, {"sci": sci, "err": err})
