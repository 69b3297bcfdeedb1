"""Resumable runs: checkpoints per task in the working store, fingerprints, SIGKILL + rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

import daskod
from daskod import datasets

# The run the killed subprocess makes: seeded, so the test process can simulate the same data.
_SIM = dict(n_exposures=4, shape=(512, 512), seed=3)
_RUN = dict(tile_size=64, scheduler="synchronous")

_CHILD = """
import sys
import daskod
from daskod import datasets
sim = datasets.make_dithered_imaging(**{sim})
daskod.detect_outliers(sim.exposures, store=sys.argv[1], **{run})
"""


def _markers(store, phase):
    """Rows of one phase's completion record: (done flags, record chunk files' mtimes)."""
    path = os.path.join(store, "checkpoints", phase)
    if not os.path.exists(os.path.join(path, "zarr.json")):
        return None, {}
    record = np.asarray(zarr.open_array(store=store, path=f"checkpoints/{phase}", mode="r")[...])
    stamps = {}
    for dirpath, _dirs, files in os.walk(os.path.join(path, "c")):
        for name in files:
            full = os.path.join(dirpath, name)
            stamps[os.path.relpath(full, path)] = os.stat(full).st_mtime_ns
    return record[:, 0] == 1, stamps


def _chunk_stamps(store, name):
    stamps = {}
    for dirpath, _dirs, files in os.walk(os.path.join(store, name, "c")):
        for f in files:
            full = os.path.join(dirpath, f)
            stamps[full] = os.stat(full).st_mtime_ns
    return stamps


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_finished_tiles(tmp_path):
    sim = datasets.make_dithered_imaging(**_SIM)
    reference = daskod.detect_outliers(sim.exposures, **_RUN)

    store = str(tmp_path / "work.zarr")
    code = _CHILD.format(sim=repr(_SIM), run=repr(_RUN))
    proc = subprocess.Popen([sys.executable, "-c", code, store], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    killed = False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done, _ = _markers(store, "resample")
            if done is not None and done.sum() >= 0.3 * done.size:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert killed, f"the run ended before it could be killed mid-way:\n{output[-2000:]}"
    assert proc.returncode == -signal.SIGKILL

    record = zarr.open_group(store=store, mode="r").attrs["daskod_run"]
    assert record["status"] == "running"  # never presented as complete
    done, marker_stamps = _markers(store, "resample")
    n_done, n_total = int(done.sum()), done.size
    assert 0 < n_done < n_total
    data_stamps = _chunk_stamps(store, "resampled/data")

    resumed = daskod.detect_outliers(sim.exposures, store=store, **_RUN)

    # Finished tiles were not recomputed: their completion records were not rewritten, and
    # no more drizzled chunks were rewritten than there were unfinished tasks.
    assert resumed.checkpoints["resample"] == {"reused": n_done, "total": n_total}
    _, after = _markers(store, "resample")
    assert all(after[key] == stamp for key, stamp in marker_stamps.items())
    rewritten = [p for p, s in _chunk_stamps(store, "resampled/data").items()
                 if p in data_stamps and data_stamps[p] != s]
    assert len(rewritten) <= n_total - n_done
    # Same flags as the uninterrupted run.
    for a, b in zip(reference.dq, resumed.dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.n_flagged == reference.n_flagged
    assert zarr.open_group(store=store, mode="r").attrs["daskod_run"]["status"] == "complete"


def test_rerun_of_a_complete_run_reuses_everything(small_observation, tmp_path):
    store = str(tmp_path / "w")
    first = daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    assert all(v["reused"] == 0 for v in first.checkpoints.values())
    again = daskod.detect_outliers(small_observation.exposures, store=store)
    assert set(again.checkpoints) == {"resample", "threshold", "median", "flag"}
    assert all(v["reused"] == v["total"] > 0 for v in again.checkpoints.values())
    for a, b in zip(first.dq, again.dq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.n_flagged == first.n_flagged


@pytest.mark.parametrize(
    ("change", "part"),
    [({"snr": "6.0 4.0"}, "parameters"), ({"tile_size": 32}, "layout"),
     ({"kernel": "point"}, "parameters")])
def test_store_of_another_run_is_refused_before_any_write(small_observation, tmp_path,
                                                         change, part):
    store = str(tmp_path / "w")
    daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    before = _chunk_stamps(store, "median")
    kwargs = {"tile_size": 64, **change}
    with pytest.raises(daskod.StoreError, match=f"other {part}") as info:
        daskod.detect_outliers(small_observation.exposures, store=store, **kwargs)
    assert "overwrite_store=True" in str(info.value)
    assert _chunk_stamps(store, "median") == before  # nothing rewritten
    # overwrite_store=True discards it and runs afresh.
    fresh = daskod.detect_outliers(small_observation.exposures, store=store,
                                   overwrite_store=True, **kwargs)
    assert all(v["reused"] == 0 for v in fresh.checkpoints.values())


def test_changed_input_pixels_invalidate_the_checkpoints(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(128, 128), seed=4)
    store = str(tmp_path / "w")
    daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    sim.exposures[1].sci[5, 5] += 1000.0  # one pixel of one exposure
    with pytest.raises(daskod.StoreError, match="other inputs") as info:
        daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    assert repr(sim.exposures[1].name) in str(info.value)


def test_zarr_inputs_rewritten_invalidate_the_checkpoints(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(128, 128), seed=4,
                                         store=tmp_path / "inputs.zarr")
    store = str(tmp_path / "w")
    daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    again = daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    assert again.checkpoints["resample"]["reused"] == again.checkpoints["resample"]["total"]
    time.sleep(0.01)
    sci = sim.exposures[0].sci
    sci[0:4, 0:4] = np.asarray(sci[0:4, 0:4]) + 1.0
    with pytest.raises(daskod.StoreError, match="other inputs"):
        daskod.detect_outliers(sim.exposures, store=store, tile_size=64)


def test_cube_run_resumes_and_refuses_other_parameters(tmp_path):
    sim = datasets.make_tso_cube(nints=40, shape=(16, 16), seed=2)
    store = str(tmp_path / "w")
    first = daskod.detect_outliers(sim.cube, store=store, tile_size=8, rolling_window_width=7)
    again = daskod.detect_outliers(sim.cube, store=store, rolling_window_width=7)
    assert again.checkpoints["flag"] == {"reused": 5, "total": 5}
    np.testing.assert_array_equal(first.dq[0], again.dq[0])
    with pytest.raises(daskod.StoreError, match="rolling_window_width: 7 in the store, 9 now"):
        daskod.detect_outliers(sim.cube, store=store, rolling_window_width=9)


def test_folder_with_foreign_files_is_never_used_as_a_store(small_observation, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(daskod.StoreError, match="not a Zarr store"):
            daskod.detect_outliers(small_observation.exposures, store=str(folder),
                                   overwrite_store=overwrite)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def test_record_describes_the_run(small_observation, tmp_path):
    store = str(tmp_path / "w")
    daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64,
                           snr="5.5 4.0")
    record = zarr.open_group(store=store, mode="r").attrs["daskod_run"]
    assert record["status"] == "complete"
    assert json.loads(record["describe"]["parameters"])["snr"] == "5.5 4.0"
    assert json.loads(record["describe"]["layout"]) == {"tile": "64", "median_tile": "64"}


@pytest.mark.parametrize("method", ["difference", "cube"])
def test_ifu_run_resumes_and_refuses_other_parameters(tmp_path, method):
    sim = datasets.make_ifu_exposures(3, seed=1)
    store = str(tmp_path / "w")
    kwargs = dict(mode="ifu", ifu_method=method, scale="2.4 1.2")
    # Budgets above what this test process already holds (it grows over a test session).
    from daskod.engine._budget import process_rss

    first = daskod.detect_outliers(sim.exposures, store=store,
                                   memory_limit=process_rss() + 2**30, **kwargs)
    assert first.checkpoints and all(v["reused"] == 0 for v in first.checkpoints.values())
    # The layout derived from the budget is noted and repeated, whatever the new budget.
    again = daskod.detect_outliers(sim.exposures, store=store,
                                   memory_limit=process_rss() + 2**31, **kwargs)
    assert all(v["reused"] == v["total"] > 0 for v in again.checkpoints.values())
    for a, b in zip(first.dq, again.dq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.n_flagged == first.n_flagged
    other = {"threshold_percent": 99.0} if method == "difference" else {"snr": "6.0 4.0"}
    with pytest.raises(daskod.StoreError, match="other parameters"):
        daskod.detect_outliers(sim.exposures, store=store, **{**kwargs, **other})
