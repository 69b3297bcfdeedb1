"""Resumable runs and a store that can be trusted: manifests, checksums, fingerprints per
phase, one writer at a time, SIGKILL + rerun."""

from __future__ import annotations

import json
import os
import signal
import socket
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


def _files(store, name):
    """{relative path: mtime} of the chunk files of array ``name``."""
    root = os.path.join(store, name, "c")
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, root)] = os.stat(full).st_mtime_ns
    return out


def _done(store, name):
    """Blocks of ``name`` whose manifest entry is set."""
    path = os.path.join(store, "manifest", name)
    if not os.path.exists(os.path.join(path, "zarr.json")):
        return 0, 0
    marks = np.asarray(zarr.open_array(store=store, path=f"manifest/{name}", mode="r")[...])
    return int(np.count_nonzero(marks)), marks.size


def _same_flags(a, b):
    for x, y in zip(a.dq, b.dq, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [int(n) for n in a.n_flagged] == [int(n) for n in b.n_flagged]


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_finished_blocks(tmp_path):
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
            n, total = _done(store, "resampled")
            if total and n >= 0.3 * total:
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
    n_done, n_total = _done(store, "resampled")
    assert 0 < n_done < n_total
    manifest_before = _files(store, "manifest/resampled")
    data_before = _files(store, "resampled")

    # The killed process left its lock behind; it is gone, so the rerun takes the lock over.
    resumed = daskod.detect_outliers(sim.exposures, store=store, **_RUN)

    # Finished blocks were not recomputed: their manifest entries and data were not
    # rewritten (mtimes), and every block is accounted for.
    assert resumed.checkpoints["resampled"]["reused"] == n_done
    assert n_done < resumed.checkpoints["resampled"]["total"] <= n_total
    after = _files(store, "manifest/resampled")
    assert all(after[key] == stamp for key, stamp in manifest_before.items())
    rewritten = [p for p, s in _files(store, "resampled").items()
                 if p in data_before and data_before[p] != s]
    assert len(rewritten) <= n_total - n_done
    _same_flags(reference, resumed)
    assert zarr.open_group(store=store, mode="r").attrs["daskod_run"]["status"] == "complete"
    assert not os.path.exists(store + ".daskod-lock")


def test_rerun_of_a_complete_run_reuses_everything(small_observation, tmp_path):
    store = str(tmp_path / "w")
    first = daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    assert first.checkpoints == {}
    stamps = _files(store, "resampled")
    again = daskod.detect_outliers(small_observation.exposures, store=store)
    assert {"resampled", "thresholds", "median", "outputs/0/dq"} <= set(again.checkpoints)
    assert all(v["reused"] == v["total"] > 0 for v in again.checkpoints.values())
    assert _files(store, "resampled") == stamps  # nothing rewritten
    _same_flags(first, again)


def test_other_flagging_parameters_reuse_the_drizzle_and_the_median(small_observation,
                                                                    tmp_path):
    store = str(tmp_path / "w")
    daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    resampled, median = _files(store, "resampled"), _files(store, "median")
    changed = daskod.detect_outliers(small_observation.exposures, store=store,
                                     snr="6.0 5.0", scale="1.5 0.8")
    assert changed.checkpoints["resampled"]["reused"] == changed.checkpoints["resampled"]["total"]
    assert changed.checkpoints["median"]["reused"] == changed.checkpoints["median"]["total"]
    assert "outputs/0/dq" not in changed.checkpoints  # recomputed
    assert _files(store, "resampled") == resampled and _files(store, "median") == median
    fresh = daskod.detect_outliers(small_observation.exposures, tile_size=64, snr="6.0 5.0",
                                   scale="1.5 0.8")
    _same_flags(fresh, changed)
    record = zarr.open_group(store=store, mode="r").attrs["daskod_run"]
    assert record["parameters"]["snr"] == "6.0 5.0"


def test_other_drizzle_parameters_recompute_from_the_drizzle(small_observation, tmp_path):
    store = str(tmp_path / "w")
    daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    changed = daskod.detect_outliers(small_observation.exposures, store=store,
                                     kernel="point")
    assert "resampled" not in changed.checkpoints and "median" not in changed.checkpoints
    _same_flags(daskod.detect_outliers(small_observation.exposures, tile_size=64,
                                       kernel="point"), changed)


def test_a_resumed_run_keeps_the_first_runs_layout(small_observation, tmp_path):
    store = str(tmp_path / "w")
    first = daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    again = daskod.detect_outliers(small_observation.exposures, store=store, tile_size=32)
    assert zarr.open_array(store, path="median", mode="r").chunks == (64, 64)
    assert again.checkpoints["resampled"]["reused"] == again.checkpoints["resampled"]["total"]
    _same_flags(first, again)


def test_changed_input_pixels_refuse_the_store(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(128, 128), seed=4)
    store = str(tmp_path / "w")
    daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    before = _files(store, "median")
    sim.exposures[1].sci[5, 5] += 1000.0  # one pixel of one exposure
    with pytest.raises(daskod.StoreError, match="other inputs") as info:
        daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    assert sim.exposures[1].name in str(info.value)
    assert "overwrite_store=True" in str(info.value)
    assert _files(store, "median") == before  # nothing written
    fresh = daskod.detect_outliers(sim.exposures, store=store, tile_size=64,
                                   overwrite_store=True)
    assert fresh.checkpoints == {}


def test_zarr_inputs_rewritten_refuse_the_store(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(128, 128), seed=4,
                                         store=tmp_path / "inputs.zarr")
    store = str(tmp_path / "w")
    daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    again = daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
    assert again.checkpoints["resampled"]["reused"] == again.checkpoints["resampled"]["total"]
    time.sleep(0.01)
    sci = sim.exposures[0].sci
    sci[0:4, 0:4] = np.asarray(sci[0:4, 0:4]) + 1.0
    with pytest.raises(daskod.StoreError, match="other inputs"):
        daskod.detect_outliers(sim.exposures, store=store, tile_size=64)


def test_verify_inputs_notices_pixels_changed_behind_the_file_stamps(tmp_path):
    """Pixels rewritten in place with the chunk file's size and mtime put back: the stamps
    cannot tell, a content fingerprint can."""
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(128, 128), seed=4,
                                         store=tmp_path / "inputs.zarr")
    store = str(tmp_path / "w")
    for verify in (False, True):
        daskod.detect_outliers(sim.exposures, store=store, tile_size=64,
                               verify_inputs=verify, overwrite_store=True)
        chunk = os.path.join(str(tmp_path / "inputs.zarr"), "0", "sci", "c", "0", "0")
        st = os.stat(chunk)
        sci = sim.exposures[0].sci
        block = np.asarray(sci[0:2, 0:2])
        sci[0:2, 0:2] = block[::-1, ::-1]  # same bytes count, other pixels
        os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.stat(chunk).st_size != st.st_size:
            pytest.skip("the codec changed the chunk size; the stamps notice anyway")
        if verify:
            with pytest.raises(daskod.StoreError, match="other inputs"):
                daskod.detect_outliers(sim.exposures, store=store, tile_size=64,
                                       verify_inputs=True)
        else:  # documented limit of the cheap fingerprint
            stale = daskod.detect_outliers(sim.exposures, store=store, tile_size=64)
            assert stale.checkpoints["resampled"]["reused"] > 0
        sci[0:2, 0:2] = block


