"""Spec-mode block functions of the Dask engine (pure numpy on one block; no Dask).

Each reads its inputs through :func:`daskod.io._store.array_of` (an input read in place, or
the stored blocks its task depends on) and returns one numpy block per stored target. The
stored arrays hold every input (or every source) of a run, stacked along their first axis and
padded to the largest (one array per phase, not one per slit: a MOS run has hundreds of
slits); :func:`padded_blocks` pads a block function's result to its stored block. Run
over any tiling they give bitwise the same drizzled tiles, medians and flags as the
whole-frame oracle (:func:`~daskod.spec._dense.detect_spec_outliers_dense`); the tests check
it on every scheduler and several tile sizes. The graph that wires them is
:mod:`daskod.modes.spec`.

Per source, with resampling:

1. :func:`pixel_map_block` per input tile: the exact detector -> frame map, stored
   (16 bytes per input pixel; evaluated once, read by the drizzle and the flag tasks);
2. :func:`drizzle_spec_group_tile` per (group, output tile): data, weight and error planes;
   each member's sub-box is found from its stored map when the task runs;
3. the group's weight threshold (imaging's
   :func:`~daskod.resample._graph.group_weight_threshold`: the weight is plane 1 here too),
   then :func:`median_spec_tile` per median tile: median and ``median_err``;
4. :func:`blot_and_flag_spec_tile` per input tile (2-pixel halo): blot both, flag.

Without resampling: imaging's per-exposure threshold, :func:`median_spec_exposures_tile`
and :func:`flag_spec_tile_unresampled`. Sources with fewer than two inputs:
:func:`unchanged_dq_tile`.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from daskod.blot._kernels import median_window_for
from daskod.flag._kernels import apply_outlier_flags, nan_or_unusable_flags
from daskod.geometry._spec_pixel_map import StoredPixelMap, spectral_map_block
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.median._kernels import nanmedian_stack
from daskod.resample._kernels import drizzle_tile_with_error
from daskod.resample._weights import build_driz_weight, compute_weight_threshold
from daskod.spec._kernels import (
    blot_pair,
    flag_spec_resampled,
    flag_spec_unresampled,
    mask_below_threshold,
)

__all__ = ["FLAG_HALO", "SELECT_MARGIN", "padded_blocks", "pixel_map_block",
           "drizzle_spec_group_tile", "spec_group_threshold", "median_spec_tile",
           "median_spec_exposures_tile", "blot_and_flag_spec_tile", "flag_spec_tile_unresampled",
           "unchanged_dq_tile", "update_spec_dq", "total_count"]

#: Input pixels around a tile that the flag rule needs (3x3 growth + derivative).
FLAG_HALO = 2
#: Output pixels around a padded tile within which input pixel centres are kept.
SELECT_MARGIN = 3.0
_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def _read(source: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    iy0, iy1, ix0, ix1 = box
    return np.asarray(array_of(source)[iy0:iy1, ix0:ix1])


def padded_blocks(shapes: list[tuple[int, ...]], fills: list[Any], func: Any, *args: Any,
                  **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` with each returned block padded (at its end, with
    ``fills[n]``) to ``shapes[n]``, the stored block it is written to (a slit's last tiles
    are smaller than the stacked array's, which is padded to the largest slit)."""
    values = func(*args, **kwargs)
    single = not isinstance(values, tuple)
    out = []
    for value, shape, fill in zip((values,) if single else values, shapes, fills,
                                  strict=True):
        value = np.asarray(value)
        value = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
        if value.shape != tuple(shape):
            block = np.full(shape, fill, dtype=value.dtype)
            block[tuple(slice(0, n) for n in value.shape)] = value
            value = block
        out.append(value)
    return out[0] if single else tuple(out)


def _pixel_map(stored: Any, k: int, shape: tuple[int, int]) -> StoredPixelMap:
    """Input ``k``'s stored map (``stored``: the value of its map tasks)."""
    array = array_of(stored)
    return StoredPixelMap(array, k, shape, rows=array.block[2])


