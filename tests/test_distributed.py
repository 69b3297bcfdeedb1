"""Distributed runs: the memory budget shared by a cluster's workers, what tasks carry, the
same flags as a synchronous run (imaging and TSO), a worker killed mid-run, unreachable
schedulers, and WCS / pixel-map round trips (what travels to workers).

One module-scoped LocalCluster of 2 worker processes with one thread each (the recommended
set-up: drizzle holds the GIL) serves every test; the test that kills a worker runs last.
"""

from __future__ import annotations

import glob
import io
import os
import pickle
import signal
import socket
import threading
import time

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod.engine import _budget
from daskod.engine._budget import (
    WORKER_OVERHEAD,
    WorkerFacts,
    bytes_per_tile_pixel,
    plan_budget,
)

distributed = pytest.importorskip("distributed")


MiB = 2**20
WORKER_LIMIT = 1024 * MiB


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit=WORKER_LIMIT, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


@pytest.fixture(scope="module")
def zarr_observation(tmp_path_factory):
    """4 dithered 160x160 exposures simulated straight into Zarr (what tasks read in place)."""
    root = tmp_path_factory.mktemp("obs")
    return datasets.make_dithered_imaging(n_exposures=4, shape=(160, 160), seed=11,
                                          store=str(root / "inputs.zarr"))


def _flags(result):
    return [np.asarray(d) for d in result.dq]


# --- the budget of a cluster (pure planning, no cluster needed) -------------------------------

def _plan(limit, workers, *, n_groups=8, tile_size=None):
    return plan_budget(memory_limit=limit, n_groups=n_groups, max_group_members=1,
                       tile_size=tile_size, num_workers=workers.n_workers,
                       separate_processes=True, workers=workers)


