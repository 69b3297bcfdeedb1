"""The one orchestration path of every mode.

A mode *prepares* (validates its inputs and computes its geometry, reading no pixel) and
*builds* its phases into the run's graph through a :class:`Context`; this module does the rest,
the same way for all modes: scheduler, memory budget, working store (temporary or named,
locked, resumed), one ``dask.compute`` of the whole graph (or none, for ``compute=False``), the
result, and the clean-up.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskod._heap import resume_collector
from daskod.engine._graph import Ref, RunGraph
from daskod.engine._scheduler import Scheduler, resolve_scheduler
from daskod.engine._store import StoredArray, WorkingStore, fill_block, read_block
from daskod.io._store import INPUT_ARRAYS, reads_in_place

__all__ = ["Context", "Outputs", "Source", "flag_outputs", "run_mode"]

log = logging.getLogger(__name__)


@dataclass
class Source:
    """Where tasks read one input array: in place (``ref``), or from the stored blocks that
    copied it into the working store (``grid`` of refs, blocks of ``block``)."""

    ref: Ref | None = None
    grid: np.ndarray | None = None
    block: tuple[int, ...] = ()

    def reads(self, region: tuple[slice, ...]) -> Ref | list[Ref]:
        """What a task reading ``region`` depends on."""
        if self.grid is None:
            return self.ref  # type: ignore[return-value]
        index = tuple(slice(s.start // b, (s.stop - 1) // b + 1)
                      for s, b in zip(region, self.block, strict=True))
        return list(self.grid[index].ravel())


@dataclass
class Outputs:
    """What a mode's graph hands back (lazy arrays over the run graph: GraphArray, or Dask
    arrays where a mode sliced them)."""

    dq: list[Any]
    counts: Any
    median: Any = None
    #: Computed before the main graph in eager runs; ``check(values)`` raises on bad input.
    precheck: Any = None
    check: Any = None
    #: Usable input pixels per exposure (set by :func:`flag_outputs` when the flag tasks count
    #: them), computed with the graph in eager runs for the flag-fraction check.
    usable: Any = None
    #: Computed with the graph in eager runs that keep results in memory.
    extras: dict[str, Any] = field(default_factory=dict)
    #: Small values computed with the graph in every eager run.
    scalars: dict[str, Any] = field(default_factory=dict)
    #: Per exposure: the stored new DQ and the tasks that write it (set by
    #: :func:`flag_outputs`), for products written as soon as an exposure is flagged.
    dq_stored: list[tuple[StoredArray, list[Ref]]] = field(default_factory=list)


@dataclass
class Context:
    """What a mode builds its graph with."""

    graph: RunGraph
    store: WorkingStore
    scheduler: Scheduler
    budget: Any
    layout: dict[str, Any]
    #: Blocks with a task, per stored array.
    planned: dict[str, int] = field(default_factory=dict)

    def stored(self, name: str, shape: tuple[int, ...], dtype: Any, block: tuple[int, ...],
               fill_value: Any, *, fingerprint: str, chunks: tuple[int, ...] | None = None,
               attributes: dict[str, Any] | None = None) -> StoredArray:
        """A stored phase array in the working store (see
        :meth:`~daskod.engine._store.WorkingStore.phase_array`)."""
        return self.store.phase_array(name, shape, dtype, block, fill_value,
                                      fingerprint=fingerprint, chunks=chunks,
                                      attributes=attributes)

    def fill(self, phase: str, index: tuple[int, ...], targets: tuple[StoredArray, ...],
             func: Any, *args: Any, block: tuple[int, ...] | None = None, **kwargs: Any) -> Ref:
        """The task ``(phase, *index)`` computing block ``block`` (default ``index``) of
        ``targets`` unless it is stored already."""
        for target in targets:
            self.planned[target.array.path] = self.planned.get(target.array.path, 0) + 1
        return self.graph.task(phase, index, fill_block, targets,
                               index if block is None else block, func, *args, **kwargs)

    def output(self, phase: str, refs: dict[tuple[int, ...], Ref], stored: StoredArray,
               which: int = 0) -> Any:
        """The lazy array (GraphArray) of a stored phase: block ``index`` reads what task
        ``refs[index]`` wrote (blocks without a task read the fill value)."""
        grid = tuple(len(range(0, n, b)) for n, b in zip(stored.shape, stored.block,
                                                         strict=True))
        for index in np.ndindex(*grid):
            dep = refs.get(index, stored)
            self.graph.task(phase, index, read_block, dep, stored.region(index), which)
        chunks = tuple(tuple(min(b, n - k) for k in range(0, n, b))
                       for n, b in zip(stored.shape, stored.block, strict=True))
        return self.graph.array(phase, chunks, stored.dtype)

    def sources(self, container: Any, prefix: str, block: tuple[int, ...],
                fingerprint: str) -> dict[str, Source]:
        """The input arrays of an Exposure or Cube as :class:`Source` s: read in place, or
        copied into ``<prefix>/<name>`` of the store block by block."""
        out: dict[str, Source] = {}
        shares = self.scheduler.shares_memory
        for name in INPUT_ARRAYS:
            value = getattr(container, name, None)
            if value is None:
                continue
            phase = f"src-{prefix.replace('/', '-')}-{name}"
            if reads_in_place(value, shares_memory=shares):
                out[name] = Source(ref=self.graph.data(phase, value))
                continue
            shape = tuple(int(n) for n in np.shape(value))
            blk = tuple(min(b, n) for b, n in zip(block, shape, strict=True))
            dtype = np.uint32 if name == "dq" else np.float32
            target = self.stored(f"{prefix}/{name}", shape, dtype, blk,
                                 0 if name == "dq" else np.nan,
                                 fingerprint=f"{fingerprint}-{name}")
            lazy = value.rechunk(blk) if hasattr(value, "dask") else None
            grid = np.empty(tuple(-(-n // b) for n, b in zip(shape, blk, strict=True)),
                            dtype=object)
            for index in np.ndindex(*grid.shape):
                region = target.region(index)
                part = (self.graph.block_of(lazy, index) if lazy is not None
                        else np.array(value[region]))
                grid[index] = self.fill(phase, index, (target,), np.asarray, part)
            out[name] = Source(grid=grid, block=blk)
        return out


class _PhaseTimer:
    """Seconds per phase (key prefix) and one log line per phase, for local schedulers."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def phase(self, key: Any) -> str | None:
        name = key[0] if isinstance(key, tuple) else str(key)
        if not isinstance(name, str) or not name.endswith(self.token):
            return None
        return name[:-len(self.token) - 1].split("-")[0]

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        from dask.callbacks import Callback

        def start(key: Any, _dask: Any, _state: Any) -> None:
            p = self.phase(key)
            if p is not None:
                self.first.setdefault(p, time.perf_counter())

        def finish(key: Any, _task: Any, _dask: Any, _state: Any, _worker: Any) -> None:
            p = self.phase(key)
            if p is not None:
                self.last[p] = time.perf_counter()
                self.count[p] = self.count.get(p, 0) + 1

        with Callback(pretask=start, posttask=finish):
            yield

    def timings(self) -> dict[str, float]:
        out = {}
        for p in sorted(self.first, key=self.first.__getitem__):
            out[p] = self.last.get(p, self.first[p]) - self.first[p]
            log.info("Phase %s: %d tasks in %.2f s", p, self.count.get(p, 0), out[p])
        return out


