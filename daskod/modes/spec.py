"""Slit spectroscopy (the reference's ``mode="spec"``): every source of a run in one graph.

The reference runs the step once per source (calwebb_spec3 splits ``MultiSlitModel``
exposures with ``exp_to_source``; MIRI LRS images are one source). Here each source is a
:class:`SpecSource` of the plan: its own rectified frame, groups, stored phases and median,
and all sources share ONE graph and one working store. Why one graph and not one run after
another: a MOS observation has a hundred small sources, each a few tiles, so per-source runs
would leave workers idle between them (and pay a scheduler start, a store and a budget each
time); in one graph the scheduler runs the tiles of many sources at once. Memory stays set
by ``memory_limit``: every phase is stored one block per task, a task holds one tile (or one
group's weights on one source's frame, for its threshold), and how many tasks run at once is
the budget's, whatever the number of sources, slits or exposures. The pixel maps (exact, 16
bytes per input pixel, as the reference's) are a stored phase too, never held in memory.

The sources' frames are built first, on the run's workers (:meth:`SpecPlan.build`). Phases
of a source with resampling (:mod:`daskod.spec._tasks`): ``pixmap`` (band of input rows) ->
``drizzle`` (group, output tile; data, weight and error) -> ``threshold`` (group) ->
``median`` (median tile; median and median_err) -> ``flag`` (input tile); without
resampling ``threshold`` (input) -> ``median`` (detector tile) -> ``flag``. A source with
fewer than two inputs is skipped as the reference skips it (its DQ unchanged, ``keep``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from daskod._exceptions import InputError, OutputTooLargeError, SkippedWarning
from daskod.engine._budget import plan_budget, scheduler_facts
from daskod.engine._fingerprint import container_token, wcs_token
from daskod.engine._run import Context, Outputs
from daskod.exposure import Exposure, validate_exposures
from daskod.geometry._spec_frame import SpecFrame
from daskod.geometry._spec_pixel_map import input_pixel_range
from daskod.io._jwst import SPEC_EXP_TYPES
from daskod.io._store import ingested_bytes
from daskod.modes._params import ImagingParams

__all__ = ["SPEC_EXP_TYPES", "SpecPlan", "SpecSource", "looks_like_spec", "source_key"]

log = logging.getLogger(__name__)


def looks_like_spec(exposures: Any) -> bool:
    """True when any exposure's ``meta["exp_type"]`` is a slit spectroscopy type."""
    if isinstance(exposures, Exposure):
        exposures = [exposures]
    try:
        items = list(exposures)
    except TypeError:
        return False
    return any(isinstance(e, Exposure) and isinstance(e.meta, dict)
               and str(e.meta.get("exp_type", "")).upper() in SPEC_EXP_TYPES for e in items)


def source_key(exp: Exposure) -> str:
    """The source an input belongs to, as the reference's ``exp_to_source`` keys slits:
    ``meta["source_name"]`` when set, else ``meta["source_id"]``; inputs with neither (MIRI
    LRS images, arrays from Python) form the one source ``"all"``."""
    meta = exp.meta if isinstance(exp.meta, dict) else {}
    name = meta.get("source_name")
    if name is not None and str(name).strip():
        return str(name)
    if meta.get("source_id") is not None:
        return str(meta["source_id"])
    return "all"


def _groups(items: list[Exposure], members: list[int]) -> list[list[int]]:
    """Members per group id, groups in order of first appearance (``group_indices``)."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for k in members:
        groups.setdefault(str(items[k].group_id), []).append(k)
    return list(groups.values())


@dataclass
class SpecSource:
    """One source of a spec run: its inputs (indices into the plan's items), groups and
    frame, or why it is skipped."""

    index: int
    key: str
    members: list[int]
    groups: list[list[int]] = field(default_factory=list)
    frame: SpecFrame | None = None
    skipped: str | None = None

    @property
    def status(self) -> str:
        return "SKIPPED" if self.skipped else "COMPLETE"


def _from_file(exp: Exposure) -> bool:
    """An input read from a JWST product (its WCS came from the same file)."""
    return bool(isinstance(exp.meta, dict) and exp.meta.get("path")
                and isinstance(getattr(exp.sci, "path", None), str))


def _frame_job(job: tuple[list[Exposure], int]) -> SpecFrame:
    from daskod.spec._frame import build_spec_frame

    exposures, bad_mask = job
    return build_spec_frame(exposures, bad_mask=bad_mask)


def _map_on(sched: Any, func: Any, jobs: list[Any]) -> list[Any]:
    """``[func(job) for job in jobs]`` on the workers of a resolved scheduler (a cluster's,
    the run's process pool, threads), in order; exceptions propagate."""
    if len(jobs) < 2 or sched.name == "synchronous":
        return [func(job) for job in jobs]
    if sched.client is not None:
        return sched.client.gather(sched.client.map(func, jobs, pure=False))
    if sched.name == "processes" and sched.pool is not None:
        return list(sched.pool.map(func, jobs))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, sched.num_workers)) as pool:
        return list(pool.map(func, jobs))