def test_cluster_budget_is_each_workers_share_not_the_client_process(monkeypatch):
    workers = WorkerFacts(n_workers=2, threads_per_worker=1, baseline=150 * MiB,
                          memory_cap=None)
    budget = _plan(1024 * MiB, workers)
    per_px = bytes_per_tile_pixel(8, 1)
    assert budget.worker_share == 512 * MiB
    # The tile is derived from the share minus the workers' own baseline.
    edge = ((512 * MiB - 150 * MiB - WORKER_OVERHEAD) / per_px) ** 0.5
    assert budget.tile == min(2048, int(edge) // 64 * 64)
    assert budget.predicted_peak <= 1024 * MiB
    assert budget.predicted_peak // 2 <= budget.worker_share
    # The client process's resident memory plays no part.
    monkeypatch.setattr(_budget, "process_rss", lambda: 900 * MiB)
    assert _plan(1024 * MiB, workers) == budget
    # Four workers sharing the same budget get smaller tiles; two threads per worker too.
    four = _plan(1024 * MiB, WorkerFacts(4, 1, 150 * MiB, None))
    threads = _plan(1024 * MiB, WorkerFacts(2, 2, 150 * MiB, None))
    assert four.tile < budget.tile
    assert threads.tile < budget.tile
    assert threads.predicted_peak // 2 <= threads.worker_share


def test_cluster_budget_never_exceeds_the_workers_own_pause_threshold():
    capped = WorkerFacts(n_workers=2, threads_per_worker=1, baseline=150 * MiB,
                         memory_cap=int(0.8 * 256 * MiB))
    budget = _plan(2048 * MiB, capped)
    assert budget.worker_share == int(0.8 * 256 * MiB)
    assert budget.predicted_peak // 2 <= budget.worker_share
    # Without a memory_limit the workers' own limits are the budget.
    assert _plan(None, capped).memory_limit == 2 * int(0.8 * 256 * MiB)


def test_cluster_budget_refusal_says_what_would_fit():
    import re

    workers = WorkerFacts(n_workers=4, threads_per_worker=1, baseline=170 * MiB,
                          memory_cap=None)
    with pytest.raises(daskod.MemoryBudgetError) as info:
        _plan(512 * MiB, workers, n_groups=64)
    msg = str(info.value)
    assert "512 MiB over 4 workers" in msg
    least = int(re.search(r"at least (\d+) MiB", msg).group(1))
    fewer = int(re.search(r"at most (\d+) worker", msg).group(1))
    # Both remedies in the message do fit.
    assert _plan(least * MiB, workers, n_groups=64).tile >= 64
    assert _plan(512 * MiB, WorkerFacts(fewer, 1, 170 * MiB, None), n_groups=64).tile >= 64
    with pytest.raises(daskod.MemoryBudgetError):
        _plan((least - 1) * MiB, workers, n_groups=64)
    # A worker whose own limit is too small: the fix is the workers' limit, not ours.
    small = WorkerFacts(n_workers=2, threads_per_worker=1, baseline=170 * MiB,
                        memory_cap=int(0.8 * 200 * MiB), cap_fraction=0.8)
    with pytest.raises(daskod.MemoryBudgetError, match=r"(?i)start workers with") as info:
        _plan(4096 * MiB, small)
    worker_limit = int(re.search(r"memory_limit of at least (\d+) MiB", str(info.value))[1])
    enough = WorkerFacts(2, 1, 170 * MiB, int(0.8 * worker_limit * MiB), 0.8)
    assert _plan(4096 * MiB, enough).tile >= 64
    # A fixed tile_size that does not fit a worker is refused, not run over budget.
    roomy = WorkerFacts(n_workers=2, threads_per_worker=1, baseline=170 * MiB, memory_cap=None)
    with pytest.raises(daskod.MemoryBudgetError, match="tile_size"):
        _plan(512 * MiB, roomy, tile_size=2048)


def test_whole_group_threshold_task_is_budgeted(monkeypatch):
    """The weight-threshold task gathers one group's weights whole: a worker that holds a tile
    but not that task is refused, and the predicted peak covers it."""
    workers = WorkerFacts(n_workers=2, threads_per_worker=1, baseline=150 * MiB,
                          memory_cap=int(0.8 * 256 * MiB), cap_fraction=0.8)
    assert _plan(512 * MiB, workers).tile >= 64  # tiles alone fit
    group = 4096 * 4096  # ~160 MiB for its threshold task (5 B per pixel, with headroom)
    with pytest.raises(daskod.MemoryBudgetError, match="weights of one group") as info:
        plan_budget(memory_limit=512 * MiB, n_groups=8, max_group_members=1, tile_size=None,
                    num_workers=2, separate_processes=True, workers=workers,
                    group_pixels=group)
    import re

    at_least = int(re.search(r"memory_limit of at least (\d+) MiB", str(info.value))[1])
    bigger = WorkerFacts(2, 1, 150 * MiB, int(0.8 * at_least * MiB), 0.8)
    budget = plan_budget(memory_limit=2 * at_least * MiB, n_groups=8, max_group_members=1,
                         tile_size=None, num_workers=2, separate_processes=True,
                         workers=bigger, group_pixels=group)
    assert budget.predicted_peak // 2 >= 150 * MiB + _budget.THRESHOLD_BYTES_PER_PIXEL * group
    assert budget.predicted_peak // 2 <= budget.worker_share
    # Locally too: fewer threads when two such tasks at once would not fit.
    monkeypatch.setattr(_budget, "process_rss", lambda: 150 * MiB)
    local = plan_budget(memory_limit=400 * MiB, n_groups=8, max_group_members=1,
                        tile_size=None, num_workers=2, separate_processes=False,
                        group_pixels=group)
    # Phases share one graph: a worker may hold such a task while the other holds another.
    assert local.num_workers == 1
    assert local.predicted_peak <= 400 * MiB
    roomy = plan_budget(memory_limit=2048 * MiB, n_groups=8, max_group_members=1,
                        tile_size=None, num_workers=2, separate_processes=False,
                        group_pixels=group)
    assert roomy.num_workers == 2
    with pytest.raises(daskod.MemoryBudgetError, match="weights of one group"):
        plan_budget(memory_limit=300 * MiB, n_groups=8, max_group_members=1, tile_size=None,
                    num_workers=2, separate_processes=False, group_pixels=group)


@pytest.mark.parametrize(("limit", "workers"), [("240MiB", 1), ("2GiB", 2)])
def test_a_run_runs_no_more_tasks_at_once_than_the_budget_allows(monkeypatch, limit,
                                                                   workers):
    """With one graph for every phase, the budget's worker count bounds all tasks at once."""
    from dask.callbacks import Callback

    monkeypatch.setattr(_budget, "process_rss", lambda: 150 * MiB)
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(256, 256), seed=2)
    budget = daskod.estimate_memory(sim.exposures, memory_limit=limit, scheduler="threads",
                                    tile_size=64)
    running, peak, lock = [0], [0], threading.Lock()

    def start(key, dask, state):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def finish(key, result, dsk, state, worker_id):
        with lock:
            running[0] -= 1

    # 240 MiB over a 150 MiB baseline leaves room for one weight-threshold task at a time
    # (~26 MiB each here: 5 B per pixel and 16 MiB fixed, with headroom).
    assert budget["workers"] == workers
    with Callback(pretask=start, posttask=finish):
        daskod.detect_outliers(sim.exposures, memory_limit=limit, scheduler="threads",
                               tile_size=64)
    assert 1 <= peak[0] <= workers


def _interval(k):
    start = time.monotonic()
    time.sleep(0.05)
    return start, time.monotonic()


