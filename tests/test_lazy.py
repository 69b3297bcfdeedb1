"""The lazy contract: results are graph outputs, computed in any order, alone or together,
equal to the eager run; arrays outlive the result object; no work is repeated."""

from __future__ import annotations

import gc
import os
import threading

import dask
import numpy as np
import pytest
from dask.callbacks import Callback

import daskod
from daskod import datasets


class _Counter(Callback):
    """Counts the tasks dask runs, by phase (key-name prefix)."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def _pretask(self, key, dask, state):
        name = key[0] if isinstance(key, tuple) else key
        phase = str(name).split("-")[0]
        self.counts[phase] = self.counts.get(phase, 0) + 1


@pytest.fixture(scope="module")
def imaging():
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(192, 192), seed=11)
    eager = daskod.detect_outliers(sim.exposures, tile_size=64, scheduler="synchronous")
    return sim, eager


def _equal(eager, dq, median=None):
    for a, b in zip(eager.dq, dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if median is not None:
        np.testing.assert_array_equal(np.asarray(eager.median), np.asarray(median))


def test_nothing_is_computed_until_asked(imaging):
    sim, _eager = imaging
    with _Counter() as counter:
        lazy = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False)
    assert counter.counts == {}
    assert all(hasattr(d, "dask") for d in lazy.dq) and hasattr(lazy.median, "dask")


@pytest.mark.parametrize("order", ["median-first", "dq-one-by-one", "reversed", "together"])
def test_any_order_gives_the_eager_answer(imaging, order):
    sim, eager = imaging
    lazy = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False,
                                  scheduler="synchronous")
    if order == "median-first":
        median = np.asarray(lazy.median)
        assert np.isfinite(median).sum() == np.isfinite(eager.median).sum() > 0
        _equal(eager, [np.asarray(d) for d in lazy.dq], median)
    elif order == "dq-one-by-one":
        _equal(eager, [np.asarray(d) for d in lazy.dq], np.asarray(lazy.median))
    elif order == "reversed":
        dq = [np.asarray(d) for d in reversed(lazy.dq)][::-1]
        _equal(eager, dq, np.asarray(lazy.median))
    else:
        *dq, median, counts = dask.compute(*lazy.dq, lazy.median, lazy.n_flagged)
        counts = [int(n) for n in counts]
        _equal(eager, dq, median)
        assert list(counts) == list(eager.n_flagged)
    assert [int(n) for n in dask.compute(*lazy.n_flagged)] == list(eager.n_flagged)


def test_no_work_is_repeated(imaging, monkeypatch):
    """Each drizzle and each median is computed once, whether the lazy results are computed
    together or one after another (a stored block is never recomputed)."""
    import daskod.modes.imaging as imaging_mode

    sim, _eager = imaging
    calls = {"drizzle": 0, "median": 0}
    lock = threading.Lock()

    def counting(name, func):
        def wrapper(*args, **kwargs):
            with lock:
                calls[name] += 1
            return func(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(imaging_mode, "resample_group_tile",
                        counting("drizzle", imaging_mode.resample_group_tile))
    monkeypatch.setattr(imaging_mode, "median_of_resampled_tile",
                        counting("median", imaging_mode.median_of_resampled_tile))
    together = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False)
    with _Counter() as counter:
        dask.compute(*together.dq, together.median, scheduler="threads")
    tasks = dict(counter.counts)
    assert calls == {"drizzle": tasks["drizzle"], "median": tasks["median"]}
    one_by_one = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False)
    before = dict(calls)
    for d in one_by_one.dq:
        np.asarray(d)
    np.asarray(one_by_one.median)
    assert {k: calls[k] - before[k] for k in calls} == {"drizzle": tasks["drizzle"],
                                                       "median": tasks["median"]}


def test_arrays_outlive_the_result(imaging, tmp_path):
    sim, eager = imaging
    with daskod.set_options(temp_dir=str(tmp_path)):
        dq = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False).dq
        gc.collect()
        assert len(os.listdir(tmp_path)) == 1  # the temporary store lives with the arrays
        _equal(eager, [np.asarray(d) for d in dq])
        stored = daskod.detect_outliers(sim.exposures, tile_size=64, in_memory=False).dq
        gc.collect()
        _equal(eager, [np.asarray(d) for d in stored])
        del dq, stored
        gc.collect()
        assert os.listdir(tmp_path) == []  # ... and goes with them


def test_scheduler_from_dask_config(imaging, monkeypatch):
    """How notebook users debug: ``dask.config.set(scheduler="synchronous")`` is obeyed when
    no scheduler is given."""
    import daskod.modes.imaging as imaging_mode

    sim, eager = imaging
    threads: set[int] = set()
    drizzle = imaging_mode.resample_group_tile

    def recording(*args, **kwargs):
        threads.add(threading.get_ident())
        return drizzle(*args, **kwargs)

    monkeypatch.setattr(imaging_mode, "resample_group_tile", recording)
    with dask.config.set(scheduler="synchronous"):
        result = daskod.detect_outliers(sim.exposures, tile_size=64)
    assert threads == {threading.get_ident()}  # every task ran in this thread
    _equal(eager, result.dq)
    threads.clear()
    daskod.detect_outliers(sim.exposures, tile_size=64, scheduler="threads",
                           memory_limit="2GiB")
    assert threading.get_ident() not in threads


def test_cube_modes_are_lazy_too():
    tso = datasets.make_tso_cube(60, (16, 24), seed=5).cube
    coron = datasets.make_coron_cube(6, (24, 24), seed=5).cube
    for cube, kwargs in ((tso, {"rolling_window_width": 7}), (coron, {})):
        eager = daskod.detect_outliers(cube, tile_size=16, save_intermediate_results=True,
                                       **kwargs)
        lazy = daskod.detect_outliers(cube, tile_size=16, compute=False,
                                      save_intermediate_results=True, **kwargs)
        median = np.asarray(lazy.median)
        np.testing.assert_array_equal(median, np.asarray(eager.median))
        np.testing.assert_array_equal(np.asarray(lazy.dq[0]), eager.dq[0])
        assert int(lazy.n_flagged[0]) == int(eager.n_flagged[0]) > 0


@pytest.mark.parametrize("method", ["difference", "cube"])
def test_ifu_is_lazy_too(method):
    sim = datasets.make_ifu_exposures(2, seed=2, shape=(96, 96))
    eager = daskod.detect_outliers(sim.exposures, ifu_method=method)
    lazy = daskod.detect_outliers(sim.exposures, ifu_method=method, compute=False)
    for a, b in zip(eager.dq, reversed(lazy.dq[::-1]), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    if method == "difference":
        (det,) = eager.ifu
        np.testing.assert_array_equal(np.asarray(lazy.ifu[det]["minnorm"]),
                                      eager.ifu[det]["minnorm"])


def test_graph_arrays_compute_as_their_dask_arrays():
    """A run's output blocks (GraphArray) compute with ``dask.compute`` to the same array as
    their ``dask.array`` form, blocks in place along every axis; as_dask converts them
    inside lists and dicts and leaves other values alone."""
    from daskod.engine._graph import GraphArray, RunGraph, as_dask

    graph = RunGraph()
    rows, cols = (2, 3, 1), (4, 2)
    for i, ny in enumerate(rows):
        for j, nx in enumerate(cols):
            graph.task("part", (i, j), np.full, (ny, nx), 10 * i + j, dtype=np.int32)
    blocks = graph.array("part", (rows, cols), np.int32)
    assert isinstance(blocks, GraphArray) and blocks.shape == (6, 6) and blocks.ndim == 2
    want = np.block([[np.full((ny, nx), 10 * i + j, np.int32) for j, nx in enumerate(cols)]
                     for i, ny in enumerate(rows)])
    (got,) = dask.compute(blocks, scheduler="synchronous")
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32
    converted = as_dask({"x": [blocks], "n": 3})
    assert converted["n"] == 3 and converted["x"][0] is blocks.to_dask()
    np.testing.assert_array_equal(converted["x"][0][1:4, 3:5].compute(), want[1:4, 3:5])