def flag_outputs(ctx: Context, refs: list[dict[tuple[int, ...], Ref]],
                 stores: list[tuple[StoredArray, ...]]) -> Outputs:
    """DQ arrays and outlier counts per exposure from its flag tasks (each writes a block of
    ``stores[k][0]``, the new DQ, and of ``stores[k][1]``, its outlier count; and of
    ``stores[k][2]``, when there is one, its usable input pixels)."""
    n = len(stores)
    dq = [ctx.output(f"dq{k}", refs[k], stores[k][0]) for k in range(n)]
    for k in range(n):
        ctx.graph.task("count", (k,), _total, stores[k][1], list(refs[k].values()))
    usable = None
    if n and all(len(s) > 2 for s in stores):
        for k in range(n):
            ctx.graph.task("usable", (k,), _total, stores[k][2], list(refs[k].values()))
        usable = ctx.graph.array("usable", ((1,) * n,), np.int64)
    return Outputs(dq=dq, counts=ctx.graph.array("count", ((1,) * n,), np.int64),
                   dq_stored=[(stores[k][0], list(refs[k].values())) for k in range(n)],
                   usable=usable)


#: Set by ``daskod run``: ``writer(k, dq)`` writes exposure ``k``'s product from its stored
#: new DQ; the run then writes each product in the graph, as soon as its exposure is flagged.
PRODUCT_WRITER: contextvars.ContextVar[Any] = contextvars.ContextVar("daskod_product_writer",
                                                                    default=None)


#: Set (True) by ``daskod run``: the run's result keeps its lazy arrays as
#: :class:`~daskod.engine._graph.GraphArray` s (``daskod run`` converts the few it reads with
#: :func:`~daskod.engine._graph.as_dask`), so a command-line run never imports
#: ``dask.array``; other callers get ``dask.array`` objects.
GRAPH_OUTPUTS: contextvars.ContextVar[bool] = contextvars.ContextVar("daskod_graph_outputs",
                                                                     default=False)


def _write_product(writer: Any, k: int, dq: StoredArray, _written: list[Any]) -> np.ndarray:
    writer(k, dq)
    return np.zeros(1, dtype=np.int64)


def _total(counts: StoredArray, _written: list[Any]) -> np.ndarray:
    """Outliers (or usable pixels) of one exposure: the sum of its blocks' counts, read after
    they were written."""
    return np.array([int(np.asarray(counts[...]).sum())], dtype=np.int64)