class SpecPlan:
    """Validated slit inputs, split per source: every check runs before any work.

    The sources' frames are built when the graph is (:meth:`build`), on the run's scheduler,
    all sources at once: a frame costs ~0.3 s of WCS evaluation per MOS source, in this
    process it would be minutes of serial work for a hundred sources (the NIRSpec frame
    also reads the reference slit's SCI and DQ). Their cheap checks run here.
    """

    def __init__(self, exposures: Any, params: ImagingParams, *, max_output_pixels: int,
                 save_intermediate: bool = False) -> None:
        self.max_output_pixels = int(max_output_pixels)
        self._inputs: tuple[bool, dict[str, str]] | None = None
        self.params = params
        self.save = bool(save_intermediate)
        self.verify_inputs = False
        self.items = validate_exposures(exposures, need_wcs=params.resample_data)
        by_key: OrderedDict[str, list[int]] = OrderedDict()
        for k, exp in enumerate(self.items):
            by_key.setdefault(source_key(exp), []).append(k)
        self.sources = [SpecSource(index=s, key=key, members=idx)
                        for s, (key, idx) in enumerate(by_key.items())]
        for src in self.sources:
            self._prepare(src)
        skipped = [s.key for s in self.sources if s.skipped]
        self.skip_reason = None
        if len(skipped) == len(self.sources):
            self.skip_reason = (
                f"spectroscopic outlier detection needs at least 2 inputs per source; "
                f"source(s) {skipped[:5]} have fewer, so the step is skipped and DQ is "
                "unchanged, as the reference does (it records FAILED).")
        elif skipped:
            msg = (f"Source(s) {skipped[:5]}{' ...' if len(skipped) > 5 else ''} have fewer "
                   "than 2 inputs: their DQ is unchanged, as the reference skips them.")
            warnings.warn(msg, SkippedWarning, stacklevel=4)
            log.warning(msg)

    def _prepare(self, src: SpecSource) -> None:
        from daskod.spec._frame import check_frame_inputs

        exps = [self.items[k] for k in src.members]
        if len(exps) < 2:
            src.skipped = f"source {src.key!r} has {len(exps)} input"
            return
        src.groups = _groups(self.items, src.members)
        if self.params.resample_data:
            check_frame_inputs(exps)
            return
        shapes = {e.shape for e in exps}
        if len(shapes) > 1:
            first = exps[0]
            other = next(e for e in exps if e.shape != first.shape)
            msg = (f"Source {src.key!r}: resample_data=False needs every input on one "
                   f"pixel grid, but {other.name!r} has shape {other.shape} and "
                   f"{first.name!r} {first.shape}; use resample_data=True.")
            raise InputError(msg, exposure=other.name)

    def _build_frames(self, sched: Any) -> None:
        """Every active source's frame, on the run's workers (not as graph tasks: the frames
        decide the graph, and a lazy run computes no task before it is asked to)."""
        todo = [s for s in self.active if s.frame is None]
        if not self.params.resample_data or not todo:
            return
        jobs = [([self.items[k] for k in s.members], self.params.bad_mask) for s in todo]
        for src, frame in zip(todo, _map_on(sched, _frame_job, jobs), strict=True):
            ny, nx = frame.shape
            if ny * nx > self.max_output_pixels:
                msg = (f"Source {src.key!r}: the rectified frame would be {ny} x {nx} "
                       f"pixels, more than max_output_pixels={self.max_output_pixels}; "
                       f"check the inputs' WCS ({self.items[src.members[0]].name!r}, ...) "
                       "or raise max_output_pixels.")
                raise OutputTooLargeError(msg, shape=(ny, nx), nbytes=4 * ny * nx)
            src.frame = frame
            log.info("Source %s: %d input(s) in %d group(s), frame %d x %d", src.key,
                     len(src.members), len(src.groups), ny, nx)

    def source_pixels(self, src: SpecSource) -> int:
        """An upper estimate of a source's frame pixels before it is built: its inputs'
        pixels (a rectified frame holds the union of their footprints)."""
        if src.frame is not None:
            return math.prod(src.frame.shape)
        return sum(math.prod(self.items[k].shape) for k in src.members)

    @property
    def active(self) -> list[SpecSource]:
        return [s for s in self.sources if not s.skipped]

    # -- what the engine asks -------------------------------------------------------------
    def budget(self, sched: Any, memory_limit: Any, tile_size: int | None) -> Any:
        resample = self.params.resample_data
        units = max(len(s.groups) if resample else len(s.members) for s in self.active)
        members = max(len(g) for s in self.active for g in s.groups)
        if resample:
            whole = max(self.source_pixels(s) for s in self.active)
        else:
            whole = max(math.prod(self.items[k].shape) for s in self.active for k in s.members)
        # A spec task holds two of everything imaging's does (data and error drizzles, two
        # medians, two blots): counted as twice the groups and the group members.
        budget = plan_budget(memory_limit=memory_limit, n_groups=2 * units,
                             max_group_members=2 * members, tile_size=tile_size,
                             group_pixels=whole, **scheduler_facts(sched))
        if sched.client is None:
            sched.num_workers = budget.num_workers
        return budget

    def fingerprints(self) -> tuple[dict[str, str], dict[str, Any]]:
        """Identity of every input (computed once: hundreds of slits) and the parameters.

        The WCS of an input read from a file is the file's (its path, size and modification
        time are in the token); one given from Python is identified by what it does
        (:func:`~daskod.engine._fingerprint.wcs_token`, ~10 ms each)."""
        if self._inputs is None or self._inputs[0] != self.verify_inputs:
            resample = self.params.resample_data
            tokens = {e.name: container_token(
                e, e.group_id, e.shape, e.exposure_time, e.background_level,
                e.background_subtracted, e.instrument, source_key(e),
                {k: str(v) for k, v in e.meta.items()
                 if k in ("exp_type", "dispersion_direction")},
                wcs_token(e.wcs, e.shape) if resample and not _from_file(e) else None,
                content=self.verify_inputs) for e in self.items}
            self._inputs = (self.verify_inputs, tokens)
        params = {k: v for k, v in asdict(self.params).items()
                  if k not in ("pixmap_stepsize", "pixmap_order")}
        return dict(self._inputs[1]), {"mode": "spec", **params}

    def store_bytes(self, sched: Any) -> int:
        from daskod.modes._spec_graph import padded_bytes

        copied = sum(ingested_bytes(e, shares_memory=sched.shares_memory) for e in self.items)
        return copied + padded_bytes(self)

    def layout(self, budget: Any) -> dict[str, int]:
        median_tile = budget.median_tile or budget.tile
        tile = budget.tile if self.params.resample_data else median_tile
        return {"tile": int(tile), "median_tile": int(median_tile)}

    def build(self, ctx: Context) -> Outputs:
        from daskod.modes._spec_graph import SpecGraph

        self._build_frames(ctx.scheduler)
        tile = int(ctx.layout["tile"])
        inputs = self.fingerprints()[0]
        sources = [ctx.sources(e, f"inputs/{k}", (tile, tile), inputs[e.name])
                   for k, e in enumerate(self.items)]
        outputs, info = SpecGraph(self, ctx, sources, inputs).build()
        active = self.active
        single = active[0] if len(active) == 1 else None
        if single is not None:
            outputs.median = info[single.key]["median"]
        outputs.extras = {"spec": info, "groups": [g for s in active for g in s.groups],
                          "median_wcs": single.frame.wcs if single and single.frame else None}
        return outputs

    def pixel_range(self, k: int) -> tuple[int, int, int, int]:
        """The reference's drizzled pixel range of input ``k`` (its WCS bounding box)."""
        exp = self.items[k]
        return input_pixel_range(getattr(exp.wcs, "bounding_box", None), exp.shape)

