"""The graph of a spec run (see :mod:`daskod.modes.spec`): every source's phases.

Stored arrays (one per phase for the whole run: a MOS run has hundreds of slits, and a
stored array costs ~10 ms to create). Inputs ``k`` are stacked along the first axis, padded
to the largest input ``(NY, NX)``; sources ``s`` likewise, padded to the largest frame
``(FY, FX)`` (the detector grid without resampling) and the most groups ``G``::

    pixmaps          (inputs, 2, NY, NX) float64  exact detector -> frame maps, in bands of
                                                  ``tile`` rows (one task per band)
    spec/resampled   (sources, G, 3, FY, FX)      drizzled data, weight, error per group
    spec/thresholds  (sources, G)                 weight thresholds (per input without
                                                  resampling)
    spec/median      (sources, FY, FX)            median; spec/median_err its error
    outputs/dq       (inputs, NY, NX) uint32      new DQ; outputs/count per input tile
    outputs/blot     (inputs, 2, NY, NX)          blotted median and median_err (only when
                                                  intermediate results are kept)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskod.engine._fingerprint import wcs_token
from daskod.engine._run import Context, Outputs
from daskod.engine._store import fingerprint
from daskod.geometry._tiles import Tiling
from daskod.median._graph import exposure_weight_threshold
from daskod.resample._kernels import pad_for_kernel
from daskod.spec._tasks import (
    FLAG_HALO,
    blot_and_flag_spec_tile,
    drizzle_spec_group_tile,
    flag_spec_tile_unresampled,
    median_spec_exposures_tile,
    median_spec_tile,
    padded_blocks,
    pixel_map_block,
    spec_group_threshold,
    total_count,
    unchanged_dq_tile,
)

__all__ = ["SpecGraph"]


def _block_shape(stored: Any, index: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in stored.region(index))


class SpecGraph:
    """Adds a spec run's phases to the run graph."""

    def __init__(self, plan: Any, ctx: Context, sources: list[dict[str, Any]],
                 inputs: dict[str, str]) -> None:
        self.plan, self.ctx, self.sources, self.p = plan, ctx, sources, plan.params
        self.items = plan.items
        self.tile = int(ctx.layout["tile"])
        self.mtile = int(ctx.layout["median_tile"])
        self.resample = bool(self.p.resample_data)
        shapes = [e.shape for e in self.items]
        self.padded = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        active = plan.active
        self.median_shapes = {s.index: (s.frame.shape if self.resample
                                        else self.items[s.members[0]].shape) for s in active}
        self.frame_max = (max(m[0] for m in self.median_shapes.values()),
                          max(m[1] for m in self.median_shapes.values()))
        self.units = max(len(s.groups) if self.resample else len(s.members) for s in active)
        self.geometry = fingerprint(
            [inputs[e.name] for e in self.items],
            [(s.key, s.members, s.groups, s.frame and s.frame.shape,
              s.frame and wcs_token(s.frame.wcs, s.frame.shape)) for s in plan.sources],
            self.tile, self.mtile)

    # -- helpers ---------------------------------------------------------------------------
    def _stored(self, name: str, shape: tuple[int, ...], dtype: Any, block: tuple[int, ...],
                fill: Any, fp: str, chunks: tuple[int, ...] | None = None, **attrs: Any) -> Any:
        return self.ctx.stored(name, shape, dtype, block, fill, fingerprint=fp, chunks=chunks,
                               attributes=attrs or None)

    def _fill(self, phase: str, index: tuple[int, ...], targets: tuple[Any, ...],
              blocks: list[tuple[int, ...]], func: Any, *args: Any, **kwargs: Any) -> Any:
        """``ctx.fill`` whose block function's results are padded to the stored blocks."""
        shapes = [_block_shape(t, b) for t, b in zip(targets, blocks, strict=True)]
        fills = [t.array.fill_value for t in targets]
        return self.ctx.fill(phase, index, targets, padded_blocks, shapes, fills, func, *args,
                             block=blocks if len(blocks) > 1 else blocks[0], **kwargs)

    def _reads(self, k: int, region: tuple[slice, slice],
               names: tuple[str, ...] | None = None) -> dict[str, Any]:
        return {name: s.reads(region) for name, s in self.sources[k].items()
                if names is None or name in names}

    # -- the run ---------------------------------------------------------------------------
    def build(self) -> tuple[Outputs, dict[str, Any]]:
        """Every phase of every source; returns the outputs and ``result.spec``."""
        n, tile = len(self.items), self.tile
        ny, nx = self.padded
        flag_fp = fingerprint(self.geometry, self.p, self.plan.save)
        grid = (n, -(-ny // tile), -(-nx // tile))
        self.dq = self._stored("outputs/dq", (n, ny, nx), np.uint32, (1, tile, tile), 0, flag_fp,
                               kind="new DQ per input")
        self.count = self._stored("outputs/count", grid, np.int64, (1, 1, 1), 0, flag_fp)
        self.blot = None
        if self.plan.save and self.resample:
            self.blot = self._stored("outputs/blot", (n, 2, ny, nx), np.float32,
                                     (1, 2, tile, tile), np.nan, flag_fp,
                                     kind="blotted median and median_err per input")
        self.refs: dict[int, dict[tuple[int, int], Any]] = {k: {} for k in range(n)}
        info: dict[str, Any] = {}
        median_refs: dict[tuple[int, ...], Any] = {}
        drizzled_refs: dict[tuple[int, ...], Any] = {}
        if self.plan.active:
            self._median_stores()
        if self.resample and self.plan.active:
            self._pixel_maps()
            self._resampled_store()
        for src in self.plan.sources:
            info[src.key] = {"status": src.status, "reason": src.skipped,
                             "source_index": src.index,
                             "inputs": [self.items[k].name for k in src.members],
                             "indices": list(src.members),
                             "groups": [list(g) for g in src.groups]}
            if src.skipped:
                self._keep(src)
                continue
            if self.resample:
                refs, driz = self._resampled_median(src)
                drizzled_refs.update(driz)
                self._flag_resampled(src, refs)
            else:
                refs = self._direct_median(src)
                self._flag_direct(src, refs)
            median_refs.update({(src.index, *i): r for i, r in refs.items()})
        outputs = self._outputs(info, median_refs, drizzled_refs)
        return outputs, info

    def _outputs(self, info: dict[str, Any], median_refs: dict, drizzled_refs: dict
                 ) -> Outputs:
        ctx = self.ctx
        # Sliced per exposure and source: Dask arrays (a GraphArray is not sliceable).
        dq_all = ctx.output("dq", {(k, *i): r for k, refs in self.refs.items()
                                   for i, r in refs.items()}, self.dq).to_dask()
        dq = [dq_all[k, :e.shape[0], :e.shape[1]] for k, e in enumerate(self.items)]
        for k in range(len(self.items)):
            ctx.graph.task("count", (k,), total_count, self.count, k,
                           list(self.refs[k].values()))
        counts = ctx.graph.array("count", ((1,) * len(self.items),), np.int64)
        outputs = Outputs(dq=dq, counts=counts)
        if not self.plan.active:
            return outputs
        medians = ctx.output("smedian", median_refs, self.median[0], which=0).to_dask()
        errors = ctx.output("smedianerr", median_refs, self.median[1], which=1).to_dask()
        drizzled = blots = None
        if self.plan.save and self.resample:
            drizzled = ctx.output("sdrizzled", drizzled_refs, self.resampled).to_dask()
            blots = ctx.output("blot", {(k, 0, *i): r for k, refs in self.refs.items()
                                        for i, r in refs.items()}, self.blot,
                               which=2).to_dask()
        for src in self.plan.active:
            fy, fx = self.median_shapes[src.index]
            entry = info[src.key]
            entry["median"] = medians[src.index, :fy, :fx]
            entry["median_err"] = errors[src.index, :fy, :fx]
            entry["median_wcs"] = src.frame.wcs if src.frame is not None else None
            if drizzled is not None:
                entry["drizzled"] = drizzled[src.index, :len(src.groups), :, :fy, :fx]
                entry["blots"] = {k: blots[k, :, :self.items[k].shape[0],
                                           :self.items[k].shape[1]] for k in src.members}
        return outputs

    def _keep(self, src: Any) -> None:
        """Inputs of a skipped source: their DQ unchanged, no outlier."""
        for k in src.members:
            for t in Tiling(self.items[k].shape, (self.tile, self.tile)):
                self.refs[k][(t.i, t.j)] = self._fill(
                    "keep", (k, t.i, t.j), (self.dq, self.count),
                    [(k, t.i, t.j), (k, t.i, t.j)], unchanged_dq_tile,
                    self._reads(k, t.slices), t)

    def _median_stores(self) -> None:
        n_src = len(self.plan.sources)
        fy, fx = self.frame_max
        fp = fingerprint(self.geometry, self.p.maskpt, self.p.kernel, self.p.pixfrac,
                         self.p.fillval, self.p.weight_type, self.p.bad_mask)
        self.thresholds = self._stored("spec/thresholds", (n_src, self.units), np.float64,
                                       (1, 1), np.nan, fp)
        block = (1, self.mtile, self.mtile)
        self.median = (
            self._stored("spec/median", (n_src, fy, fx), np.float32, block, np.nan, fp,
                         kind="median per source"),
            self._stored("spec/median_err", (n_src, fy, fx), np.float32, block, np.nan, fp,
                         kind="median error per source"))

    # -- resampling ------------------------------------------------------------------------
    def _pixel_maps(self) -> None:
        """One exact map per input, one task per band of ``tile`` rows (a slit is one band:
        its WCS is copied and evaluated once)."""
        ctx, tile = self.ctx, self.tile
        ny, nx = self.padded
        self.pixmaps = self._stored("pixmaps", (len(self.items), 2, ny, nx), np.float64,
                                    (1, 2, tile, nx), np.nan, self.geometry,
                                    kind="pixel maps (output x, y) per input")
        self.maps: dict[int, list[Any]] = {}
        for src in self.plan.active:
            frame_ref = ctx.graph.data("frame", src.frame, src.index)
            for k in src.members:
                exp = self.items[k]
                wcs_ref = ctx.graph.data("wcs", exp.wcs, k)
                h, w = exp.shape
                self.maps[k] = [self._fill("pixmap", (k, b), (self.pixmaps,), [(k, 0, b, 0)],
                                           pixel_map_block, wcs_ref, frame_ref,
                                           (y0, min(y0 + tile, h), 0, w))
                                for b, y0 in enumerate(range(0, h, tile))]

    def _resampled_store(self) -> None:
        fy, fx = self.frame_max
        t, m = self.tile, self.mtile
        fp = fingerprint(self.geometry, self.p.kernel, self.p.pixfrac, self.p.fillval,
                         self.p.weight_type, self.p.bad_mask)
        self.resampled = self._stored(
            "spec/resampled", (len(self.plan.sources), self.units, 3, fy, fx), np.float32,
            (1, 1, 3, t, t), np.nan, fp, chunks=(1, 1, 3, m, m),
            kind="drizzled data, weight, error per source and group")

    def _member(self, k: int) -> dict[str, Any]:
        exp = self.items[k]
        whole = (slice(0, exp.shape[0]), slice(0, exp.shape[1]))
        return {"index": k, "shape": exp.shape,
                "sources": self._reads(k, whole, ("sci", "err", "dq", "var_rnoise")),
                "pixel_range": self.plan.pixel_range(k),
                "exposure_time": float(exp.exposure_time), "sky": exp.sky_to_subtract()}

    def _resampled_median(self, src: Any) -> tuple[dict, dict]:
        p, s, frame = self.p, src.index, src.frame
        tiling = Tiling(frame.shape, (self.tile, self.tile))
        pad = pad_for_kernel(p.kernel)
        drizzled: dict[tuple[int, Any], Any] = {}
        for g, members in enumerate(src.groups):
            group_members = [self._member(k) for k in members]
            group_maps = [self.maps[k] for k in members]
            for t in tiling:
                drizzled[(g, t)] = self._fill(
                    "drizzle", (s, g, t.i, t.j), (self.resampled,), [(s, g, 0, t.i, t.j)],
                    drizzle_spec_group_tile, group_members, group_maps, t, pad=pad,
                    kernel=p.kernel, pixfrac=p.pixfrac, fillval=p.fillval,
                    weight_type=p.weight_type, bad_mask=p.bad_mask)
        tiles = list(tiling)
        thr = [self.ctx.fill("threshold", (s, g), (self.thresholds,), spec_group_threshold,
                             [drizzled[(g, t)] for t in tiles], s, g, tiles, p.maskpt,
                             block=(s, g)) for g in range(len(src.groups))]
        refs = {}
        for t in Tiling(frame.shape, (self.mtile, self.mtile)):
            big = tiling.containing(t.y0, t.x0)
            refs[(t.i, t.j)] = self._fill(
                "median", (s, t.i, t.j), self.median, [(s, t.i, t.j)] * 2, median_spec_tile,
                t, s, len(src.groups), thr, [drizzled[(g, big)] for g in range(len(src.groups))])
        return refs, {(s, g, 0, t.i, t.j): r for (g, t), r in drizzled.items()}

    def _flag_resampled(self, src: Any, median_refs: dict) -> None:
        p, tile = self.p, self.tile
        median_deps = list(median_refs.values())
        targets = (self.dq, self.count) + ((self.blot,) if self.blot is not None else ())
        for k in src.members:
            exp = self.items[k]
            backg = exp.background_for_flagging(p.backg)
            for t in Tiling(exp.shape, (tile, tile)):
                box = (max(t.y0 - FLAG_HALO, 0), min(t.y1 + FLAG_HALO, exp.shape[0]),
                       max(t.x0 - FLAG_HALO, 0), min(t.x1 + FLAG_HALO, exp.shape[1]))
                region = (slice(box[0], box[1]), slice(box[2], box[3]))
                blocks = [(k, t.i, t.j), (k, t.i, t.j), (k, 0, t.i, t.j)][:len(targets)]
                self.refs[k][(t.i, t.j)] = self._fill(
                    "flag", (k, t.i, t.j), targets, blocks, blot_and_flag_spec_tile,
                    self._reads(k, region), self.maps[k][box[0] // tile:(box[1] - 1) // tile + 1],
                    t, median_deps, input_index=k, source=src.index, shape=exp.shape,
                    median_shape=src.frame.shape, snr=p.snr_pair, scale=p.scale_pair,
                    backg=backg, keep_blot=self.blot is not None)

    # -- without resampling ----------------------------------------------------------------
    def _direct_median(self, src: Any) -> dict:
        p, s, tile = self.p, src.index, self.tile
        shape = self.items[src.members[0]].shape
        tiles = list(Tiling(shape, (tile, tile)))
        times = [float(self.items[k].exposure_time) for k in src.members]
        whole = (slice(0, shape[0]), slice(0, shape[1]))
        thr = [self.ctx.fill("threshold", (s, n), (self.thresholds,), exposure_weight_threshold,
                             self._reads(k, whole), maskpt=p.maskpt,
                             weight_type=p.weight_type, bad_mask=p.bad_mask,
                             exposure_time=texp, block=(s, n))
               for n, (k, texp) in enumerate(zip(src.members, times, strict=True))]
        return {(t.i, t.j): self._fill(
            "median", (s, t.i, t.j), self.median, [(s, t.i, t.j)] * 2,
            median_spec_exposures_tile, t, s, [self._reads(k, t.slices) for k in src.members],
            thr, times, weight_type=p.weight_type, bad_mask=p.bad_mask) for t in tiles}

    def _flag_direct(self, src: Any, median_refs: dict) -> None:
        snr1 = self.p.snr_pair[0]
        for k in src.members:
            for t in Tiling(self.items[k].shape, (self.tile, self.tile)):
                self.refs[k][(t.i, t.j)] = self._fill(
                    "flag", (k, t.i, t.j), (self.dq, self.count), [(k, t.i, t.j)] * 2,
                    flag_spec_tile_unresampled, self._reads(k, t.slices), t,
                    median_refs[(t.i, t.j)], source=src.index, snr1=snr1)


def padded_bytes(plan: Any) -> int:
    """Bytes the stacked arrays of a spec run take in the store, at most."""
    items = plan.items
    ny = max(e.shape[0] for e in items)
    nx = max(e.shape[1] for e in items)
    per_input = 4 + (8 if plan.save else 0) + (16 if plan.params.resample_data else 0)
    total = len(items) * ny * nx * per_input
    active = plan.active
    if active:
        frame = max(plan.source_pixels(s) for s in active) if plan.params.resample_data \
            else ny * nx
        units = max(len(s.groups) if plan.params.resample_data else len(s.members)
                    for s in active)
        total += len(plan.sources) * frame * (8 + 12 * units * plan.params.resample_data)
    return int(total + 8 * len(items) * math.ceil(ny / 64) * math.ceil(nx / 64))
