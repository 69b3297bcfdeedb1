"""The graph of the IFU cube method (``ifu_method="cube"``; block functions and the method's
description in :mod:`daskod.ifu.cube_method` and :mod:`daskod.ifu._cube_tasks`).

``coordinates`` (geometry, computed when the graph is built: the grid depends on it) ->
``cube`` (exposure, plane chunk) -> ``threshold`` (exposure) -> ``median`` (plane chunk) ->
``flag`` (exposure, detector tile).
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import numpy as np

from daskod.engine._run import Context, Outputs, flag_outputs
from daskod.engine._store import fingerprint
from daskod.flag._graph import halo_box
from daskod.geometry._tiles import Tiling
from daskod.ifu._cube_kernels import build_grid
from daskod.ifu._cube_tasks import (
    HALO,
    blot_and_flag_cube_tile,
    coordinates_band,
    cube_weight_threshold,
    median_chunk,
    single_cube_chunk,
    world_roles,
)
from daskod.ifu.cube_method import default_chunks, reference_point

__all__ = ["build_cube_method"]

log = logging.getLogger(__name__)

PREFIX = "ifu_cube"


def _coordinates(ctx: Context, plan: Any, blobs: list[bytes], ra0: float, dec0: float,
                 rows: int, fp: str
                 ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Every exposure's (xi, eta, wavelength) per pixel, stored band by band now; and the
    bands' extents and sampling (the grid is built from them). ``blobs``: each exposure's
    pickled WCS (each task unpickles its own copy)."""
    import dask

    coords, tasks, owners = [], [], []
    for k, (exp, blob) in enumerate(zip(plan.items, blobs, strict=True)):
        ny, nx = exp.shape
        arrays = {key: ctx.stored(f"{PREFIX}/coords/{k}/{key}", (ny, nx), np.float64,
                                  (min(rows, ny), nx), np.nan, fingerprint=fingerprint(fp, k))
                  for key in ("xi", "eta", "wave")}
        coords.append(arrays)
        for i, y0 in enumerate(range(0, ny, rows)):
            tasks.append(dask.delayed(coordinates_band, pure=False)(
                blob, world_roles(exp.wcs), y0, min(y0 + rows, ny), nx, ny, ra0, dec0, arrays,
                (i, 0)))
            owners.append(k)
    stats: list[list[dict[str, Any]]] = [[] for _ in plan.items]
    for k, band in zip(owners, dask.compute(*tasks, **ctx.scheduler.compute_kwargs()),
                       strict=True):
        stats[k].append(band)
    return coords, stats


