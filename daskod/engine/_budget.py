"""Memory budget -> tile size and concurrency.

The estimates are per task, in bytes per tile pixel, from the arrays each task holds at its
peak (see the task functions); the baseline is what a Python process already uses.

Local schedulers share ``memory_limit`` between this process and its workers. On a
distributed cluster the budget is shared by the workers (the client holds only the graph):
each worker gets ``memory_limit / n_workers``, never more than the pause threshold of its own
distributed ``memory_limit``, and its tasks must fit on top of what the worker already holds
(asked from the workers, not assumed).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from daskod._exceptions import MemoryBudgetError
from daskod.options import get_option, parse_bytes

__all__ = ["Budget", "WorkerFacts", "plan_budget", "task_budget", "scheduler_facts",
           "ask_workers", "group_pixels", "largest_group_pixels",
           "default_memory_limit", "process_rss"]

log = logging.getLogger(__name__)

#: Bytes per output-tile pixel held by one task, per group (median) or per exposure (drizzle).
MEDIAN_BYTES_PER_GROUP = 16
DRIZZLE_BYTES_PER_INPUT = 72
FLAG_BYTES = 120
#: Bytes per detector pixel of the largest group held by its weight-threshold task (the
#: weighted values, float32, gathered in raster order and clipped in place: measured 4 B/px
#: plus strips; ``resample._weights.weight_threshold``), and the task's fixed part.
THRESHOLD_BYTES_PER_PIXEL = 5
THRESHOLD_FIXED_BYTES = 16 * 2**20
#: Headroom for allocator fragmentation, zarr buffers and Dask bookkeeping.
SAFETY = 1.6
#: Resident memory of a worker process besides its task's arrays: 131 MiB at its first task
#: (forked from the server below with the task modules imported; Python 3.11, numpy 2.4,
#: astropy 8, zarr 3.1, dask 2026.8), and the heap it keeps between tasks (the allocator
#: settings of :mod:`daskod._worker_memory`): 8 x 2048^2 files at 768 MiB, tiles of 448 px,
#: workers grew to 205-214 MiB after tasks of ~60 MiB.
WORKER_BASELINE = 160 * 2**20
#: Local worker processes are forked from a server holding the task modules' imports (its
#: resident memory: measured 152 MiB, 169 MiB with the product writer's), beside
#: multiprocessing's resource tracker (15 MiB); both count once, in the process tree.
WORKER_SERVER_BASELINE = 200 * 2**20
#: Per process: zarr buffers, Dask/distributed bookkeeping, task results in flight.
OVERHEAD = 48 * 2**20
#: The same for a cluster worker, whose graph state is small (measured: a worker's RSS grew
#: 34 MiB above its post-import baseline over a whole 8 x 1024^2 run, tasks included).
WORKER_OVERHEAD = 24 * 2**20
MIN_TILE = 64
MAX_TILE = 2048
#: Bytes one cube-mode task needs at the least.
MIN_TASK = 8 * 2**20


def process_rss() -> int:
    """Resident memory of this process in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def default_memory_limit() -> int:
    """A quarter of the machine's memory, at most 4 GiB."""
    import psutil

    return int(min(psutil.virtual_memory().total // 4, 4 * 2**30))


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


@dataclass(frozen=True)
class WorkerFacts:
    """What the workers of a distributed cluster hold and allow, asked from them.

    Attributes
    ----------
    n_workers : int
        Worker processes now connected.
    threads_per_worker : int
        The largest thread count of a worker (tasks running at once in one process).
    baseline : int
        The largest resident memory of a worker after importing the task modules.
    memory_cap : int or None
        The smallest worker ``memory_limit`` times its pause (or terminate) fraction: above
        it distributed pauses or restarts the worker. None when workers have no limit.
    cap_fraction : float
        That pause (or terminate) fraction of the worker ``memory_limit`` (1.0 if none).
    """

    n_workers: int
    threads_per_worker: int
    baseline: int
    memory_cap: int | None
    cap_fraction: float = 1.0


def _probe_worker(dask_worker: Any = None) -> dict[str, Any]:
    """Runs on each worker (``client.run``): import the task modules, report RSS and limits."""
    import dask
    import psutil

    import daskod._worker_imports  # noqa: F401  (the modules every task imports)

    limit = frac = None
    nthreads = 1
    if dask_worker is not None:
        nthreads = int(getattr(dask_worker.state, "nthreads", None)
                       or getattr(dask_worker, "nthreads", 1))
        manager = getattr(dask_worker, "memory_manager", None)
        limit = getattr(manager, "memory_limit", None) or None
        fracs = [getattr(manager, "memory_pause_fraction", False),
                 dask.config.get("distributed.worker.memory.terminate", False)]
        fracs = [f for f in fracs if f not in (False, None)]
        frac = min(fracs) if fracs else None
    return {"rss": int(psutil.Process().memory_info().rss), "nthreads": nthreads,
            "limit": limit, "fraction": frac}


def ask_workers(client: Any) -> WorkerFacts:
    """Ask every worker of ``client`` for its resident memory, threads and memory limit."""
    replies = client.run(_probe_worker)
    if not replies:
        log.warning("The cluster has no workers yet; budgeting for one worker of "
                    "%s baseline.", _mib(WORKER_BASELINE))
        return WorkerFacts(1, 1, WORKER_BASELINE, None)
    limited = [r for r in replies.values() if r["limit"]]
    tightest = min(limited, key=lambda r: r["limit"] * (r["fraction"] or 1.0), default=None)
    return WorkerFacts(n_workers=len(replies),
                       threads_per_worker=max(int(r["nthreads"]) for r in replies.values()),
                       baseline=max(int(r["rss"]) for r in replies.values()),
                       memory_cap=None if tightest is None
                       else int(tightest["limit"] * (tightest["fraction"] or 1.0)),
                       cap_fraction=1.0 if tightest is None else (tightest["fraction"] or 1.0))


def scheduler_facts(scheduler: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`plan_budget` / :func:`task_budget` that describe
    ``scheduler`` (a :class:`daskod.engine._scheduler.Scheduler`); asks a cluster's workers."""
    if scheduler.client is not None:
        return {"num_workers": scheduler.num_workers, "separate_processes": True,
                "workers": ask_workers(scheduler.client)}
    return {"num_workers": scheduler.num_workers,
            "separate_processes": scheduler.name == "processes", "workers": None}


@dataclass(frozen=True)
class Budget:
    """The outcome of budgeting.

    ``tile`` is the tile edge of the tasks that hold one tile per exposure (drizzle, flag;
    0 for modes sized in bytes) and ``median_tile`` that of the median, whose tasks hold a
    tile of every group: it shrinks as groups are added while ``tile`` does not (``tile`` is
    a multiple of it); ``per_task_bytes`` what one task holds at its peak;
    ``predicted_peak`` the resident memory the budget covers (this process and its local
    workers, or the workers of a cluster); ``worker_share`` the budget of one cluster worker
    (None locally).
    """

    memory_limit: int
    tile: int
    num_workers: int
    per_task_bytes: int
    baseline: int
    predicted_peak: int = 0
    worker_share: int | None = None
    median_tile: int = 0

    def describe(self) -> str:
        share = (f", {_mib(self.worker_share)} per cluster worker"
                 if self.worker_share is not None else "")
        median = (f" (median {self.median_tile} px)"
                  if self.median_tile and self.median_tile != self.tile else "")
        return (f"memory_limit={_mib(self.memory_limit)}, tile={self.tile} px{median}, "
                f"workers={self.num_workers}, ~{_mib(self.per_task_bytes)} per task, "
                f"baseline {_mib(self.baseline)}{share}, predicted peak "
                f"{_mib(self.predicted_peak)}")


def bytes_per_tile_pixel(n_groups: int, max_group_members: int) -> float:
    """Peak bytes per tile pixel of the most demanding task."""
    return SAFETY * max(MEDIAN_BYTES_PER_GROUP * n_groups,
                        DRIZZLE_BYTES_PER_INPUT * max_group_members, FLAG_BYTES)


def _tile_edges(available_per_task: float, n_groups: int,
                max_group_members: int) -> tuple[int, int, int]:
    """(tile, median tile, bytes per task) for ``available_per_task`` bytes per task.

    Drizzle and flag tasks hold one tile of one group / exposure, median tasks a tile of every
    group: each gets the largest edge that fits, and the tile is made a multiple of the
    median tile (drizzled groups are stored in shards of one tile holding median-tile chunks),
    so adding exposures shrinks only the median's tiles, never the drizzle's.
    """
    median_px = SAFETY * MEDIAN_BYTES_PER_GROUP * n_groups
    tile_px = SAFETY * max(DRIZZLE_BYTES_PER_INPUT * max_group_members, FLAG_BYTES)

    def edge(per_px: float) -> int:
        return max(MIN_TILE, int(min(MAX_TILE, math.sqrt(available_per_task / per_px)))
                   // 64 * 64)

    tile, median_tile = edge(tile_px), edge(median_px)
    if median_tile >= tile:
        median_tile = tile
    else:
        tile = tile // median_tile * median_tile
    return tile, median_tile, int(max(median_px * median_tile**2, tile_px * tile**2))


def _balanced(tile: int, median_tile: int, extent: int) -> tuple[int, int]:
    """The tile (and median tile, when they are equal) shrunk to the smallest multiple of 64
    that covers ``extent`` in as many tiles as ``tile`` needs (never larger)."""
    if extent <= 0 or median_tile != tile:
        return tile, median_tile
    n = math.ceil(extent / tile)
    even = max(MIN_TILE, math.ceil(extent / n / 64) * 64)
    return min(tile, even), min(tile, even)


def group_pixels(shapes: list[tuple[int, ...]], groups: list[list[int]] | None) -> list[int]:
    """Detector pixels of each group (of each exposure when ``groups`` is None: no
    resampling, each exposure's own weights are thresholded)."""
    sizes = [math.prod(shape) for shape in shapes]
    if groups is None:
        return sizes
    return [sum(sizes[k] for k in g) for g in groups]


def largest_group_pixels(shapes: list[tuple[int, ...]], groups: list[list[int]] | None) -> int:
    """Detector pixels of the largest group (:func:`group_pixels`)."""
    return max(group_pixels(shapes, groups), default=0)


def _limit(memory_limit: int | str | None, workers: WorkerFacts | None) -> int:
    given = parse_bytes(memory_limit if memory_limit is not None
                        else get_option("memory_limit"))
    if given:
        return given
    if workers is not None and workers.memory_cap:
        # A cluster whose workers have limits: their sum is the budget.
        return workers.n_workers * workers.memory_cap
    return default_memory_limit()


def _worker_share(limit: int, workers: WorkerFacts) -> int:
    share = limit // workers.n_workers
    if workers.memory_cap is not None:
        share = min(share, workers.memory_cap)
    return share


def _cluster_refusal(limit: int, workers: WorkerFacts, task_bytes: float, what: str) -> str:
    """Why one task of ``task_bytes`` per thread does not fit a worker, and what would."""
    need = workers.baseline + WORKER_OVERHEAD + workers.threads_per_worker * task_bytes
    share = _worker_share(limit, workers)
    msg = (f"memory_limit={_mib(limit)} over {workers.n_workers} workers gives each "
           f"{_mib(share)}")
    if workers.memory_cap is not None and share == workers.memory_cap:
        msg += " (the pause threshold of the workers' own memory_limit)"
    msg += (f"; a worker already holds {_mib(workers.baseline)} and "
            f"{workers.threads_per_worker} task(s) of {what} need ~{_mib(need - workers.baseline)}"
            f" more. ")
    fixes = []
    if workers.memory_cap is not None and workers.memory_cap < need:
        fixes.append(f"start workers with memory_limit of at least "
                     f"{math.ceil(need / workers.cap_fraction / 2**20)} MiB (distributed pauses "
                     f"a worker at {workers.cap_fraction:g} of it)")
    else:
        fixes.append(f"give memory_limit of at least {math.ceil(need * workers.n_workers / 2**20)}"
                     " MiB")
        fewer = int(limit // need)
        if 1 <= fewer < workers.n_workers:
            fixes.append(f"use at most {fewer} worker(s)")
    if workers.threads_per_worker > 1:
        fixes.append("use one thread per worker")
    if len(fixes) == 1:
        return f"{msg}{fixes[0][0].upper()}{fixes[0][1:]}."
    return msg + "Either " + ", or ".join(fixes) + "."


def _local_processes(separate_processes: bool) -> tuple[int, int]:
    """What the processes scheduler's own processes hold: its worker server and resource
    tracker (counted once) and each worker besides its task; nothing for threads."""
    return (WORKER_SERVER_BASELINE, WORKER_BASELINE) if separate_processes else (0, 0)


def _server_words(server: int) -> str:
    return f" and the {_mib(server)} of the worker processes' server" if server else ""


def plan_budget(
    *,
    memory_limit: int | str | None,
    n_groups: int,
    max_group_members: int,
    tile_size: int | None,
    num_workers: int,
    separate_processes: bool,
    workers: WorkerFacts | None = None,
    group_pixels: int = 0,
    extent: int = 0,
) -> Budget:
    """Choose tile size and worker count so the run fits ``memory_limit``.

    Parameters
    ----------
    memory_limit : int, str or None
        Budget for the whole run: this process plus local worker processes, or the workers
        of a distributed cluster (``workers`` given).
    n_groups, max_group_members : int
        Stack depth of the median and the largest group drizzled by one task.
    tile_size : int or None
        Fixed tile edge; None derives it.
    num_workers : int
        Workers the scheduler would use.
    separate_processes : bool
        Workers are local processes, each with its own baseline.
    workers : WorkerFacts, optional
        The workers of a distributed cluster (:func:`ask_workers`).
    group_pixels : int, optional
        Detector pixels of the largest group: its weight-threshold task gathers the group's
        weights whole (phases run one after another, so it competes with no tile task).
    extent : int, optional
        Longest edge of the arrays tiled (output frame, detectors). A derived tile is then
        shrunk to split it evenly (a 2134 px frame: 2 tiles of 1088, not 2048 + 86, whose
        sliver tasks leave a worker idle).
    """
    limit = _limit(memory_limit, workers)
    per_px = bytes_per_tile_pixel(n_groups, max_group_members)
    whole = SAFETY * (THRESHOLD_BYTES_PER_PIXEL * group_pixels + THRESHOLD_FIXED_BYTES)
    if tile_size is not None or get_option("tile_size") is not None:
        tile_size = int(tile_size if tile_size is not None else get_option("tile_size"))
        if tile_size < 8:
            msg = f"tile_size must be at least 8 pixels, got {tile_size!r}."
            raise ValueError(msg)
    smallest = per_px * (tile_size or MIN_TILE) ** 2
    if whole > smallest:
        what = (f"gathering the weights of one group ({group_pixels / 1e6:.1f} Mpx) for its "
                "threshold")
    elif tile_size is None:
        what = f"one {MIN_TILE}x{MIN_TILE} tile of {n_groups} groups"
    else:
        what = f"one {tile_size}x{tile_size} tile (tile_size) of {n_groups} groups"
    if workers is not None:
        return _plan_on_cluster(limit, per_px, whole, tile_size, workers, what,
                                (n_groups, max_group_members), extent)
    baseline = process_rss()
    server, worker_base = _local_processes(separate_processes)
    fixed = baseline + OVERHEAD + server  # held whatever the tiles
    available = limit - fixed
    n = max(1, num_workers)
    least = max(per_px * MIN_TILE**2, whole)
    # Each worker process carries roughly the same imports as this one; phases share one
    # graph, so any worker may be running a whole-group task while the others run tiles.
    while n > 1 and available - n * worker_base < n * least:
        n -= 1
    available -= n * worker_base
    if available <= least:
        need = fixed + worker_base + least
        msg = (f"memory_limit={_mib(limit)} cannot hold {what} on top of the "
               f"{_mib(baseline)} this process already uses"
               f"{_server_words(server)}; give at least {math.ceil(need / 2**20)} MiB.")
        raise MemoryBudgetError(msg)
    if tile_size is None:
        tile, median_tile, per_task = _tile_edges(available / n, n_groups, max_group_members)
        tile, median_tile = _balanced(tile, median_tile, extent)
    else:
        tile = median_tile = tile_size
        while n > 1 and per_px * tile**2 * n > available:
            n -= 1
        per_task = int(per_px * tile**2)
    budget = Budget(memory_limit=limit, tile=tile, num_workers=n, per_task_bytes=per_task,
                    baseline=baseline, predicted_peak=int(
                        fixed + n * (max(per_task, whole) + worker_base)),
                    median_tile=median_tile)
    log.info("Budget: %s", budget.describe())
    return budget


def _plan_on_cluster(limit: int, per_px: float, whole: float, tile_size: int | None,
                     workers: WorkerFacts, what: str, stack: tuple[int, int],
                     extent: int) -> Budget:
    share = _worker_share(limit, workers)
    threads = workers.threads_per_worker
    available = share - workers.baseline - WORKER_OVERHEAD
    least = max(per_px * (tile_size or MIN_TILE) ** 2, whole)
    if available < threads * least:
        msg = _cluster_refusal(limit, workers, least, what)
        if tile_size is not None and whole < per_px * tile_size**2:
            msg += " A smaller tile_size (or none) may also fit."
        raise MemoryBudgetError(msg)
    if tile_size is None:
        tile, median_tile, per_task = _tile_edges(available / threads, *stack)
        tile, median_tile = _balanced(tile, median_tile, extent)
    else:
        tile = median_tile = tile_size
        per_task = int(per_px * tile**2)
    per_worker = workers.baseline + WORKER_OVERHEAD + threads * max(per_task, whole)
    budget = Budget(memory_limit=limit, tile=tile, num_workers=workers.n_workers * threads,
                    per_task_bytes=per_task, baseline=workers.baseline,
                    predicted_peak=int(workers.n_workers * per_worker), worker_share=share,
                    median_tile=median_tile)
    log.info("Budget: %s", budget.describe())
    return budget


def task_budget(*, memory_limit: int | str | None, num_workers: int,
                separate_processes: bool, workers: WorkerFacts | None = None,
                least: int = MIN_TASK, what: str | None = None) -> Budget:
    """The budget of modes sized by bytes, not tiles (``tile`` is 0, ``per_task_bytes`` is
    what one task may hold before the safety factor).

    ``least`` is what the smallest task of the mode holds (``what`` names it in the
    refusal): local workers are dropped until each task gets at least that much, and a
    budget that cannot give it to one task is refused with the smallest one that can.
    """
    least = max(int(least), MIN_TASK)
    what = what or f"{_mib(least)} each"
    limit = _limit(memory_limit, workers)
    if workers is not None:
        share = _worker_share(limit, workers)
        threads = workers.threads_per_worker
        per_task = int((share - workers.baseline - WORKER_OVERHEAD) / threads / SAFETY)
        if per_task < least:
            raise MemoryBudgetError(_cluster_refusal(limit, workers, SAFETY * least, what))
        per_worker = workers.baseline + WORKER_OVERHEAD + threads * per_task * SAFETY
        budget = Budget(memory_limit=limit, tile=0, num_workers=workers.n_workers * threads,
                        per_task_bytes=per_task, baseline=workers.baseline,
                        predicted_peak=int(workers.n_workers * per_worker), worker_share=share)
    else:
        baseline = process_rss()
        server, worker_base = _local_processes(separate_processes)
        fixed = baseline + OVERHEAD + server  # held whatever the tasks
        available = limit - fixed
        n = max(1, num_workers)
        if separate_processes:
            while n > 1 and available - n * worker_base < n * 32 * 2**20:
                n -= 1
        while n > 1 and (available - n * worker_base) / n / SAFETY < least:
            n -= 1
        available -= n * worker_base
        per_task = int(available / n / SAFETY)
        if per_task < least:
            need = fixed + worker_base + SAFETY * least
            msg = (f"memory_limit={_mib(limit)} leaves {max(per_task, 0) / 2**20:.1f} MiB "
                   f"per task on top of the {_mib(baseline)} this process uses"
                   f"{_server_words(server)}, and {what} needs {_mib(least)}; give at least "
                   f"{math.ceil(need / 2**20)} MiB.")
            raise MemoryBudgetError(msg)
        budget = Budget(memory_limit=limit, tile=0, num_workers=n, per_task_bytes=per_task,
                        baseline=baseline, predicted_peak=int(
                            fixed + n * (per_task * SAFETY + worker_base)))
    log.info("Budget: %s", budget.describe())
    return budget