def _unwrap(values: Any) -> Any:
    """Computed 1-element arrays of scalars as Python floats."""
    if isinstance(values, dict):
        return {k: _unwrap(v) for k, v in values.items()}
    if isinstance(values, np.ndarray) and values.size == 1:
        return float(values.ravel()[0])
    return values


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _progress(progress: bool, sched: Scheduler) -> Any:
    """Labelled per-phase progress on stderr or in a notebook (local schedulers); the
    dashboard link on a cluster."""
    if not progress:
        return contextlib.nullcontext()
    if sched.client is not None:
        log.info("Dashboard: %s", getattr(sched.client, "dashboard_link", "?"))
        return contextlib.nullcontext()
    from daskod.progress import DEFAULT_PHASES, PhaseProgress

    return PhaseProgress(DEFAULT_PHASES)


def _budget(plan: Any, sched: Scheduler, memory_limit: Any, tile_size: int | None,
            compute: bool) -> Any:
    """The plan's budget on ``sched``. When the scheduler is daskod's default and the plan
    prefers processes (drizzle holds the GIL), a pool of processes is used if the budget
    gives it at least two workers, else threads."""
    if sched.by_default and compute and getattr(plan, "prefers_processes", False) \
            and sched.num_workers >= 2:
        pool = Scheduler("processes", sched.num_workers)
        try:
            budget = plan.budget(pool, memory_limit, tile_size)
        except MemoryError:
            budget = None
        if budget is not None and budget.num_workers >= 2:
            sched.name, sched.num_workers = pool.name, pool.num_workers
            sched.warm_up(writes_products=PRODUCT_WRITER.get() is not None)
            return budget
    return plan.budget(sched, memory_limit, tile_size)


def run_mode(plan: Any, *, scheduler: Any, memory_limit: Any, tile_size: int | None,
             store: Any, storage_options: dict[str, Any] | None, compute: bool,
             in_memory: bool, keep_store: bool, overwrite_store: bool,
             progress: bool) -> dict[str, Any]:
    """Run a prepared mode through the engine.

    ``plan`` provides ``budget(scheduler, memory_limit, tile_size)``, ``fingerprints()``
    (inputs, parameters), ``store_bytes(scheduler)``, ``layout(budget)`` and
    ``build(context)`` returning :class:`Outputs`.

    Returns
    -------
    dict
        ``outputs`` (numpy when computed in memory, else GraphArray or Dask arrays),
        ``counts``, ``timings``, ``store`` (the kept store's root or None), ``checkpoints``.
    """
    from daskod.io._location import ensure_free_space

    sched = resolve_scheduler(scheduler)
    try:
        budget = _budget(plan, sched, memory_limit, tile_size, compute)
        work = WorkingStore.create(store, storage_options=storage_options)
    except BaseException:
        sched.close()
        raise
    inputs, parameters = plan.fingerprints()
    lock = work.lock() if compute else contextlib.nullcontext()
    timer = _PhaseTimer("")
    try:
        with lock, sched.session():
            ensure_free_space(work.root, plan.store_bytes(sched), what="the working store")
            layout = work.start(inputs=inputs, parameters=parameters,
                                layout=plan.layout(budget), overwrite=overwrite_store)
            ctx = Context(graph=RunGraph(), store=work, scheduler=sched, budget=budget,
                          layout=layout)
            out = plan.build(ctx)
            timer = _PhaseTimer(ctx.graph.token)
            result = {"dq": out.dq, "counts": out.counts, "median": out.median,
                      "extras": out.extras}
            if compute:
                import dask

                resume_collector()  # paused by the command line for the run's start-up
                kwargs = sched.compute_kwargs()
                if out.precheck is not None:
                    out.check(dask.compute(out.precheck, **kwargs)[0])
                wanted = {"counts": out.counts, "scalars": out.scalars}
                if out.usable is not None:
                    wanted["usable"] = out.usable
                writer = PRODUCT_WRITER.get()
                if writer is not None and out.dq_stored:
                    for k, (dq, refs) in enumerate(out.dq_stored):
                        ctx.graph.task("product", (k,), _write_product, writer, k, dq, refs)
                    wanted["products"] = ctx.graph.array(
                        "product", ((1,) * len(out.dq_stored),), np.int64)
                if in_memory:
                    wanted.update(median=out.median, dq=list(out.dq), extras=out.extras)
                start = time.perf_counter()
                with timer.watch(), _progress(progress, sched):
                    (values,) = dask.compute(wanted, **kwargs)
                log.debug("Computed the graph in %.2f s", time.perf_counter() - start)
                result.update(values)
                result["counts"] = [int(n) for n in values["counts"]]
                if "usable" in values:
                    result["usable"] = [int(n) for n in values["usable"]]
                _merge(result["extras"], _unwrap(values["scalars"]))
                work.complete()
    except BaseException:
        if work.temporary:
            work.remove()
        raise
    result["timings"] = timer.timings()
    planned = ctx.planned if "ctx" in locals() else {}
    result["checkpoints"] = {name: {"reused": r, "total": planned.get(name, t)}
                             for name, (r, t) in work.reused.items() if r}
    if compute and in_memory and not keep_store and work.temporary:
        work.remove()
        result["store"] = None
    else:
        if keep_store:
            work.keep()
        result["store"] = work.root
    result["work"] = work
    return result
