"""Imaging mode: resample groups, median, blot, flag (ALGORITHM.md section 2).

The graph is built from small task functions of the stage rooms; each phase is either
computed at once through the dispatcher (``eager=True``: bounded memory, checkpoints in the
working store, one log line per phase) or left lazy so that the caller composes it.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from daskod._exceptions import InputError
from daskod.engine._checkpoint import Checkpoints, container_token
from daskod.engine._dispatch import PhaseRunner, Scheduler
from daskod.engine._tasks import barrier, first, new_task
from daskod.exposure import Exposure
from daskod.flag._graph import blot_and_flag_tile, flag_tile_against_median
from daskod.geometry._frame import OutputFrame, compute_output_frame
from daskod.geometry._pixel_map import PixelMap, compute_pixel_map
from daskod.geometry._tiles import Tiling
from daskod.io._store import array_sources
from daskod.median._graph import (
    count_usable_pixels,
    exposure_weight_threshold,
    median_of_exposures_tile,
    median_of_resampled_tile,
)
from daskod.modes._params import ImagingParams
from daskod.resample._graph import (
    GroupMember,
    group_weight_threshold,
    plan_group_tiles,
    resample_group_tile,
)
from daskod.resample._kernels import pad_for_kernel

__all__ = ["ImagingGraph", "group_exposures", "build_imaging"]

log = logging.getLogger(__name__)

def group_exposures(exposures: list[Exposure]) -> list[list[int]]:
    """Exposure indices per group id, groups in order of first appearance (as the reference)."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for k, exp in enumerate(exposures):
        groups.setdefault(str(exp.group_id), []).append(k)
    return list(groups.values())


@dataclass
class ImagingGraph:
    """The built (and, when eager, computed) imaging run."""

    exposures: list[Exposure]
    params: ImagingParams
    groups: list[list[int]]
    tile: int
    root: str
    median_tile: int = 0
    frame: OutputFrame | None = None
    pixel_maps: list[PixelMap] = field(default_factory=list)
    #: One Delayed per pixel map: each map travels to workers as its own key, shared by the
    #: drizzle and flag tasks of its exposure.
    pixel_map_keys: list[Any] = field(default_factory=list)
    median: Any = None
    dq: list[Any] = field(default_factory=list)
    counts: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[Any] = field(default_factory=list)
    checkpoints: Checkpoints | None = None