def build_cube_method(ctx: Context, plan: Any) -> Outputs:
    """The cube method's graph for the validated exposures of ``plan`` (an ``IFUPlan``)."""
    items, params = plan.items, plan.params
    inputs = plan.fingerprints()[0]
    fp = fingerprint(inputs, plan.fingerprints()[1])
    ra0, dec0 = reference_point(items[0])
    rows = int(ctx.layout.get("side") or ctx.layout.get("planes") or 64)
    blobs = [pickle.dumps(e.wcs) for e in items]  # pickled once, used by both phases
    coords, stats = _coordinates(ctx, plan, blobs, ra0, dec0, rows, fp)
    grid = build_grid(stats, ra0, dec0, spatial_scale=params.cube_spatial_scale,
                      spectral_scale=params.cube_spectral_scale, roi=params.roi,
                      weighting=params.cube_weighting)
    # Sampling arrays are only needed for the grid: keep the band tables small.
    stats = [[{key: b[key] for key in ("y0", "y1", "n", "wave") if key in b} for b in per]
             for per in stats]
    planes, side = default_chunks(grid, len(items), plan.per_task, ctx.layout.get("planes"),
                                  ctx.layout.get("side"), items[0].shape)
    ctx.store.note_layout({"planes": planes, "side": side})
    log.info("Cube grid %s (scale %.4g arcsec, step %.4g, roi %s, %s), %d planes per chunk, "
             "detector tiles of %d px", grid.shape, grid.scale, grid.dwave, grid.roi,
             params.cube_weighting, planes, side)
    fp = fingerprint(fp, planes, side)
    sources = [ctx.sources(e, f"{PREFIX}/inputs/{k}", (side, side), inputs[e.name])
               for k, e in enumerate(items)]
    payloads = [ctx.graph.data("ifuwcs", blob, k) for k, blob in enumerate(blobs)]
    nw, cy, cx = grid.shape
    n = len(items)
    chunks = [(p, min(p + planes, nw)) for p in range(0, nw, planes)]
    single = ctx.stored(f"{PREFIX}/single", (n, 2, nw, cy, cx), np.float32,
                        (1, 2, planes, cy, cx), np.nan, fingerprint=fp,
                        attributes={"kind": "single-exposure cubes: flux and weight"})
    whole = {k: {name: s.reads((slice(0, e.shape[0]), slice(0, e.shape[1])))
                 for name, s in sources[k].items()} for k, e in enumerate(items)}
    cubes = {(k, c): ctx.fill("cube", (k, 0, c, 0, 0), (single,), single_cube_chunk,
                              whole[k], coords[k], stats[k], grid, chunks[c], plan.bad_mask)
             for k in range(n) for c in range(len(chunks))}
    thresholds = ctx.stored(f"{PREFIX}/thresholds", (n,), np.float64, (1,), np.nan,
                            fingerprint=fingerprint(fp, plan.maskpt))
    thr_refs = [ctx.fill("threshold", (k,), (thresholds,), cube_weight_threshold,
                         [cubes[(k, c)] for c in range(len(chunks))], k, chunks, plan.maskpt)
                for k in range(n)]
    median = ctx.stored(f"{PREFIX}/median", grid.shape, np.float32, (planes, cy, cx), np.nan,
                        fingerprint=fingerprint(fp, plan.maskpt),
                        attributes={"kind": "IFU median cube", "ra0": grid.ra0,
                                    "dec0": grid.dec0, "scale_arcsec": grid.scale,
                                    "wave0": grid.wave0, "dwave": grid.dwave,
                                    "weighting": params.cube_weighting})
    median_refs = {(c, 0, 0): ctx.fill("median", (c, 0, 0), (median,), median_chunk,
                                       [cubes[(k, c)] for k in range(n)], thr_refs, chunks[c])
                   for c in range(len(chunks))}
    refs, stores = [], []
    for k, exp in enumerate(items):
        flag_fp = fingerprint(fp, plan.maskpt, plan.snr, plan.scale, k,
                              exp.background_for_flagging(plan.backg))
        grid_t = tuple(-(-m // side) for m in exp.shape)
        stores.append((ctx.stored(f"{PREFIX}/dq/{k}", exp.shape, np.uint32, (side, side), 0,
                                  fingerprint=flag_fp),
                       ctx.stored(f"{PREFIX}/count/{k}", grid_t, np.int64, (1, 1), 0,
                                  fingerprint=flag_fp)))
        per = {}
        for t in Tiling(exp.shape, (side, side)):
            y0, y1, x0, x1 = halo_box(t, exp.shape, HALO)
            per[(t.i, t.j)] = ctx.fill(
                "flag", (k, t.i, t.j), stores[k], blot_and_flag_cube_tile,
                {name: s.reads((slice(y0, y1), slice(x0, x1)))
                 for name, s in sources[k].items()},
                coords[k], payloads[k], world_roles(exp.wcs), t, list(median_refs.values()),
                shape=exp.shape, grid=grid, snr=plan.snr, scale=plan.scale,
                backg=exp.background_for_flagging(plan.backg), block=(t.i, t.j))
        refs.append(per)
    out = flag_outputs(ctx, refs, stores)
    out.median = ctx.output("medianframe", median_refs, median)
    out.extras = {"ifu": {"cube": {"grid": grid}}}
    return out