def _max_overlap(intervals):
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak
    assert _budget.largest_group_pixels([(10, 20), (10, 20), (5, 5)], [[0, 1], [2]]) == 400
    assert _budget.largest_group_pixels([(10, 20), (10, 30)], None) == 300


# --- on a live cluster -------------------------------------------------------------------------

def test_estimate_asks_the_workers_and_the_run_uses_the_same_budget(client, zarr_observation,
                                                                    tmp_path):
    import psutil
    import zarr

    exps = zarr_observation.exposures
    est = daskod.estimate_memory(exps, memory_limit="800MiB", scheduler=client)
    assert est["worker_share"] == min(400 * MiB, int(0.8 * WORKER_LIMIT))
    assert est["worker_peak"] <= est["worker_share"]
    assert est["predicted_peak"] <= est["memory_limit"] == 800 * MiB
    facts = _budget.ask_workers(client)
    rss = client.run(lambda: psutil.Process().memory_info().rss)
    assert facts.n_workers == 2 and facts.threads_per_worker == 1
    assert facts.memory_cap == int(0.8 * WORKER_LIMIT) and facts.cap_fraction == 0.8
    assert abs(facts.baseline - max(rss.values())) < 64 * MiB
    result = daskod.detect_outliers(exps, memory_limit="800MiB", scheduler=client,
                                    store=str(tmp_path / "work"))
    median = zarr.open_array(str(tmp_path / "work"), path="median", mode="r")
    assert median.chunks == tuple(min(est["median_tile"], n) for n in median.shape)
    assert sum(result.n_flagged) > 0
    with pytest.raises(daskod.MemoryBudgetError, match="over 2 workers"):
        daskod.estimate_memory(exps, memory_limit="100MiB", scheduler=client)
    with pytest.raises(daskod.MemoryBudgetError, match="over 2 workers"):
        daskod.detect_outliers(exps, memory_limit="100MiB", scheduler=client,
                               store=str(tmp_path / "refused"))
    # Refused before any work: nothing written in the store.
    assert not os.path.exists(tmp_path / "refused") or not os.listdir(tmp_path / "refused")


class _Probe:
    """Pickles one graph node and records every object it embeds."""

    def __init__(self, node):
        import cloudpickle

        seen = []

        class Pickler(cloudpickle.Pickler):
            def reducer_override(self, obj):
                seen.append(obj)
                return super().reducer_override(obj)

        buf = io.BytesIO()
        Pickler(buf).dump(node)
        self.size = len(buf.getvalue())
        self.objects = seen

    def arrays(self):
        return [o for o in self.objects if isinstance(o, np.ndarray)]

    def wcs_like(self):
        return [type(o) for o in self.objects
                if type(o).__module__.split(".")[0] == "gwcs"
                or type(o).__module__.startswith(("astropy.wcs", "astropy.modeling"))]


@pytest.mark.parametrize("inputs", ["zarr", "numpy"])
def test_tasks_carry_no_wcs_and_no_large_array(client, zarr_observation, small_observation,
                                                monkeypatch, inputs):
    from dask.task_spec import DataNode

    from daskod.geometry._pixel_map import PixelMap

    exps = zarr_observation.exposures if inputs == "zarr" else small_observation.exposures
    tile = 64
    lazy = daskod.detect_outliers(exps, tile_size=tile, scheduler=client, compute=False)
    graph = {}
    for arr in (*lazy.dq, lazy.median, *lazy.n_flagged):
        graph.update(dict(arr.__dask_graph__()))
    phases_with_maps = 0
    for one in [graph]:
        maps = []
        for node in one.values():
            probe = _Probe(node)
            assert probe.wcs_like() == []
            held = [o for o in probe.objects if isinstance(o, PixelMap)]
            if isinstance(node, DataNode) and isinstance(node.value, PixelMap):
                maps.append(node.value)
                continue
            # A task refers to a pixel map by key; it never embeds one.
            assert held == []
            biggest = max((a.nbytes for a in probe.arrays()), default=0)
            if inputs == "zarr":
                assert biggest <= 4096
                assert probe.size < 64 * 1024
            else:
                # Ingesting numpy inputs ships each block once, in its own task.
                assert biggest <= tile * tile * 4
        if maps:
            phases_with_maps += 1
            assert len(maps) == len(exps)  # one key per map, shared by drizzle and blot
            assert len({id(m) for m in maps}) == len(exps)
    assert phases_with_maps == 1
    result = daskod.detect_outliers(exps, tile_size=tile, scheduler=client)
    assert sum(result.n_flagged) > 0