def build_imaging(
    exposures: list[Exposure],
    params: ImagingParams,
    *,
    root: str,
    tile: int,
    scheduler: Scheduler,
    eager: bool,
    max_output_pixels: int,
    checkpoint: bool = False,
    overwrite_store: bool = False,
    median_tile: int | None = None,
) -> ImagingGraph:
    """Build (and with ``eager`` run) imaging outlier detection into the store at ``root``.

    With ``checkpoint`` (a store the user named, computed at once) every expensive task is
    recorded in the store, and a rerun of the same fingerprint resumes where the last one
    stopped (see :mod:`daskod.engine._checkpoint`).

    ``tile`` is the edge of drizzle, flag and input tiles, ``median_tile`` (default ``tile``)
    that of the median over groups; the drizzled groups are stored in shards of ``tile``
    holding chunks of ``median_tile``. Without resampling the median tile serves for all.
    """
    groups = group_exposures(exposures)
    median_tile = int(median_tile or tile)
    if not params.resample_data:
        tile = median_tile
    run = ImagingGraph(exposures=exposures, params=params, groups=groups, tile=tile, root=root,
                       median_tile=median_tile)
    phases = PhaseRunner(scheduler, eager, run.timings)
    if params.resample_data:
        start = time.perf_counter()
        run.frame = compute_output_frame(exposures, max_output_pixels=max_output_pixels)
        run.pixel_maps = [
            compute_pixel_map(e.wcs, run.frame.wcs, e.shape, stepsize=params.pixmap_stepsize,
                              order=params.pixmap_order, name=e.name,
                              out_shape=run.frame.shape) for e in exposures]
        run.pixel_map_keys = [
            dask.delayed(pm, name=f"pixel-map-{k}-{dask.base.tokenize(pm.X, pm.Y)}")
            for k, pm in enumerate(run.pixel_maps)]
        run.timings["geometry"] = time.perf_counter() - start
        log.info("Phase geometry: output frame %s and %d pixel maps in %.2f s",
                 run.frame.shape, len(exposures), run.timings["geometry"])
    ckpt = run.checkpoints = _open_checkpoints(run, checkpoint, overwrite_store)
    sources, ingest = [], []
    for k, exp in enumerate(exposures):
        entry, tasks = array_sources(exp, root, f"inputs/{k}", (tile, tile),
                                     shares_memory=scheduler.shares_memory, create=ckpt.array)
        sources.append(entry)
        ingest.extend(tasks)
    ingested = phases.run("ingest", ckpt.tasks("ingest", ingest))
    after_ingest = new_task(barrier, *ingested) if not eager else None
    if eager:
        _check_usable(run, sources, phases)
    if params.resample_data:
        median_done = _resampled_median(run, sources, phases, after_ingest)
    else:
        median_done = _direct_median(run, sources, phases, after_ingest)
    targets = [None] * len(exposures)
    if eager:
        # Flag tasks write their DQ tiles straight into the store: no tile travels back.
        targets = [ckpt.array(f"outputs/{k}/dq", e.shape, np.uint32, (tile, tile), 0)
                   for k, e in enumerate(exposures)]
    if params.resample_data:
        flags = _flag_resampled(run, sources, median_done, targets)
    else:
        flags = _flag_direct(run, sources, median_done, targets)
    _finish(run, flags, phases, targets)
    ckpt.complete()
    return run


def _open_checkpoints(run: ImagingGraph, enabled: bool, overwrite: bool) -> Checkpoints:
    """Start or resume the run's checkpoints; the fingerprint covers parameters, inputs,
    geometry (pixel maps) and tile size."""
    if not enabled:
        return Checkpoints.disabled(run.root)
    from dataclasses import asdict

    import dask.base

    inputs = {exp.name: container_token(exp, exp.group_id, exp.shape, exp.exposure_time,
                                        exp.background_level, exp.background_subtracted)
              for exp in run.exposures}
    geometry = None
    if run.frame is not None:
        geometry = (run.frame.shape, [dask.base.tokenize(pm.shape, pm.xs, pm.ys, pm.X, pm.Y,
                                                         pm.order)
                                      for pm in run.pixel_maps])
    parts = {"mode": "imaging", "parameters": asdict(run.params), "inputs": inputs,
             "geometry": geometry, "layout": {"tile": run.tile, "median_tile": run.median_tile}}
    shown = f"output frame {run.frame.shape}" if run.frame else "none"
    return Checkpoints.open(run.root, parts=parts, overwrite=overwrite,
                            describe={"geometry": shown})


def _check_usable(run: ImagingGraph, sources: list[dict[str, Any]], phases: PhaseRunner) -> None:
    """Refuse exposures with no usable pixel (all NaN, all flagged or zero weight).

    One cheap read of SCI, DQ and VAR_RNOISE before the heavy phases; such an exposure is
    almost always a processing failure upstream, and the reference would silently carry it.
    """
    params = run.params
    tasks = [new_task(count_usable_pixels,
        src, list(Tiling(exp.shape, (run.tile, run.tile))), weight_type=params.weight_type,
        bad_mask=params.bad_mask, exposure_time=float(exp.exposure_time or 1.0))
        for src, exp in zip(sources, run.exposures, strict=True)]
    counts = phases.run("validate", tasks)
    empty = [exp.name for exp, n in zip(run.exposures, counts, strict=True) if n == 0]
    if empty:
        what = "weight" if params.weight_type == "ivm" else "exposure time"
        msg = (f"Exposure(s) {empty} have no usable pixel (SCI all NaN, every pixel flagged "
               f"by good_bits={params.good_bits!r}, or zero {what}); remove them from the "
               "inputs or fix their DQ/variance arrays.")
        raise InputError(msg, exposure=empty[0])


