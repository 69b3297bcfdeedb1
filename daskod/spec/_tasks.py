"""Spec-mode work units for a tiled engine: one (group, output tile), one input tile.

These are what the Dask engine schedules (pure functions of small arguments and array
sources that support ``[y0:y1, x0:x1]``); run over any tiling they give bitwise the same
drizzled tiles, medians and flags as the whole-frame prototype
(:func:`~daskod.spec._dense.detect_spec_outliers_dense`), which the tests check.

Phases with resampling (per source):

1. frame + exact pixel maps (:func:`~daskod.spec._frame.build_spec_frame`,
   :func:`~daskod.geometry.compute_spectral_pixel_map`); the table of which slit boxes land on
   which output tile is imaging's ``plan_group_tiles`` (full maps answer
   ``input_box_for`` exactly);
2. :func:`drizzle_spec_group_tile` per (group, tile): data, weight and error chunks;
3. the group's weight threshold over all its weight tiles (imaging's
   ``group_weight_threshold``), then :func:`median_spec_tile` per tile (data and error);
4. :func:`blot_and_flag_spec_tile` per input tile (2-pixel halo) reading the median and
   ``median_err`` windows its pixel map reaches.

Without resampling: :func:`exposure_weight_values` per input tile gathered into one threshold
per exposure, :func:`median_spec_tile` over exposures per tile, :func:`flag_spec_tile_unresampled`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.blot._kernels import median_window_for
from daskod.flag._kernels import apply_outlier_flags, nan_or_unusable_flags
from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.median._kernels import nanmedian_stack
from daskod.resample._kernels import drizzle_tile_with_error
from daskod.resample._weights import build_driz_weight
from daskod.spec._kernels import (
    blot_pair,
    flag_spec_resampled,
    flag_spec_unresampled,
    mask_below_threshold,
)

__all__ = ["SpecMember", "FLAG_HALO", "SELECT_MARGIN", "plan_spec_tiles",
           "drizzle_spec_group_tile", "median_spec_tile", "blot_and_flag_spec_tile",
           "exposure_weight_values", "flag_spec_tile_unresampled", "update_spec_dq"]

#: Input pixels around a tile that the flag rule needs (3x3 growth + derivative).
FLAG_HALO = 2
#: Output pixels around a padded tile within which input pixel centres are kept.
SELECT_MARGIN = 3.0
_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


@dataclass(frozen=True)
class SpecMember:
    """What a drizzle task needs of one slit: array sources, its sub-box for this tile
    (``(iy0, iy1, ix0, ix1)``, half-open, from ``PixelMap.input_box_for``), the reference's
    pixel range of the whole slit (inclusive ``xmin, xmax, ymin, ymax``), exposure time and
    the sky level subtracted before drizzling."""

    index: int
    sources: dict[str, Any]
    box: tuple[int, int, int, int]
    pixel_range: tuple[int, int, int, int]
    exposure_time: float
    sky: float


def plan_spec_tiles(pixel_maps: list[PixelMap], groups: list[list[int]], tiles: list[Tile],
                    pad: int) -> dict[tuple[int, Tile], list[tuple[int, tuple[int, ...]]]]:
    """For every (group, tile) that receives data: its members and their sub-boxes (the
    table of which slits land on which output tile)."""
    plan = {}
    for tile in tiles:
        for g, members in enumerate(groups):
            entries = []
            for k in members:
                box = pixel_maps[k].input_box_for(tile.x0 - pad, tile.x1 + pad,
                                                  tile.y0 - pad, tile.y1 + pad,
                                                  margin=SELECT_MARGIN)
                if box is not None:
                    entries.append((k, box))
            if entries:
                plan[(g, tile)] = entries
    return plan


def _read(source: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    iy0, iy1, ix0, ix1 = box
    return np.asarray(source[iy0:iy1, ix0:ix1])


def drizzle_spec_group_tile(
    members: list[SpecMember], pixel_maps: list[PixelMap], tile: Tile, *, pad: int,
    kernel: str, pixfrac: float, fillval: str | float, weight_type: str, bad_mask: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drizzle one group's data and errors onto one output tile (padded, then cropped).

    Each member's sub-box keeps one pixel around what lands in the padded tile (drizzle
    interpolates pixel corners between neighbouring centres); only pixels inside the slit's
    pixel range are drizzled, as the reference limits them.

    Returns
    -------
    img, wht, err : ndarray of float32, shape ``tile.shape``
    """
    oy0, ox0 = tile.y0 - pad, tile.x0 - pad
    inputs = []
    for member, pixel_map in zip(members, pixel_maps, strict=True):
        iy0, iy1, ix0, ix1 = member.box
        xmin, xmax, ymin, ymax = member.pixel_range
        local = (max(xmin - ix0, 0), min(xmax - ix0, ix1 - ix0 - 1),
                 max(ymin - iy0, 0), min(ymax - iy0, iy1 - iy0 - 1))
        src = member.sources
        var = src.get("var_rnoise")
        weight = build_driz_weight(_read(src["dq"], member.box), weight_type=weight_type,
                                   bad_mask=bad_mask,
                                   var_rnoise=None if var is None else _read(var, member.box),
                                   exposure_time=member.exposure_time)
        data = _read(src["sci"], member.box).astype(np.float32, copy=False)
        if member.sky:
            data = data - np.float32(member.sky)
        pixmap = pixel_map.evaluate(*member.box)
        pixmap[..., 0] -= ox0
        pixmap[..., 1] -= oy0
        inputs.append((data, _read(src["err"], member.box), weight, pixmap,
                       member.exposure_time, local))
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    img, wht, err = drizzle_tile_with_error(inputs, out_shape, kernel=kernel, pixfrac=pixfrac,
                                            fillval=fillval)
    crop = np.s_[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    return img[crop], wht[crop], err[crop]


def median_spec_tile(data: np.ndarray, err: np.ndarray, wht: np.ndarray,
                     thresholds: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-median over groups (or exposures) of one tile of ``(G, ty, tx)`` stacks, each
    layer masked where its weight is below its threshold; returns ``(median, median_err)``."""
    masked_d, masked_e = [], []
    for g, thr in enumerate(thresholds):
        d, e = mask_below_threshold(data[g], err[g], wht[g], float(thr))
        masked_d.append(d)
        masked_e.append(e)
    return nanmedian_stack(np.stack(masked_d)), nanmedian_stack(np.stack(masked_e))


def update_spec_dq(sources: dict[str, Any], region: tuple[slice, slice], cr: np.ndarray,
                   arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``DQ |= 17`` where ``cr``, then ``DO_NOT_USE`` wherever SCI/ERR/VAR_* is NaN (the
    variances are read here; ``arrays`` holds SCI and ERR of the region)."""
    dq = apply_outlier_flags(np.asarray(sources["dq"][region]), cr)
    for key in _VARIANCES:
        if sources.get(key) is not None:
            arrays[key] = np.asarray(sources[key][region])
    return nan_or_unusable_flags(dq, arrays)


def blot_and_flag_spec_tile(
    sources: dict[str, Any], pixel_map: PixelMap, tile: Tile, *, shape: tuple[int, int],
    median: Any, median_err: Any, median_shape: tuple[int, int],
    snr: tuple[float, float], scale: tuple[float, float], backg: float,
) -> dict[str, Any]:
    """Blot the median and ``median_err`` onto one input tile (with a 2-pixel halo) and apply
    the resampled rule with the blotted error as the noise term.

    ``median`` and ``median_err`` are whole-frame sources (sliced here to the window the
    pixel map reaches).

    Returns
    -------
    dict
        ``dq`` (the tile's new DQ, uint32) and ``n`` (outliers flagged in the tile).
    """
    y0, y1 = max(tile.y0 - FLAG_HALO, 0), min(tile.y1 + FLAG_HALO, shape[0])
    x0, x1 = max(tile.x0 - FLAG_HALO, 0), min(tile.x1 + FLAG_HALO, shape[1])
    pixmap = pixel_map.evaluate(y0, y1, x0, x1)
    window = median_window_for(pixmap, median_shape)
    if window is None:
        blot = np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
        blot_err = blot
    else:
        wy0, wy1, wx0, wx1 = window
        blot, blot_err = blot_pair(np.asarray(median[wy0:wy1, wx0:wx1]),
                                   np.asarray(median_err[wy0:wy1, wx0:wx1]), pixmap,
                                   median_shape, origin=(wy0, wx0))
    sci = np.asarray(sources["sci"][y0:y1, x0:x1])
    cr = flag_spec_resampled(sci, blot, blot_err, snr=snr, scale=scale, backg=backg)
    crop = np.s_[tile.y0 - y0:tile.y1 - y0, tile.x0 - x0:tile.x1 - x0]
    arrays = {"sci": sci[crop], "err": np.asarray(sources["err"][tile.slices])}
    cr = cr[crop]
    return {"dq": update_spec_dq(sources, tile.slices, cr, arrays),
            "n": int(np.count_nonzero(cr))}


def exposure_weight_values(sources: dict[str, Any], tile: Tile, *, weight_type: str,
                           bad_mask: int, exposure_time: float) -> np.ndarray:
    """The finite non-zero weights of one input tile (gathered per exposure into its
    threshold without resampling)."""
    var = sources.get("var_rnoise")
    w = build_driz_weight(np.asarray(sources["dq"][tile.slices]), weight_type=weight_type,
                          bad_mask=bad_mask,
                          var_rnoise=None if var is None else np.asarray(var[tile.slices]),
                          exposure_time=exposure_time)
    return w[np.isfinite(w) & (w != 0)]


def flag_spec_tile_unresampled(sources: dict[str, Any], tile: Tile, *, median: Any,
                               median_err: Any, snr1: float) -> dict[str, Any]:
    """Without resampling: ``|SCI - median| > snr1 * median_err`` on one input tile."""
    sci = np.asarray(sources["sci"][tile.slices])
    cr = flag_spec_unresampled(sci, np.asarray(median[tile.slices]),
                               np.asarray(median_err[tile.slices]), snr1=snr1)
    arrays = {"sci": sci, "err": np.asarray(sources["err"][tile.slices])}
    return {"dq": update_spec_dq(sources, tile.slices, cr, arrays),
            "n": int(np.count_nonzero(cr))}
