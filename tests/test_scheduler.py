"""The local schedulers daskod runs its graphs on."""

import operator
import os
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
