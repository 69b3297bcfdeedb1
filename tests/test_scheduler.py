"""The local schedulers daskod runs its graphs on."""

import operator
import os
import subprocess
import sys
import time

import dask
import pytest

from daskod.engine._scheduler import Scheduler


def _pids_of_tasks_released_together(sched: Scheduler) -> list[int]:
    """Four half-second tasks that one task releases at once; the process id of each."""
    graph: dict = {"root": (time.sleep, 0.01)}
    keys = [("spread", i) for i in range(4)]
    for key in keys:
        graph[key] = (operator.getitem, (list, ["root", (time.sleep, 0.5), (os.getpid,)]), 2)
    with sched.session():
        kwargs = sched.compute_kwargs()
        get = kwargs.pop("scheduler")
        return list(get(graph, keys, **kwargs))


def test_processes_spread_tasks_that_become_ready_together():
    """dask batches a process pool's ready tasks six at a time by default, so the four tasks
    would all run in one worker (as the median tiles did after the last weight threshold);
    daskod's processes scheduler submits them one by one and both workers take some."""
    assert len(set(_pids_of_tasks_released_together(Scheduler("processes", 2)))) == 2


@pytest.mark.parametrize("chunksize", [6, 2])
def test_processes_keep_the_chunksize_the_user_set(chunksize):
    with dask.config.set(chunksize=chunksize):
        kwargs = Scheduler("processes", 2).compute_kwargs()
    assert "chunksize" not in kwargs  # dask.multiprocessing.get reads the user's config
    assert "chunksize" not in Scheduler("threads", 2).compute_kwargs()


def test_the_budget_counts_the_processes_of_the_processes_scheduler():
    """A processes run's tree holds, besides this process, multiprocessing's resource
    tracker, the server the workers are forked from (the task modules imported once) and the
    workers: the budget counts the first two once and each worker's start per worker (left
    out, 8 x 2048^2 files at --memory-limit 768MiB peaked at 835 MiB)."""
    from daskod.engine._budget import WORKER_BASELINE, WORKER_SERVER_BASELINE, plan_budget

    code = """
import psutil
from concurrent.futures import ProcessPoolExecutor
from daskod.engine._scheduler import Scheduler, _worker_server

RSS = "__import__('psutil').Process().memory_info().rss"

if __name__ == "__main__":
    Scheduler("processes", 2).warm_up(writes_products=True)
    with ProcessPoolExecutor(2, mp_context=_worker_server(writes_products=True)) as pool:
        worker = max(pool.submit(eval, RSS).result() for _ in range(2))
        # The server and the tracker; the workers are the server's children.
        print(worker, sum(c.memory_info().rss for c in psutil.Process().children()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    worker, server_and_tracker = (int(v) for v in out.stdout.split())
    assert server_and_tracker <= WORKER_SERVER_BASELINE
    assert worker <= WORKER_BASELINE
    limit = 2 * 2**30
    budget = plan_budget(memory_limit=limit, n_groups=8, max_group_members=1,
                         tile_size=None, num_workers=2, separate_processes=True)
    assert budget.predicted_peak <= limit
    assert budget.predicted_peak >= (budget.baseline + WORKER_SERVER_BASELINE
                                     + budget.num_workers * WORKER_BASELINE)
