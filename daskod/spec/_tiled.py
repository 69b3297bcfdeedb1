"""A sequential tile driver of spec mode: the blueprint of the Dask wiring.

:func:`detect_spec_outliers_tiled` runs the work units of :mod:`daskod.spec._tasks` over a
regular tiling, one after the other, with in-memory intermediates. It exists to prove (in
the tests) that every tile size gives the whole-frame prototype's answer bit for bit, and to
show the engine what each phase reads and writes; it is not the out-of-core engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import parse_pair
from daskod.geometry._spec_pixel_map import compute_spectral_pixel_map, input_pixel_range
from daskod.geometry._tiles import Tiling
from daskod.resample._kernels import pad_for_kernel
from daskod.resample._weights import build_driz_weight, compute_weight_threshold
from daskod.spec._dense import SpecDenseResult, group_indices
from daskod.spec._frame import build_spec_frame
from daskod.spec._tasks import (
    SpecMember,
    blot_and_flag_spec_tile,
    drizzle_spec_group_tile,
    exposure_weight_values,
    flag_spec_tile_unresampled,
    median_spec_tile,
    plan_spec_tiles,
)

__all__ = ["detect_spec_outliers_tiled"]


def _sources(exp: Any) -> dict[str, Any]:
    out = {"sci": exp.sci, "err": exp.err, "dq": exp.dq}
    out.update(exp.variance_arrays())
    return out


def detect_spec_outliers_tiled(
    exposures: list[Any], *, tile: int | tuple[int, int], resample_data: bool = True,
    weight_type: str = "ivm", pixfrac: float = 1.0, kernel: str = "square",
    fillval: str = "NAN", good_bits: str | int | None = "~DO_NOT_USE", maskpt: float = 0.7,
    snr: str | tuple[float, float] = "5.0 4.0", scale: str | tuple[float, float] = "1.2 0.7",
    backg: float = 0.0,
) -> SpecDenseResult:
    """Spectroscopic outlier detection of one source, tile by tile (same parameters and
    result as :func:`~daskod.spec._dense.detect_spec_outliers_dense`; ``tile`` is the edge
    of output and input tiles)."""
    tile_shape = (tile, tile) if isinstance(tile, int) else tuple(tile)
    if len(exposures) < 2:
        return SpecDenseResult(status="FAILED", dq=[np.asarray(e.dq[...]) for e in exposures],
                               n_flagged=[0] * len(exposures))
    snr1, snr2 = parse_pair(snr, "snr")
    scale1, scale2 = parse_pair(scale, "scale")
    bad_mask = interpret_good_bits(good_bits)
    out = SpecDenseResult(status="COMPLETE", dq=[], n_flagged=[])
    if not resample_data:
        shape = exposures[0].shape
        tiles = list(Tiling(shape, tile_shape))
        thresholds = []
        for exp in exposures:
            values = [exposure_weight_values(_sources(exp), t, weight_type=weight_type,
                                             bad_mask=bad_mask,
                                             exposure_time=float(exp.exposure_time))
                      for t in tiles]
            thresholds.append(compute_weight_threshold(np.concatenate(values), maskpt))
        out.median = np.empty(shape, np.float32)
        out.median_err = np.empty(shape, np.float32)
        for t in tiles:
            data = np.stack([np.asarray(e.sci[t.slices]) for e in exposures])
            err = np.stack([np.asarray(e.err[t.slices]) for e in exposures])
            wht = np.stack([build_driz_weight(
                np.asarray(e.dq[t.slices]), weight_type=weight_type, bad_mask=bad_mask,
                var_rnoise=None if e.var_rnoise is None else np.asarray(e.var_rnoise[t.slices]),
                exposure_time=float(e.exposure_time)) for e in exposures])
            out.median[t.slices], out.median_err[t.slices] = median_spec_tile(
                data, err, wht, thresholds)
        _flag_all(out, exposures, tile_shape, lambda exp, pm, t: flag_spec_tile_unresampled(
            _sources(exp), t, median=out.median, median_err=out.median_err, snr1=snr1))
        return out
    frame = build_spec_frame(exposures, bad_mask=bad_mask)
    out.frame = frame
    out.groups = group_indices(exposures)
    maps = [compute_spectral_pixel_map(e.wcs, frame, e.shape) for e in exposures]
    pad = pad_for_kernel(kernel)
    tiles = list(Tiling(frame.shape, tile_shape))
    n_groups = len(out.groups)
    data = np.full((n_groups, *frame.shape), np.nan, np.float32)
    err = np.full((n_groups, *frame.shape), np.nan, np.float32)
    wht = np.zeros((n_groups, *frame.shape), np.float32)
    plan = plan_spec_tiles(maps, out.groups, tiles, pad)
    for (g, t), entries in plan.items():
        members = [SpecMember(index=k, sources=_sources(exposures[k]), box=box,
                              pixel_range=input_pixel_range(exposures[k].wcs.bounding_box,
                                                            exposures[k].shape),
                              exposure_time=float(exposures[k].exposure_time),
                              sky=exposures[k].sky_to_subtract()) for k, box in entries]
        data[(g, *t.slices)], wht[(g, *t.slices)], err[(g, *t.slices)] = (
            drizzle_spec_group_tile(members, [maps[k] for k, _ in entries], t, pad=pad,
                                    kernel=kernel, pixfrac=pixfrac, fillval=fillval,
                                    weight_type=weight_type, bad_mask=bad_mask))
    out.thresholds = []
    for g in range(n_groups):
        values = [wht[(g, *t.slices)] for (gg, t) in plan if gg == g]
        values = [v[np.isfinite(v) & (v != 0)] for v in values]
        out.thresholds.append(compute_weight_threshold(
            np.concatenate(values) if values else np.empty(0, np.float32), maskpt))
    out.median = np.empty(frame.shape, np.float32)
    out.median_err = np.empty(frame.shape, np.float32)
    for t in tiles:
        out.median[t.slices], out.median_err[t.slices] = median_spec_tile(
            data[(slice(None), *t.slices)], err[(slice(None), *t.slices)],
            wht[(slice(None), *t.slices)], out.thresholds)
    _flag_all(out, exposures, tile_shape, lambda exp, pm, t: blot_and_flag_spec_tile(
        _sources(exp), pm, t, shape=exp.shape, median=out.median, median_err=out.median_err,
        median_shape=frame.shape, snr=(snr1, snr2), scale=(scale1, scale2),
        backg=exp.background_for_flagging(backg)), maps)
    return out


def _flag_all(out: SpecDenseResult, exposures: list[Any], tile_shape: tuple[int, int],
              flag_tile: Any, maps: list[Any] | None = None) -> None:
    for k, exp in enumerate(exposures):
        dq = np.empty(exp.shape, np.uint32)
        n = 0
        for t in Tiling(exp.shape, tile_shape):
            res = flag_tile(exp, None if maps is None else maps[k], t)
            dq[t.slices] = res["dq"]
            n += res["n"]
        out.dq.append(dq)
        out.n_flagged.append(n)