def pixel_map_block(wcs: Any, frame: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    """The exact map of one band of an input: ``(2, h, w)`` output x and y (float64).

    The WCS and the frame are copied first (a pickle round trip: 3-4 ms, half a deep copy's
    time, against ~45 ms for evaluating a slit's WCS chain): astropy models are not
    documented as safe to evaluate from several threads at once, and the frame is shared by
    a source's inputs.
    """
    return spectral_map_block(pickle.loads(pickle.dumps(wcs)),
                              pickle.loads(pickle.dumps(frame)), box)


def drizzle_spec_group_tile(
    members: list[dict[str, Any]], maps: list[Any], tile: Tile, *, pad: int, kernel: str,
    pixfrac: float, fillval: str | float, weight_type: str, bad_mask: int,
) -> np.ndarray:
    """Drizzle one group's data and errors onto one output tile (padded, then cropped).

    ``members`` (one dict per input of the group: ``index`` and ``shape`` of the input,
    ``sources``, ``pixel_range`` -- the reference's drizzled range of the whole input,
    inclusive ``xmin, xmax, ymin, ymax`` -- ``exposure_time`` and ``sky``) is aligned with
    ``maps`` (the values of their pixel-map tasks). Each
    member's sub-box is the pixels landing near the padded tile plus a one-pixel ring
    (drizzle interpolates pixel corners between neighbouring centres); only pixels inside
    the pixel range are drizzled, as the reference limits them.

    Returns
    -------
    ndarray of float32, shape (3, ty, tx)
        Drizzled data, weight and error of the tile (``fillval`` / 0 where nothing landed).
    """
    oy0, ox0 = tile.y0 - pad, tile.x0 - pad
    inputs = []
    for member, stored in zip(members, maps, strict=True):
        pixel_map = _pixel_map(stored, member["index"], member["shape"])
        box = pixel_map.input_box_for(tile.x0 - pad, tile.x1 + pad, tile.y0 - pad,
                                      tile.y1 + pad, margin=SELECT_MARGIN)
        if box is None:
            continue
        iy0, iy1, ix0, ix1 = box
        xmin, xmax, ymin, ymax = member["pixel_range"]
        local = (max(xmin - ix0, 0), min(xmax - ix0, ix1 - ix0 - 1),
                 max(ymin - iy0, 0), min(ymax - iy0, iy1 - iy0 - 1))
        src = member["sources"]
        var = src.get("var_rnoise")
        weight = build_driz_weight(_read(src["dq"], box), weight_type=weight_type,
                                   bad_mask=bad_mask,
                                   var_rnoise=None if var is None else _read(var, box),
                                   exposure_time=member["exposure_time"])
        data = _read(src["sci"], box).astype(np.float32, copy=False)
        if member["sky"]:
            data = data - np.float32(member["sky"])
        pixmap = pixel_map.evaluate(*box)
        pixmap[..., 0] -= ox0
        pixmap[..., 1] -= oy0
        inputs.append((data, _read(src["err"], box), weight, pixmap,
                       member["exposure_time"], local))
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    img, wht, err = drizzle_tile_with_error(inputs, out_shape, kernel=kernel, pixfrac=pixfrac,
                                            fillval=fillval)
    crop = np.s_[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    return np.stack([img[crop], wht[crop], err[crop]]).astype(np.float32, copy=False)


def spec_group_threshold(resampled: Any, source: int, group: int, tiles: list[Tile],
                         maskpt: float) -> np.ndarray:
    """The reference's weight threshold of one group, gathered from its drizzled tiles
    (only finite non-zero weights count, so the tiles equal the whole frame)."""
    resampled = array_of(resampled)
    parts = []
    for tile in tiles:
        w = np.asarray(resampled[(source, group, 1, *tile.slices)])
        parts.append(w[np.isfinite(w) & (w != 0)])
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)
    return np.array([compute_weight_threshold(values, maskpt)])


def median_spec_tile(tile: Tile, source: int, n_groups: int, thresholds: Any,
                     resampled: Any) -> tuple[np.ndarray, np.ndarray]:
    """NaN-median over groups of one tile of the drizzled data and, separately, errors, each
    group masked where its weight is below its threshold; ``(median, median_err)``."""
    resampled, thresholds = array_of(resampled), array_of(thresholds)
    data, err = [], []
    for g in range(n_groups):
        block = np.asarray(resampled[(source, g, slice(None), *tile.slices)],
                           dtype=np.float32)
        d, e = mask_below_threshold(block[0], block[2], block[1],
                                    float(thresholds[source, g]))
        data.append(d)
        err.append(e)
    return nanmedian_stack(np.stack(data)), nanmedian_stack(np.stack(err))


def _weight(sources: dict[str, Any], region: tuple[slice, slice], *, weight_type: str,
            bad_mask: int, exposure_time: float) -> np.ndarray:
    var = sources.get("var_rnoise")
    return build_driz_weight(
        np.asarray(array_of(sources["dq"])[region]), weight_type=weight_type,
        bad_mask=bad_mask, var_rnoise=None if var is None else np.asarray(array_of(var)[region]),
        exposure_time=exposure_time)


def median_spec_exposures_tile(tile: Tile, source: int, all_sources: list[dict[str, Any]],
                               thresholds: Any, exposure_times: list[float], *,
                               weight_type: str, bad_mask: int
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Without resampling: the NaN-median over inputs of one detector tile of SCI and of
    ERR, each input masked where its own weight is below its threshold."""
    thresholds = array_of(thresholds)[source]
    data, err = [], []
    for n, (sources, texp) in enumerate(zip(all_sources, exposure_times, strict=True)):
        weight = _weight(sources, tile.slices, weight_type=weight_type, bad_mask=bad_mask,
                         exposure_time=texp)
        d, e = mask_below_threshold(np.asarray(array_of(sources["sci"])[tile.slices]),
                                    np.asarray(array_of(sources["err"])[tile.slices]),
                                    weight, float(thresholds[n]))
        data.append(d)
        err.append(e)
    return nanmedian_stack(np.stack(data)), nanmedian_stack(np.stack(err))


def update_spec_dq(sources: dict[str, Any], region: tuple[slice, slice], cr: np.ndarray,
                   arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``DQ |= 17`` where ``cr``, then ``DO_NOT_USE`` wherever SCI/ERR/VAR_* is NaN (the
    variances are read here; ``arrays`` holds SCI and ERR of the region); ``(dq, count)``."""
    dq = apply_outlier_flags(np.asarray(array_of(sources["dq"])[region]).astype(np.uint32),
                             cr)
    for key in _VARIANCES:
        if sources.get(key) is not None:
            arrays[key] = np.asarray(array_of(sources[key])[region])
    return (nan_or_unusable_flags(dq, arrays),
            np.array([np.count_nonzero(cr)], dtype=np.int64))


def _median_pair(median: Any) -> tuple[Any, Any]:
    """The stored median and median_err from the value of a median task (or a list)."""
    while isinstance(median, list):
        median = median[0]
    return median[0], median[1]


def blot_and_flag_spec_tile(
    sources: dict[str, Any], pixel_map: Any, tile: Tile, median: Any, *, input_index: int,
    source: int, shape: tuple[int, int], median_shape: tuple[int, int],
    snr: tuple[float, float], scale: tuple[float, float], backg: float,
    keep_blot: bool = False,
) -> tuple[np.ndarray, ...]:
    """Blot the median and ``median_err`` onto one tile of input ``input_index`` (with a
    2-pixel halo) and apply the resampled rule with the blotted error as the noise term.

    ``pixel_map`` is the value of the input's map tasks, ``median`` of its source's
    (``source``) median tasks: the stored median and median_err, sliced here to the window
    the tile's pixel map reaches.

    Returns
    -------
    dq, count : ndarray
        The tile's new DQ (uint32) and its outlier count (shape (1,)).
    blot : ndarray, shape (2, ty, tx)
        Only with ``keep_blot``: the blotted median and median_err of the tile.
    """
    stored_median, stored_err = _median_pair(median)
    y0, y1 = max(tile.y0 - FLAG_HALO, 0), min(tile.y1 + FLAG_HALO, shape[0])
    x0, x1 = max(tile.x0 - FLAG_HALO, 0), min(tile.x1 + FLAG_HALO, shape[1])
    pixmap = _pixel_map(pixel_map, input_index, shape).evaluate(y0, y1, x0, x1)
    window = median_window_for(pixmap, median_shape)
    if window is None:
        blot = np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
        blot_err = blot.copy()
    else:
        wy0, wy1, wx0, wx1 = window
        blot, blot_err = blot_pair(np.asarray(stored_median[source, wy0:wy1, wx0:wx1]),
                                   np.asarray(stored_err[source, wy0:wy1, wx0:wx1]), pixmap,
                                   median_shape, origin=(wy0, wx0))
    sci = np.asarray(array_of(sources["sci"])[y0:y1, x0:x1])
    cr = flag_spec_resampled(sci, blot, blot_err, snr=snr, scale=scale, backg=backg)
    crop = np.s_[tile.y0 - y0:tile.y1 - y0, tile.x0 - x0:tile.x1 - x0]
    arrays = {"sci": sci[crop], "err": np.asarray(array_of(sources["err"])[tile.slices])}
    out = update_spec_dq(sources, tile.slices, cr[crop], arrays)
    if keep_blot:
        out = (*out, np.stack([blot[crop], blot_err[crop]]))
    return out


def flag_spec_tile_unresampled(sources: dict[str, Any], tile: Tile, median: Any, *,
                               source: int, snr1: float) -> tuple[np.ndarray, np.ndarray]:
    """Without resampling: ``|SCI - median| > snr1 * median_err`` on one input tile;
    ``(dq, count)``."""
    stored_median, stored_err = _median_pair(median)
    sci = np.asarray(array_of(sources["sci"])[tile.slices])
    region = (source, *tile.slices)
    cr = flag_spec_unresampled(sci, np.asarray(stored_median[region]),
                               np.asarray(stored_err[region]), snr1=snr1)
    arrays = {"sci": sci, "err": np.asarray(array_of(sources["err"])[tile.slices])}
    return update_spec_dq(sources, tile.slices, cr, arrays)


def unchanged_dq_tile(sources: dict[str, Any], tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """The DQ of an input whose source was skipped (fewer than two inputs), unchanged."""
    dq = np.asarray(array_of(sources["dq"])[tile.slices]).astype(np.uint32)
    return dq, np.zeros(1, dtype=np.int64)


def total_count(counts: Any, index: int, _written: list[Any]) -> np.ndarray:
    """Outliers of input ``index``: the sum of its tiles' counts, read after they were
    written."""
    return np.array([int(np.asarray(array_of(counts)[index]).sum())], dtype=np.int64)
