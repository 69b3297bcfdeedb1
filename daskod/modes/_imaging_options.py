"""Graph branches of imaging mode for the options of :mod:`daskod.modes._improved`.

Only runs with non-reference options build these: the reference's graph (and its stored
phases' fingerprints) stay as :mod:`daskod.modes.imaging` builds them.

- ``noise_model="median"``: the drizzle tasks also drizzle ERR (spec mode's drizzle, an
  ``error`` plane of the ``resampled`` store) and the median tasks also write the median
  error (``median_err``);
- ``combine="minmed"``: the drizzle tasks also propagate the variance of the drizzled values
  (a ``variance`` plane, one drizzle pass) and the median tasks apply the minmed rule;
- any option: the flag tasks use :func:`~daskod.flag._with_options.blot_and_flag_tile_with_options`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.engine._run import Context, Outputs, flag_outputs
from daskod.engine._store import fingerprint
from daskod.flag._graph import FLAG_HALO, halo_box
from daskod.flag._with_options import blot_and_flag_tile_with_options
from daskod.geometry._tiles import Tiling
from daskod.median._with_error import median_of_resampled_planes
from daskod.resample._graph import plan_group_tiles
from daskod.resample._kernels import pad_for_kernel
from daskod.resample._with_error import PLANES, resample_group_tile_planes

__all__ = ["resampled_median_with_error", "flag_resampled_with_options"]

#: Median pixels kept around the window a detector tile's blot samples (as imaging's).
_WINDOW_MARGIN = 4


def _member(plan: Any, k: int, sources: dict[str, Any], box: tuple[int, int, int, int]
            ) -> dict[str, Any]:
    region = (slice(box[0], box[1]), slice(box[2], box[3]))
    exp = plan.exposures[k]
    return {"box": box, "shape": tuple(exp.shape),
            "exposure_time": float(exp.exposure_time or 1.0), "sky": exp.sky_to_subtract(),
            **{name: src.reads(region) for name, src in sources.items()
               if name in ("sci", "err", "dq", "var_rnoise")}}


def resampled_median_with_error(plan: Any, ctx: Context, sources: list[dict[str, Any]],
                                geometry: str) -> tuple[Any, dict, str]:
    """Drizzle (data, weight and the planes the options need), weight thresholds, then the
    median frame (``plan.options.combine``) and, with ``noise_model="median"``, the median
    error per median tile.

    Returns
    -------
    median, refs, fingerprint
        The stored median frame, or ``(median, median_err)``; the median task of each
        median tile (its value is the stored array(s)) and the median's fingerprint.
    """
    p, frame, options = plan.params, plan.frame, plan.options
    planes = tuple(name for name in PLANES if name in ("data", "weight")
                   or (name == "error" and options.noise_model == "median")
                   or (name == "variance" and options.combine == "minmed"))
    tile, mtile = int(ctx.layout["tile"]), int(ctx.layout["median_tile"])
    tiling = Tiling(frame.shape, (tile, tile))
    n_groups = len(plan.groups)
    driz_fp = fingerprint(geometry, p.kernel, p.pixfrac, p.fillval, p.weight_type,
                          p.bad_mask, tile, planes)
    resampled = ctx.stored("resampled", (n_groups, len(planes), *frame.shape), np.float32,
                           (1, len(planes), tile, tile), np.nan, fingerprint=driz_fp,
                           chunks=(1, 1, mtile, mtile),
                           attributes={"kind": f"drizzled {', '.join(planes)} per group"})
    pixmaps = plan._pixmaps = [ctx.graph.data("pixmap", pm, k)
                               for k, pm in enumerate(plan.pixel_maps)]
    pad = pad_for_kernel(p.kernel)
    drizzled: dict[tuple[int, Any], Any] = {}
    for (g, t), entries in plan_group_tiles(plan.pixel_maps, plan.groups, tiling,
                                            pad).items():
        members = [_member(plan, k, sources[k], box) for k, box in entries]
        drizzled[(g, t)] = ctx.fill(
            "drizzle", (g, 0, t.i, t.j), (resampled,), resample_group_tile_planes,
            members, [pixmaps[k] for k, _ in entries], t, planes=planes, pad=pad,
            kernel=p.kernel,
            pixfrac=p.pixfrac, fillval=p.fillval, weight_type=p.weight_type,
            bad_mask=p.bad_mask)
    thr_refs, thr_fp = plan._group_thresholds(ctx, drizzled, resampled, driz_fp)
    median_fp = fingerprint(thr_fp, mtile, options.combine)
    median = ctx.stored("median", frame.shape, np.float32, (mtile, mtile), np.nan,
                        fingerprint=median_fp, attributes={"kind": "median frame"})
    targets = (median,)
    if "error" in planes:
        targets += (ctx.stored("median_err", frame.shape, np.float32, (mtile, mtile), np.nan,
                               fingerprint=median_fp,
                               attributes={"kind": "median of the drizzled errors"}),)
    refs = {}
    for t in Tiling(frame.shape, (mtile, mtile)):
        big = tiling.containing(t.y0, t.x0)
        here = [g for g in range(n_groups) if (g, big) in drizzled]
        refs[(t.i, t.j)] = ctx.fill(
            "median", (t.i, t.j), targets, median_of_resampled_planes,
            t, here, [thr_refs[g] for g in here], [drizzled[(g, big)] for g in here],
            planes=planes, combine=options.combine)
    return (targets if len(targets) > 1 else median), refs, median_fp


def flag_resampled_with_options(plan: Any, ctx: Context, sources: list[dict[str, Any]],
                                median: Any, median_refs: dict, median_fp: str) -> Outputs:
    """Blot and flag every detector tile with ``plan.options`` (noise model, source noise).

    ``median`` is the stored median frame, or ``(median, median_err)`` when the median error
    was computed.
    """
    p, frame, options = plan.params, plan.frame, plan.options
    tile, mtile = int(ctx.layout["tile"]), int(ctx.layout["median_tile"])
    fallback = median if isinstance(median, tuple) else (median,)
    tasks, stores = [], []
    for k, exp in enumerate(plan.exposures):
        backg = exp.background_for_flagging(p.backg)
        flag_fp = fingerprint(median_fp, k, p.snr_pair, p.scale_pair, backg,
                              options.noise_model, options.source_noise)
        stores.append(plan._flag_stores(ctx, k, tile, flag_fp))
        refs = {}
        for t in Tiling(exp.shape, (tile, tile)):
            box = halo_box(t, exp.shape, FLAG_HALO)
            window = plan.pixel_maps[k].output_window(*box, margin=_WINDOW_MARGIN,
                                                      shape=frame.shape)
            deps = _window_refs(median_refs, window, mtile) if window else [fallback]
            refs[(t.i, t.j)] = ctx.fill(
                "flag", (k, t.i, t.j), stores[-1], blot_and_flag_tile_with_options,
                {name: s.reads((slice(box[0], box[1]), slice(box[2], box[3])))
                 for name, s in sources[k].items()},
                plan._pixmaps[k], t, deps, shape=exp.shape, window=window or (0, 0, 0, 0),
                median_shape=frame.shape, snr=p.snr_pair, scale=p.scale_pair, backg=backg,
                noise_model=options.noise_model, source_noise=float(options.source_noise),
                usable=plan._usable_rule(k), block=(t.i, t.j))
        tasks.append(refs)
    return flag_outputs(ctx, tasks, stores)


def _window_refs(refs: dict[tuple[int, int], Any], window: tuple[int, int, int, int],
                 mtile: int) -> list[Any]:
    y0, y1, x0, x1 = window
    return [refs[(i, j)] for i in range(y0 // mtile, (y1 - 1) // mtile + 1)
            for j in range(x0 // mtile, (x1 - 1) // mtile + 1) if (i, j) in refs]