def test_cube_run_resumes_and_recomputes_other_parameters(tmp_path):
    sim = datasets.make_tso_cube(nints=40, shape=(16, 16), seed=2)
    store = str(tmp_path / "w")
    first = daskod.detect_outliers(sim.cube, store=store, tile_size=8, rolling_window_width=7)
    again = daskod.detect_outliers(sim.cube, store=store, rolling_window_width=7)
    assert again.checkpoints["outputs/dq"]["reused"] == again.checkpoints["outputs/dq"]["total"]
    np.testing.assert_array_equal(first.dq[0], again.dq[0])
    other = daskod.detect_outliers(sim.cube, store=store, rolling_window_width=9)
    assert "outputs/dq" not in other.checkpoints
    fresh = daskod.detect_outliers(sim.cube, tile_size=8, rolling_window_width=9)
    np.testing.assert_array_equal(fresh.dq[0], other.dq[0])


def test_folder_with_foreign_files_is_never_used_as_a_store(small_observation, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(daskod.StoreError, match="not a daskod working store"):
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
    assert record["parameters"]["snr"] == "5.5 4.0"
    assert record["layout"] == {"tile": 64, "median_tile": 64}
    assert set(record["inputs"]) == {e.name for e in small_observation.exposures}
    json.dumps(record)  # plain JSON


@pytest.mark.parametrize("method", ["difference", "cube"])
def test_ifu_run_resumes_and_recomputes_other_parameters(tmp_path, method):
    sim = datasets.make_ifu_exposures(3, seed=1)
    store = str(tmp_path / "w")
    kwargs = dict(mode="ifu", ifu_method=method, scale="2.4 1.2")
    # Budgets above what this test process already holds (it grows over a test session).
    from daskod.engine._budget import process_rss

    first = daskod.detect_outliers(sim.exposures, store=store,
                                   memory_limit=process_rss() + 2**30, **kwargs)
    assert first.checkpoints == {}
    # The layout derived from the budget is noted and repeated, whatever the new budget.
    again = daskod.detect_outliers(sim.exposures, store=store,
                                   memory_limit=process_rss() + 2**31, **kwargs)
    assert again.checkpoints and all(v["reused"] == v["total"] > 0
                                     for v in again.checkpoints.values())
    _same_flags(first, again)
    other = {"threshold_percent": 99.0} if method == "difference" else {"snr": "6.0 4.0"}
    changed = daskod.detect_outliers(sim.exposures, store=store, **{**kwargs, **other})
    _same_flags(daskod.detect_outliers(sim.exposures, **{**kwargs, **other}), changed)


# --- a store that can be trusted ---------------------------------------------------------

def _chunk_path(store, name, *index):
    return os.path.join(store, name, "c", *[str(i) for i in index])


def test_deleted_or_damaged_chunks_are_recomputed_not_read_as_fill(small_observation,
                                                                   tmp_path):
    store = str(tmp_path / "w")
    reference = daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    # A median chunk deleted, with the flags' manifests gone (as after a kill), a DQ chunk
    # deleted, and a drizzled shard damaged.
    os.remove(_chunk_path(store, "median", 1, 1))
    for k in range(len(small_observation.exposures)):
        import shutil

        shutil.rmtree(os.path.join(store, "manifest", "outputs", str(k)))
    os.remove(_chunk_path(store, "outputs/1/dq", 0, 1))
    shard = _chunk_path(store, "resampled", 2, 0, 1, 1)
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 3] ^= 0xFF
    with open(shard, "wb") as f:
        f.write(bytes(data))
    again = daskod.detect_outliers(small_observation.exposures, store=store)
    assert again.checkpoints["median"]["reused"] == again.checkpoints["median"]["total"] - 1
    assert again.checkpoints["resampled"]["reused"] == again.checkpoints["resampled"]["total"] - 1
    _same_flags(reference, again)


