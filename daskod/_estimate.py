"""``daskod.estimate_memory``: the budget a run would use, without running it."""

from __future__ import annotations

from typing import Any

__all__ = ["estimate_memory"]


def estimate_memory(
    inputs: Any,
    *,
    memory_limit: int | str | None = None,
    tile_size: int | None = None,
    scheduler: Any = None,
    resample_data: bool = True,
    mode: str | None = None,
) -> dict[str, Any]:
    """Predict tile size, concurrency and peak memory of :func:`daskod.detect_outliers`.

    Reads no pixel: only shapes and group ids.

    Parameters
    ----------
    inputs : list of Exposure or Cube
        As for :func:`daskod.detect_outliers`.
    memory_limit, tile_size, scheduler, resample_data, mode
        As for :func:`daskod.detect_outliers`.

    Returns
    -------
    dict
        ``memory_limit``, ``predicted_peak`` (bytes: this process now, plus the working
        tasks at once, plus worker processes' own imports when they are local processes),
        ``per_task``, ``workers``, and ``tile`` (imaging) or ``budget_per_task`` (cubes).

    Raises
    ------
    MemoryBudgetError
        When no tile fits; the message says what would.
    """
    from daskod.cube import Cube
    from daskod.engine._budget import (
        SAFETY,
        WORKER_BASELINE,
        default_memory_limit,
        plan_budget,
        plan_task_budget,
        process_rss,
    )
    from daskod.engine._dispatch import resolve_scheduler
    from daskod.exposure import validate_exposures
    from daskod.modes.imaging import group_exposures
    from daskod.options import get_option, parse_bytes

    sched = resolve_scheduler(scheduler)
    procs = sched.client is None and sched.name == "processes"
    if isinstance(inputs, Cube) or mode in ("tso", "coron"):
        per_task, workers = plan_task_budget(memory_limit=memory_limit,
                                             num_workers=sched.num_workers,
                                             separate_processes=procs)
        baseline = process_rss()
        peak = baseline + 48 * 2**20 + workers * (per_task * SAFETY
                                                   + (WORKER_BASELINE if procs else 0))
        limit = parse_bytes(memory_limit if memory_limit is not None
                            else get_option("memory_limit")) or default_memory_limit()
        return {"memory_limit": limit, "predicted_peak": int(peak), "per_task": per_task,
                "workers": workers, "budget_per_task": per_task}
    items = validate_exposures(inputs, need_wcs=False)
    groups = group_exposures(items)
    n_units = len(groups) if resample_data else len(items)
    budget = plan_budget(memory_limit=memory_limit, n_groups=max(n_units, 1),
                         max_group_members=max(len(g) for g in groups), tile_size=tile_size,
                         num_workers=sched.num_workers, separate_processes=procs)
    peak = (budget.baseline + 48 * 2**20
            + budget.num_workers * (budget.per_task_bytes + (WORKER_BASELINE if procs else 0)))
    return {"memory_limit": budget.memory_limit, "predicted_peak": int(peak),
            "per_task": budget.per_task_bytes, "workers": budget.num_workers,
            "tile": budget.tile}