def test_same_flags_on_cluster_for_tso(client):
    cube = datasets.make_tso_cube(nints=40, shape=(12, 16), seed=3).cube
    ref = daskod.detect_outliers(cube, mode="tso", scheduler="synchronous", tile_size=9,
                                 rolling_window_width=7)
    other = daskod.detect_outliers(cube, mode="tso", scheduler=client, tile_size=9,
                                   rolling_window_width=7)
    np.testing.assert_array_equal(np.asarray(ref.dq[0]), np.asarray(other.dq[0]))
    assert int(ref.n_flagged[0]) > 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_fails_before_any_work(small_observation, tmp_path):
    address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="Could not reach the Dask scheduler"):
        daskod.detect_outliers(small_observation.exposures, scheduler=address,
                               store=str(tmp_path / "work"))
    # Nothing written (the store location itself may have been checked).
    assert not os.path.exists(tmp_path / "work") or not os.listdir(tmp_path / "work")
    with pytest.raises(ConnectionError, match=address):
        daskod.estimate_memory(small_observation.exposures, scheduler=address)
    # Refused at once, not after the client's 10 s connect timeout.
    assert time.perf_counter() - start < 10


# --- what travels: pixel maps and WCS objects ------------------------------------------------

def test_pixel_map_survives_pickle(small_observation):
    from daskod.geometry._frame import compute_output_frame
    from daskod.geometry._pixel_map import compute_pixel_map

    exps = small_observation.exposures
    frame = compute_output_frame(exps, max_output_pixels=10**8)
    pm = compute_pixel_map(exps[1].wcs, frame.wcs, exps[1].shape, stepsize=16, order=3)
    before = pm.evaluate(10, 90, 20, 150)  # builds (unpicklable-heavy) splines in pm
    back = pickle.loads(pickle.dumps(pm))
    assert back._splines is None
    np.testing.assert_array_equal(back.evaluate(10, 90, 20, 150), before)
    assert back.input_box_for(30.0, 94.0, 30.0, 94.0, margin=2.0) == pm.input_box_for(
        30.0, 94.0, 30.0, 94.0, margin=2.0)
    assert len(pickle.dumps(pm)) < 64 * 1024


def _same_mapping(a, b, shape):
    y, x = np.mgrid[0:shape[0]:7, 0:shape[1]:7].astype(float)
    for got, want in zip(b.pixel_to_world_values(x, y), a.pixel_to_world_values(x, y),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    sky = a.pixel_to_world(x[:3, :3], y[:3, :3])
    np.testing.assert_array_equal(b.pixel_to_world(x[:3, :3], y[:3, :3]).ra.deg, sky.ra.deg)


@pytest.mark.parametrize("how", ["pickle", "asdf"])
def test_exposure_and_median_wcs_survive_pickle_and_asdf(small_observation, tmp_path, how):
    result = daskod.detect_outliers(small_observation.exposures, scheduler="synchronous",
                                    tile_size=64)
    pairs = [(small_observation.exposures[0].wcs, small_observation.exposures[0].shape),
             (result.median_wcs, result.median.shape)]
    for wcs, shape in pairs:
        if how == "pickle":
            back = pickle.loads(pickle.dumps(wcs))
        else:
            asdf = pytest.importorskip("asdf")
            path = tmp_path / "wcs.asdf"
            asdf.AsdfFile({"wcs": wcs}).write_to(path)
            with asdf.open(path, lazy_load=False, memmap=False) as af:
                back = af["wcs"]
                _same_mapping(wcs, back, shape)
            continue
        _same_mapping(wcs, back, shape)


# --- faults: runs last, it kills one of the module's workers ---------------------------------

def test_worker_killed_mid_run_completes_with_same_flags(client, tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(384, 384), seed=7,
                                         store=str(tmp_path / "inputs.zarr"))
    ref = daskod.detect_outliers(sim.exposures, tile_size=64, scheduler="synchronous")
    store = str(tmp_path / "work")
    before = client.run(os.getpid)
    outcome = {}

    def run():
        try:
            outcome["result"] = daskod.detect_outliers(sim.exposures, tile_size=64,
                                                       scheduler=client, store=store)
        except BaseException as err:  # pragma: no cover - reported below
            outcome["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    # Some drizzled tiles are in the store: the resample phase is under way.
    while not glob.glob(os.path.join(store, "resampled", "c", "*", "*", "*", "*")):
        assert worker.is_alive() and time.monotonic() < deadline
        time.sleep(0.005)
    victim = sorted(before.values())[0]
    os.kill(victim, signal.SIGKILL)
    killed_mid_run = worker.is_alive()
    worker.join(timeout=180)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert killed_mid_run
    client.wait_for_workers(2, timeout=60)
    after = client.run(os.getpid)
    assert victim not in after.values()  # the nanny started a new worker process
    for a, b in zip(_flags(ref), _flags(outcome["result"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum(ref.n_flagged) > 0
