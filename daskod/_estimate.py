"""``daskod.estimate_memory``: the budget a run would use, without running it."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["estimate_memory"]


def estimate_memory(
    inputs: Any,
    *,
    memory_limit: int | str | None = None,
    tile_size: int | None = None,
    scheduler: Any = None,
    resample_data: bool = True,
    mode: str | None = None,
    rolling_window_width: int = 25,
) -> dict[str, Any]:
    """Predict tile size, concurrency and peak memory of :func:`daskod.detect_outliers`.

    Reads no pixel: only shapes and group ids.

    Parameters
    ----------
    inputs : list of Exposure or Cube
        As for :func:`daskod.detect_outliers`.
    memory_limit, tile_size, scheduler, resample_data, mode, rolling_window_width
        As for :func:`daskod.detect_outliers` (the window sizes a time-series cube's
        smallest task, below which the budget is refused).

    Returns
    -------
    dict
        ``memory_limit``; ``predicted_peak`` (bytes: locally this process now, plus the
        working tasks at once, plus worker processes' own imports when they are local
        processes; on a distributed cluster the sum over its workers of what each holds now
        plus its tasks); ``per_task``, ``workers``, and ``tile`` (imaging) or
        ``budget_per_task`` (cubes); on a cluster also ``worker_share`` (the budget of one
        worker) and ``worker_peak`` (its predicted peak).

    Raises
    ------
    MemoryBudgetError
        When no tile fits; the message says what would.
    ConnectionError
        When ``scheduler`` is an address that cannot be reached.

    Notes
    -----
    The run itself budgets through the same functions, so the estimate is what it uses. On a
    cluster the workers are asked for their resident memory and limits.
    """
    from daskod._api import _guess_mode
    from daskod.cube import Cube
    from daskod.engine._budget import (
        largest_group_pixels,
        plan_budget,
        scheduler_facts,
        task_budget,
    )
    from daskod.engine._scheduler import resolve_scheduler
    from daskod.exposure import validate_exposures
    from daskod.io._store import store_bytes
    from daskod.modes.imaging import group_exposures

    sched = resolve_scheduler(scheduler)
    frame = None
    try:
        facts = scheduler_facts(sched)
        shares = sched.shares_memory
        cube_mode = _guess_mode(inputs, mode) if isinstance(inputs, Cube) else None
        if cube_mode in ("tso", "coron"):
            from daskod.modes.cube import cube_task_budget

            budget = cube_task_budget(tuple(inputs.shape), int(rolling_window_width),
                                      mode=cube_mode, memory_limit=memory_limit, facts=facts)
            written = store_bytes([inputs], shares_memory=shares)
        elif isinstance(inputs, Cube) or mode in ("tso", "coron", "ifu"):
            budget = task_budget(memory_limit=memory_limit, **facts)
            containers = [inputs] if isinstance(inputs, Cube) else validate_exposures(
                inputs, need_wcs=False)
            written = store_bytes(containers, shares_memory=shares)
        else:
            items = validate_exposures(inputs, need_wcs=False)
            groups = group_exposures(items)
            n_units = len(groups) if resample_data else len(items)
            budget = plan_budget(memory_limit=memory_limit, n_groups=max(n_units, 1),
                                 max_group_members=max(len(g) for g in groups),
                                 tile_size=tile_size, **facts,
                                 group_pixels=largest_group_pixels(
                                     [e.shape for e in items],
                                     groups if resample_data else None))
            frame = _output_frame(items) if resample_data else None
            pixels = int(np.prod(frame)) if frame else max(int(np.prod(e.shape))
                                                            for e in items)
            written = store_bytes(items, shares_memory=shares,
                                  frame_pixels=pixels if resample_data else 0,
                                  n_groups=n_units if resample_data else 0,
                                  median_pixels=pixels)
    finally:
        sched.close()
    out: dict[str, Any] = {"memory_limit": budget.memory_limit,
                           "predicted_peak": budget.predicted_peak,
                           "per_task": budget.per_task_bytes, "workers": budget.num_workers,
                           "store_bytes": written}
    if frame is not None:
        out["output_frame"] = frame
    if budget.tile:
        out["tile"] = budget.tile
        out["median_tile"] = budget.median_tile or budget.tile
    else:
        out["budget_per_task"] = budget.per_task_bytes
    workers = facts["workers"]
    if workers is not None:
        out["worker_share"] = budget.worker_share
        out["worker_peak"] = budget.predicted_peak // workers.n_workers
    return out


def _output_frame(items: list[Any]) -> tuple[int, int] | None:
    """The output frame's shape from the exposures' WCS (None when one has no WCS)."""
    from daskod.geometry._frame import compute_output_frame
    from daskod.options import get_option

    if any(e.wcs is None for e in items):
        return None
    frame = compute_output_frame(items, max_output_pixels=get_option("max_output_pixels"))
    return tuple(int(n) for n in frame.shape)  # type: ignore[return-value]