def _resampled_median(run: ImagingGraph, sources: list[dict[str, Any]], phases: PhaseRunner,
                      after: Any) -> Any:
    params, frame, tile, mtile = run.params, run.frame, run.tile, run.median_tile
    assert frame is not None
    tiling = Tiling(frame.shape, (tile, tile))
    pad = pad_for_kernel(params.kernel)
    n_groups = len(run.groups)
    ckpt = run.checkpoints
    # One drizzle task writes one whole shard (group, tile); median tasks read chunks of it.
    chunks, shards = (1, mtile, mtile), (1, tile, tile)
    data = ckpt.array("resampled/data", (n_groups, *frame.shape), np.float32, chunks, np.nan,
                      shards=shards, attributes={"kind": "drizzled group images"})
    wht = ckpt.array("resampled/wht", (n_groups, *frame.shape), np.float32, chunks, 0.0,
                     shards=shards, attributes={"kind": "drizzle weights"})
    run.median = ckpt.array("median", frame.shape, np.float32, (mtile, mtile), np.nan,
                            attributes={"kind": "median frame"})
    plan = plan_group_tiles(run.pixel_maps, run.groups, tiling, pad)
    pm_keys = run.pixel_map_keys
    exposures = run.exposures
    resample_tasks: dict[tuple[int, Any], Any] = {}
    for (g, t), entries in plan.items():
        members = [GroupMember(index=k, sources=sources[k], box=box,
                               exposure_time=float(exposures[k].exposure_time or 1.0),
                               sky=exposures[k].sky_to_subtract()) for k, box in entries]
        resample_tasks[(g, t)] = new_task(resample_group_tile,
            members, [pm_keys[k] for k, _ in entries], t, g, pad=pad, kernel=params.kernel,
            pixfrac=params.pixfrac, fillval=params.fillval, weight_type=params.weight_type,
            bad_mask=params.bad_mask, out_data=data, out_wht=wht, after=after)
    keys = list(resample_tasks)
    done = phases.run("resample", ckpt.tasks("resample", [resample_tasks[key] for key in keys],
                                             decode=int))
    resampled = dict(zip(keys, done, strict=True))
    tiles_of_group: dict[int, list[Any]] = {g: [] for g in range(n_groups)}
    for g, t in keys:
        tiles_of_group[g].append(t)
    threshold_tasks = [
        new_task(
            group_weight_threshold, wht, g, tiles_of_group[g], params.maskpt,
            *[resampled[(g, t)] for t in tiles_of_group[g]])
        for g in range(n_groups)]
    thresholds = phases.run("threshold", ckpt.tasks("threshold", threshold_tasks))
    median_tasks = []
    for t in Tiling(frame.shape, (mtile, mtile)):
        big = tiling.containing(t.y0, t.x0)
        groups_here = [g for g in range(n_groups) if (g, big) in resampled]
        if not groups_here:
            continue
        median_tasks.append(new_task(
            median_of_resampled_tile, t, groups_here, [thresholds[g] for g in groups_here],
            data=data, wht=wht, median=run.median,
            after=[resampled[(g, big)] for g in groups_here]))
    medians = phases.run("median", ckpt.tasks("median", median_tasks, decode=int))
    return None if phases.eager else new_task(barrier, *medians)


