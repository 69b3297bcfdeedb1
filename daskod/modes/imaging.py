"""Imaging mode (docs/algorithm.md section 2) as one graph of stored phases.

``drizzle`` (group, output tile) -> ``threshold`` (group) -> ``median`` (median tile) ->
``flag`` (exposure, detector tile); without resampling ``threshold`` (exposure) -> ``median``
(detector tile) -> ``flag``. Each phase writes its blocks into the working store and every task
that reads a block depends on the task that wrote it, so the lazy result of any phase can be
computed alone, in any order, and equals the eager run.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod.engine._budget import (
    largest_group_pixels,
    plan_budget,
    scheduler_facts,
)
from daskod.engine._fingerprint import container_token
from daskod.engine._run import Context, Outputs, flag_outputs
from daskod.engine._store import fingerprint
from daskod.exposure import Exposure
from daskod.flag._graph import (
    FLAG_HALO,
    UsableRule,
    blot_and_flag_tile,
    flag_tile_against_median,
    halo_box,
)
from daskod.geometry._frame import OutputFrame, compute_output_frame
from daskod.geometry._pixel_map import PixelMap, compute_pixel_map
from daskod.geometry._tiles import Tiling
from daskod.io._store import store_bytes
from daskod.median._graph import (
    exposure_weight_threshold,
    median_of_exposures_tile,
    median_of_resampled_tile,
    usable_pixel_block,
)
from daskod.modes._improved import ImprovedOptions
from daskod.modes._params import ImagingParams
from daskod.resample._graph import group_weight_threshold, plan_group_tiles, resample_group_tile
from daskod.resample._kernels import pad_for_kernel

__all__ = ["ImagingPlan", "group_exposures"]

log = logging.getLogger(__name__)

#: Median pixels kept around the window a detector tile's blot samples (the spline between
#: grid nodes, the bilinear neighbour and the blot kernel's own margin).
_WINDOW_MARGIN = 4


def group_exposures(exposures: list[Exposure]) -> list[list[int]]:
    """Exposure indices per group id, groups in order of first appearance (as the reference)."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for k, exp in enumerate(exposures):
        groups.setdefault(str(exp.group_id), []).append(k)
    return list(groups.values())