def test_a_second_writer_is_refused_while_the_first_runs(small_observation, tmp_path):
    store = str(tmp_path / "w")
    daskod.detect_outliers(small_observation.exposures, store=store, tile_size=64)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(store + ".daskod-lock", "w") as f:
            json.dump({"pid": holder.pid, "host": socket.gethostname(), "since": time.time()}, f)
        stamps = _files(store, "median")
        with pytest.raises(daskod.StoreError, match=f"in use by process {holder.pid}"):
            daskod.detect_outliers(small_observation.exposures, store=store)
        assert _files(store, "median") == stamps
    finally:
        holder.kill()
        holder.wait()
    # Its process gone, the lock is stale: taken over.
    again = daskod.detect_outliers(small_observation.exposures, store=store)
    assert again.checkpoints["median"]["reused"] > 0
    assert not os.path.exists(store + ".daskod-lock")


@pytest.mark.slow
def test_two_runs_started_together_on_one_store(tmp_path):
    """Two processes on one store: one runs, the other is refused at once; the flags of the
    one that ran are right, and a rerun reuses its store."""
    store = str(tmp_path / "shared.zarr")
    code = _CHILD.format(sim=repr(dict(_SIM, n_exposures=3)), run=repr(_RUN))
    procs = [subprocess.Popen([sys.executable, "-c", code, store], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outs
    refused = outs[[p.returncode for p in procs].index(codes[1])]
    assert "in use by process" in refused
    sim = datasets.make_dithered_imaging(**dict(_SIM, n_exposures=3))
    again = daskod.detect_outliers(sim.exposures, store=store, **_RUN)
    assert all(v["reused"] == v["total"] for v in again.checkpoints.values())
    _same_flags(daskod.detect_outliers(sim.exposures, **_RUN), again)