def _direct_median(run: ImagingGraph, sources: list[dict[str, Any]], phases: PhaseRunner,
                   after: Any) -> Any:
    params, tile = run.params, run.tile
    shape = run.exposures[0].shape
    tiling = Tiling(shape, (tile, tile))
    tiles = list(tiling)
    ckpt = run.checkpoints
    run.median = ckpt.array("median", shape, np.float32, (tile, tile), np.nan,
                            attributes={"kind": "median frame (no resampling)"})
    times = [float(e.exposure_time or 1.0) for e in run.exposures]
    thr_tasks = [new_task(
        exposure_weight_threshold, src, tiles, maskpt=params.maskpt, weight_type=params.weight_type,
        bad_mask=params.bad_mask, exposure_time=texp)
        for src, texp in zip(sources, times, strict=True)]
    if after is not None:
        thr_tasks = [new_task(first, t, after) for t in thr_tasks]
    thresholds = phases.run("threshold", ckpt.tasks("threshold", thr_tasks))
    median_tasks = [new_task(median_of_exposures_tile,
        t, sources, thresholds, times, weight_type=params.weight_type, bad_mask=params.bad_mask,
        median=run.median, after=after) for t in tiles]
    medians = phases.run("median", ckpt.tasks("median", median_tasks, decode=int))
    return None if phases.eager else new_task(barrier, *medians)


def _flag_resampled(run: ImagingGraph, sources: list[dict[str, Any]], median_done: Any,
                    targets: list[Any]) -> list[dict[Any, Any]]:
    params, frame = run.params, run.frame
    assert frame is not None
    out = []
    for k, exp in enumerate(run.exposures):
        pm_key = run.pixel_map_keys[k]
        per_tile = {}
        for t in Tiling(exp.shape, (run.tile, run.tile)):
            per_tile[t] = new_task(
                blot_and_flag_tile, sources[k], pm_key, t, shape=exp.shape, median=run.median,
                median_shape=frame.shape, snr=params.snr_pair, scale=params.scale_pair,
                backg=exp.background_for_flagging(params.backg), out=targets[k],
                after=median_done)
        out.append(per_tile)
    return out


def _flag_direct(run: ImagingGraph, sources: list[dict[str, Any]], median_done: Any,
                 targets: list[Any]) -> list[dict[Any, Any]]:
    snr1 = run.params.snr_pair[0]
    out = []
    for k, exp in enumerate(run.exposures):
        out.append({t: new_task(flag_tile_against_median,
            sources[k], t, median=run.median, snr1=snr1, out=targets[k], after=median_done)
            for t in Tiling(exp.shape, (run.tile, run.tile))})
    return out


def _finish(run: ImagingGraph, flags: list[dict[Any, Any]], phases: PhaseRunner,
            targets: list[Any]) -> None:
    """DQ arrays per exposure (lazy, or stored and reopened when eager) and flag counts."""
    if phases.eager and run.checkpoints is not None and run.checkpoints.enabled:
        flat = [task for per_tile in flags for task in per_tile.values()]
        recorded = iter(run.checkpoints.tasks("flag", flat, encode=operator.itemgetter("n"),
                                              decode=lambda v: {"n": int(v)}))
        flags = [{t: next(recorded) for t in per_tile} for per_tile in flags]
    counts = [new_task(
        sum, [new_task(operator.getitem, task, "n") for task in per_tile.values()])
        for per_tile in flags]
    if phases.eager:
        run.counts = [int(n) for n in phases.run("flag", counts)]
        run.outputs = targets
        run.dq = [da.from_zarr(t) for t in targets]
        return
    lazy_dq = []
    for k, per_tile in enumerate(flags):
        tiling = Tiling(run.exposures[k].shape, (run.tile, run.tile))
        rows: list[list[Any]] = [[None] * tiling.nblocks[1] for _ in range(tiling.nblocks[0])]
        for t, task in per_tile.items():
            rows[t.i][t.j] = da.from_delayed(
                new_task(operator.getitem, task, "dq"), shape=t.shape,
                dtype=np.uint32, meta=np.empty((0, 0), dtype=np.uint32))
        lazy_dq.append(da.block(rows))
    run.dq = lazy_dq
    run.counts = counts