@dataclass
class ImagingPlan:
    """Validated exposures and their geometry: everything before any pixel is read."""

    exposures: list[Exposure]
    params: ImagingParams
    max_output_pixels: int
    #: Identify inputs by a hash of their pixels (not sizes and modification times).
    verify_inputs: bool = False
    #: Options beyond the reference (:mod:`daskod.modes._improved`); the default is the
    #: reference's graph.
    options: ImprovedOptions = field(default_factory=ImprovedOptions)
    groups: list[list[int]] = field(default_factory=list)
    frame: OutputFrame | None = None
    pixel_maps: list[PixelMap] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.groups = group_exposures(self.exposures)
        if self.params.resample_data and self.n_units >= 2:
            self.frame = compute_output_frame(self.exposures,
                                              max_output_pixels=self.max_output_pixels)
            self.pixel_maps = [
                compute_pixel_map(e.wcs, self.frame.wcs, e.shape,
                                  stepsize=self.params.pixmap_stepsize,
                                  order=self.params.pixmap_order, name=e.name,
                                  out_shape=self.frame.shape)
                for e in self.exposures]

    @property
    def items(self) -> list[Exposure]:
        return self.exposures

    @property
    def prefers_processes(self) -> bool:
        """Drizzle holds the GIL: processes win when no input has to be shipped to them."""
        from daskod.io._store import INPUT_ARRAYS, reads_in_place

        return self.params.resample_data and all(
            reads_in_place(getattr(e, name), shares_memory=False)
            for e in self.exposures for name in INPUT_ARRAYS if getattr(e, name) is not None)

    @property
    def n_units(self) -> int:
        """Groups (resampling) or exposures (no resampling) the median is taken over."""
        return len(self.groups) if self.params.resample_data else len(self.exposures)

    @property
    def skip_reason(self) -> str | None:
        if self.n_units >= 2:
            return None
        what = "groups" if self.params.resample_data else "exposures"
        return (f"outlier detection needs at least 2 {what}, got {self.n_units}; the step is "
                "skipped and DQ is unchanged, as the reference does.")

    # -- what the engine asks -------------------------------------------------------------
    def budget(self, sched: Any, memory_limit: Any, tile_size: int | None) -> Any:
        groups = self.groups if self.params.resample_data else None
        n_units, members = self.n_units, max(len(g) for g in self.groups)
        if self.options.extra_planes:
            # Extra drizzled planes (ERR, variance) hold more per tile pixel: drizzle tasks
            # another input and output array (or a second drizzle), median tasks another
            # stack: budgeted as twice the groups and 1.5x the members.
            n_units, members = 2 * n_units, math.ceil(1.5 * max(members, 2))
        budget = plan_budget(
            memory_limit=memory_limit, n_groups=n_units,
            max_group_members=members, tile_size=tile_size,
            group_pixels=largest_group_pixels([e.shape for e in self.exposures], groups),
            extent=max([*(n for e in self.exposures for n in e.shape),
                        *(self.frame.shape if self.frame else ())]),
            **scheduler_facts(sched))
        if sched.client is None:
            sched.num_workers = budget.num_workers
        return budget

    def fingerprints(self) -> tuple[dict[str, str], dict[str, Any]]:
        inputs = {e.name: container_token(e, e.group_id, e.shape, e.exposure_time,
                                          e.background_level, e.background_subtracted,
                                          content=self.verify_inputs)
                  for e in self.exposures}
        return inputs, {"mode": "imaging", **asdict(self.params), **self.options.changed()}

    def store_bytes(self, sched: Any) -> int:
        frame = math.prod(self.frame.shape) if self.frame else 0
        total = store_bytes(self.exposures, shares_memory=sched.shares_memory,
                            frame_pixels=frame, n_groups=len(self.groups) if frame else 0,
                            median_pixels=frame or math.prod(self.exposures[0].shape))
        planes = self.options.extra_planes  # per group, and the median error
        total += 4 * frame * (len(self.groups) * len(planes) + ("error" in planes))
        return total

    def layout(self, budget: Any) -> dict[str, int]:
        median_tile = budget.median_tile or budget.tile
        tile = budget.tile if self.params.resample_data else median_tile
        return {"tile": int(tile), "median_tile": int(median_tile)}

    # -- the graph ------------------------------------------------------------------------
    def build(self, ctx: Context) -> Outputs:
        tile = int(ctx.layout["tile"])
        geometry = fingerprint(self.fingerprints()[0], self.frame and self.frame.shape,
                               [(pm.xs, pm.ys, pm.X, pm.Y, pm.order) for pm in self.pixel_maps])
        sources = [ctx.sources(e, f"inputs/{k}", (tile, tile), fingerprint(geometry, k))
                   for k, e in enumerate(self.exposures)]
        if self.params.resample_data and not self.options.is_reference:
            from daskod.modes import _imaging_options as opt

            if self.options.extra_planes:
                stored, median_refs, median_fp = opt.resampled_median_with_error(
                    self, ctx, sources, geometry)
            else:
                stored, median_refs, median_fp = self._resampled_median(ctx, sources,
                                                                        geometry)
            median = stored[0] if isinstance(stored, tuple) else stored
            outputs = opt.flag_resampled_with_options(self, ctx, sources, stored, median_refs,
                                                      median_fp)
        elif self.params.resample_data:
            median, median_refs, median_fp = self._resampled_median(ctx, sources, geometry)
            outputs = self._flag_resampled(ctx, sources, median, median_refs, median_fp)
        else:
            median, median_refs, median_fp = self._direct_median(ctx, sources, geometry)
            outputs = self._flag_direct(ctx, sources, median, median_refs, median_fp)
        outputs.median = ctx.output("medianframe", median_refs, median)
        outputs.precheck, outputs.check = self._usable(ctx, sources)
        outputs.extras = {"groups": self.groups, "median_wcs": self.frame and self.frame.wcs,
                          "pixel_maps": self.pixel_maps, "frame": self.frame}
        return outputs

    def _member(self, k: int, sources: dict[str, Any], box: tuple[int, int, int, int]
                ) -> dict[str, Any]:
        region = (slice(box[0], box[1]), slice(box[2], box[3]))
        exp = self.exposures[k]
        return {"box": box, "exposure_time": float(exp.exposure_time or 1.0),
                "sky": exp.sky_to_subtract(),
                **{name: src.reads(region) for name, src in sources.items()
                   if name in ("sci", "dq", "var_rnoise")}}

    def _group_thresholds(self, ctx: Context, drizzled: dict[tuple[int, Any], Any],
                          resampled: Any, driz_fp: str) -> tuple[list[Any], str]:
        """One weight-threshold task per group, after that group's drizzle tasks (``drizzled``:
        (group, tile) -> task); returns the tasks and the thresholds' fingerprint."""
        thr_fp = fingerprint(driz_fp, self.params.maskpt)
        thresholds = ctx.stored("thresholds", (len(self.groups),), np.float64, (1,), np.nan,
                                fingerprint=thr_fp)
        refs = []
        for g in range(len(self.groups)):
            writes = [ref for (gg, _), ref in drizzled.items() if gg == g]
            refs.append(ctx.fill("threshold", (g,), (thresholds,), group_weight_threshold,
                                 writes or [resampled], g, self.params.maskpt))
        return refs, thr_fp

    def _resampled_median(self, ctx: Context, sources: list[dict[str, Any]], geometry: str
                          ) -> tuple[Any, dict, str]:
        p, frame = self.params, self.frame
        assert frame is not None
        tile, mtile = int(ctx.layout["tile"]), int(ctx.layout["median_tile"])
        tiling = Tiling(frame.shape, (tile, tile))
        n_groups = len(self.groups)
        driz_fp = fingerprint(geometry, p.kernel, p.pixfrac, p.fillval, p.weight_type,
                              p.bad_mask, tile)
        # One drizzle task writes one whole shard (group, tile); median tasks read its chunks.
        resampled = ctx.stored("resampled", (n_groups, 2, *frame.shape), np.float32,
                               (1, 2, tile, tile), np.nan, fingerprint=driz_fp,
                               chunks=(1, 1, mtile, mtile),
                               attributes={"kind": "drizzled image and weight per group"})
        pixmaps = self._pixmaps = [ctx.graph.data("pixmap", pm, k)
                                   for k, pm in enumerate(self.pixel_maps)]
        pad = pad_for_kernel(p.kernel)
        drizzled: dict[tuple[int, Any], Any] = {}
        for (g, t), entries in plan_group_tiles(self.pixel_maps, self.groups, tiling,
                                                pad).items():
            members = [self._member(k, sources[k], box) for k, box in entries]
            drizzled[(g, t)] = ctx.fill(
                "drizzle", (g, 0, t.i, t.j), (resampled,), resample_group_tile, members,
                [pixmaps[k] for k, _ in entries], t, pad=pad, kernel=p.kernel,
                pixfrac=p.pixfrac, fillval=p.fillval, weight_type=p.weight_type,
                bad_mask=p.bad_mask)
        thr_refs, thr_fp = self._group_thresholds(ctx, drizzled, resampled, driz_fp)
        median_fp = fingerprint(thr_fp, mtile)
        median = ctx.stored("median", frame.shape, np.float32, (mtile, mtile), np.nan,
                            fingerprint=median_fp, attributes={"kind": "median frame"})
        refs = {}
        for t in Tiling(frame.shape, (mtile, mtile)):
            big = tiling.containing(t.y0, t.x0)
            here = [g for g in range(n_groups) if (g, big) in drizzled]
            refs[(t.i, t.j)] = ctx.fill(
                "median", (t.i, t.j), (median,), median_of_resampled_tile, t, here,
                [thr_refs[g] for g in here], [drizzled[(g, big)] for g in here])
        return median, refs, median_fp

    def _direct_median(self, ctx: Context, sources: list[dict[str, Any]], geometry: str
                       ) -> tuple[Any, dict, str]:
        p, tile = self.params, int(ctx.layout["tile"])
        shape = self.exposures[0].shape
        tiles = list(Tiling(shape, (tile, tile)))
        times = [float(e.exposure_time or 1.0) for e in self.exposures]
        thr_fp = fingerprint(geometry, p.maskpt, p.weight_type, p.bad_mask, tile)
        thresholds = ctx.stored("thresholds", (len(self.exposures),), np.float64, (1,), np.nan,
                                fingerprint=thr_fp)
        whole = (slice(0, shape[0]), slice(0, shape[1]))
        thr_refs = [ctx.fill(
            "threshold", (k,), (thresholds,), exposure_weight_threshold,
            {name: s.reads(whole) for name, s in src.items()}, maskpt=p.maskpt,
            weight_type=p.weight_type, bad_mask=p.bad_mask, exposure_time=texp)
            for k, (src, texp) in enumerate(zip(sources, times, strict=True))]
        median_fp = fingerprint(thr_fp, "median")
        median = ctx.stored("median", shape, np.float32, (tile, tile), np.nan,
                            fingerprint=median_fp,
                            attributes={"kind": "median frame (no resampling)"})
        refs = {(t.i, t.j): ctx.fill(
            "median", (t.i, t.j), (median,), median_of_exposures_tile, t,
            [{name: s.reads(t.slices) for name, s in src.items()} for src in sources],
            thr_refs, times, weight_type=p.weight_type, bad_mask=p.bad_mask)
            for t in tiles}
        return median, refs, median_fp

    def _flag_stores(self, ctx: Context, k: int, tile: int, flag_fp: str
                     ) -> tuple[Any, Any, Any]:
        """Exposure ``k``'s new DQ, and per tile its outlier count and usable input pixels."""
        shape = self.exposures[k].shape
        grid = tuple(-(-n // tile) for n in shape)
        dq = ctx.stored(f"outputs/{k}/dq", shape, np.uint32, (tile, tile), 0,
                        fingerprint=flag_fp, attributes={"exposure": self.exposures[k].name})
        count = ctx.stored(f"outputs/{k}/count", grid, np.int64, (1, 1), 0,
                           fingerprint=flag_fp)
        usable = ctx.stored(f"outputs/{k}/usable", grid, np.int64, (1, 1), 0,
                            fingerprint=flag_fp)
        return dq, count, usable

    def _usable_rule(self, k: int) -> UsableRule:
        """How exposure ``k``'s flag tasks count its usable pixels."""
        return UsableRule(self.params.weight_type, self.params.bad_mask,
                          float(self.exposures[k].exposure_time or 1.0))

    def _flag_resampled(self, ctx: Context, sources: list[dict[str, Any]], median: Any,
                        median_refs: dict, median_fp: str) -> Outputs:
        p, frame = self.params, self.frame
        assert frame is not None
        tile, mtile = int(ctx.layout["tile"]), int(ctx.layout["median_tile"])
        tasks, stores = [], []
        for k, exp in enumerate(self.exposures):
            flag_fp = fingerprint(median_fp, k, p.snr_pair, p.scale_pair,
                                  exp.background_for_flagging(p.backg))
            stores.append(self._flag_stores(ctx, k, tile, flag_fp))
            pixmap = self._pixmaps[k]
            refs = {}
            for t in Tiling(exp.shape, (tile, tile)):
                box = halo_box(t, exp.shape, FLAG_HALO)
                window = self.pixel_maps[k].output_window(*box, margin=_WINDOW_MARGIN,
                                                          shape=frame.shape)
                deps = _window_refs(median_refs, window, mtile) if window else [median]
                refs[(t.i, t.j)] = ctx.fill(
                    "flag", (k, t.i, t.j), stores[-1], blot_and_flag_tile,
                    {name: s.reads((slice(box[0], box[1]), slice(box[2], box[3])))
                     for name, s in sources[k].items()},
                    pixmap, t, deps, shape=exp.shape, window=window or (0, 0, 0, 0),
                    median_shape=frame.shape, snr=p.snr_pair, scale=p.scale_pair,
                    backg=exp.background_for_flagging(p.backg), usable=self._usable_rule(k),
                    block=(t.i, t.j))
            tasks.append(refs)
        return flag_outputs(ctx, tasks, stores)

    def _flag_direct(self, ctx: Context, sources: list[dict[str, Any]], median: Any,
                     median_refs: dict, median_fp: str) -> Outputs:
        tile, snr1 = int(ctx.layout["tile"]), self.params.snr_pair[0]
        tasks, stores = [], []
        for k, exp in enumerate(self.exposures):
            stores.append(self._flag_stores(ctx, k, tile, fingerprint(median_fp, k, snr1)))
            tasks.append({(t.i, t.j): ctx.fill(
                "flag", (k, t.i, t.j), stores[-1], flag_tile_against_median,
                {name: s.reads(t.slices) for name, s in sources[k].items()}, t,
                median_refs[(t.i, t.j)], snr1=snr1, usable=self._usable_rule(k),
                block=(t.i, t.j))
                for t in Tiling(exp.shape, (tile, tile))})
        return flag_outputs(ctx, tasks, stores)

    def _usable(self, ctx: Context, sources: list[dict[str, Any]]) -> tuple[Any, Any]:
        """A cheap pass before the heavy phases: exposures with no usable pixel (all NaN,
        all flagged or zero weight) are refused by name. Each check stops at the first usable
        pixel (the flag tasks count them all, for the flag-fraction check)."""
        for k, (exp, src) in enumerate(zip(self.exposures, sources, strict=True)):
            whole = (slice(0, exp.shape[0]), slice(0, exp.shape[1]))
            ctx.graph.task("check", (k,), usable_pixel_block,
                           {name: s.reads(whole) for name, s in src.items()},
                           self._usable_rule(k))
        counts = ctx.graph.array("check", ((1,) * len(self.exposures),), np.int64)

        def check(values: np.ndarray) -> None:
            empty = [e.name for e, n in zip(self.exposures, values, strict=True) if n == 0]
            if empty:
                p = self.params
                what = "weight" if p.weight_type == "ivm" else "exposure time"
                msg = (f"Exposure(s) {empty} have no usable pixel (SCI all NaN, every pixel "
                       f"flagged by good_bits={p.good_bits!r}, or zero {what}); remove them "
                       "from the inputs or fix their DQ/variance arrays.")
                raise InputError(msg, exposure=empty[0])

        return counts, check


def _window_refs(refs: dict[tuple[int, int], Any], window: tuple[int, int, int, int],
                 mtile: int) -> list[Any]:
    y0, y1, x0, x1 = window
    return [refs[(i, j)] for i in range(y0 // mtile, (y1 - 1) // mtile + 1)
            for j in range(x0 // mtile, (x1 - 1) // mtile + 1) if (i, j) in refs]
