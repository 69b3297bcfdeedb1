"""Temporary space and local stores: one temp folder, cleaned up on success and failure,
writability and free space checked before work."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod._exceptions import StoreError
from daskod.io import _location


@pytest.fixture(scope="module")
def observation():
    return datasets.make_dithered_imaging(n_exposures=4, shape=(160, 160), seed=11)


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """daskod's temp_dir, and Python's own temporary folder moved elsewhere so a test can
    tell that nothing went there."""
    ours, system = tmp_path / "daskod-tmp", tmp_path / "system-tmp"
    ours.mkdir()
    system.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system))
    with daskod.set_options(temp_dir=str(ours)):
        yield ours
    assert os.listdir(system) == []


class FailingArray:
    """A lazy array whose reads fail after the first ``good`` ones, like a file that
    disappears during a run (the first read is the input check's sample)."""

    def __init__(self, like: np.ndarray, good: int = 1) -> None:
        self.like, self.good = like, good
        self.shape, self.dtype, self.ndim = like.shape, like.dtype, like.ndim

    def __getitem__(self, key):
        if self.good > 0:
            self.good -= 1
            return self.like[key]
        raise OSError("simulated read failure")


def test_temp_folder_empty_after_success_and_after_failure(observation, temp_dir, monkeypatch):
    seen = []
    real = _location.temp_folder

    def watching(*args, **kwargs):
        ctx = real(*args, **kwargs)
        path = ctx.__enter__()
        seen.append(path)
        return _Wrap(ctx, path)

    monkeypatch.setattr(_location, "temp_folder", watching)
    result = daskod.detect_outliers(observation.exposures, scheduler="synchronous")
    assert result.store is None and int(sum(result.n_flagged)) > 0
    assert seen and all(os.path.dirname(p) == str(temp_dir) for p in seen)
    assert os.listdir(temp_dir) == []
    # Fail half-way: the working store's arrays exist, then the last exposure's SCI cannot
    # be read while it is copied into the store.
    bad = [*observation.exposures[:-1],
           replace(observation.exposures[-1], sci=FailingArray(observation.exposures[-1].sci))]
    with pytest.raises(OSError, match="simulated read failure"):
        daskod.detect_outliers(bad, scheduler="synchronous")
    assert len(seen) == 2
    assert os.listdir(temp_dir) == []


class _Wrap:
    def __init__(self, ctx, path):
        self.ctx, self.path = ctx, path

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def test_result_keeps_a_lazy_temporary_store_until_it_is_gone(observation, temp_dir):
    import gc

    result = daskod.detect_outliers(observation.exposures, scheduler="synchronous",
                                    in_memory=False)
    assert len(os.listdir(temp_dir)) == 1
    assert int(np.asarray(result.dq[0]).sum()) > 0  # read from the store
    del result
    gc.collect()
    assert os.listdir(temp_dir) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unwritable_store_folder(observation, tmp_path):
    # A store below a regular file cannot be created; a read-only folder cannot be written
    # (root ignores permission bits, so that half only runs for other users).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="Cannot create the working store") as info:
        daskod.detect_outliers(observation.exposures, store=str(blocker / "store"))
    assert str(blocker / "store") in str(info.value)
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        try:
            with pytest.raises(StoreError, match="not writable"):
                daskod.detect_outliers(observation.exposures, store=str(folder))
        finally:
            folder.chmod(0o700)
        assert os.listdir(folder) == []


def test_full_disk_is_refused_with_the_numbers(observation, temp_dir, tmp_path, monkeypatch):
    from daskod.modes.imaging import ImagingPlan

    def forbidden(*args, **kwargs):
        raise AssertionError("work started on a full disk")

    monkeypatch.setattr(ImagingPlan, "build", forbidden)
    monkeypatch.setattr(_location, "free_bytes", lambda path: 12345)
    with pytest.raises(StoreError, match="Not enough free space") as info:
        daskod.detect_outliers(observation.exposures, scheduler="synchronous")
    err = info.value
    assert err.free == 12345
    # 4 groups drizzled (data + weight) onto a frame of at least one 160x160 detector,
    # plus the median and the new DQ of each exposure.
    assert err.needed >= 4 * 160 * 160 * 8 + 160 * 160 * 4 + 4 * 160 * 160 * 4
    assert str(err.needed) in str(err) and "12345" in str(err)
    assert "store=" in str(err) and "temp_dir" in str(err)
    assert os.listdir(temp_dir) == []
    # A named local store is checked too, before anything but the probe is written.
    with pytest.raises(StoreError, match="Not enough free space"):
        daskod.detect_outliers(observation.exposures, store=str(tmp_path / "named"))
    assert os.listdir(tmp_path / "named") == []


def test_files_a_store_already_holds_count_as_reusable(tmp_path, monkeypatch):
    store = tmp_path / "store"
    (store / "median" / "c").mkdir(parents=True)
    (store / "median" / "c" / "0").write_bytes(b"x" * 5000)
    monkeypatch.setattr(_location, "free_bytes", lambda path: 1000)
    _location.ensure_free_space(str(store), 5900, what="the working store")
    with pytest.raises(StoreError) as info:
        _location.ensure_free_space(str(store), 7000, what="the working store")
    assert (info.value.needed, info.value.free) == (2000, 1000)
    _location.ensure_free_space(object(), 10**18, what="an object store")  # not checked


def test_free_space_needed_counts_copies_of_inputs(observation):
    from daskod.io._store import store_bytes

    exps = observation.exposures
    in_place = store_bytes(exps, shares_memory=True)
    copied = store_bytes(exps, shares_memory=False)
    n_arrays = sum(getattr(exps[0], n) is not None for n in
                   ("sci", "err", "dq", "var_rnoise", "var_poisson", "var_flat"))
    assert in_place == 4 * 160 * 160 * 4  # only the new DQ
    assert copied - in_place == 4 * n_arrays * 160 * 160 * 4


def test_temp_dir_must_be_local(observation):
    with daskod.set_options(temp_dir="s3://bucket/tmp"), \
            pytest.raises(StoreError, match="temp_dir must be a local folder"):
        daskod.detect_outliers(observation.exposures)


@pytest.fixture(scope="module")
def cal_files(tmp_path_factory):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    return datasets.write_cal_files(sim.exposures, tmp_path_factory.mktemp("cal"))


def test_daskod_run_cleans_temp_space_on_success_and_failure(cal_files, temp_dir, tmp_path,
                                                              monkeypatch, capsys):
    from daskod.cli import main
    from daskod.io import _products

    argv = ["run", cal_files["asn"], "--no-progress", "--scheduler", "synchronous"]
    real = _products.write_product
    during = []

    def watching(src, dst, *args, **kwargs):
        during.append(sorted(os.listdir(temp_dir)))
        if len(during) == 5:
            raise OSError("simulated write failure")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(_products, "write_product", watching)
    assert main([*argv, "-o", str(tmp_path / "ok"), "--save-intermediate-results"]) == 0
    assert all(any(n.startswith("daskod-outputs-") for n in names) for names in during)
    outputs = os.listdir(tmp_path / "ok")
    assert len(outputs) == 3 + 1 + 3 + 3 + 1  # crf, median, blot, i2d, the Zarr store
    assert sum(n.endswith("_intermediates.zarr") for n in outputs) == 1
    assert os.listdir(temp_dir) == []
    # The fifth product fails (the second of this run): no output folder, nothing in temp.
    assert main([*argv, "-o", str(tmp_path / "failed")]) == 1
    assert "simulated write failure" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "failed")
    assert os.listdir(temp_dir) == []


def test_daskod_run_checks_space_for_staged_products(cal_files, temp_dir, tmp_path,
                                                     monkeypatch, capsys):
    import daskod
    from daskod.cli import main

    def forbidden(*args, **kwargs):
        raise AssertionError("ran without room for its products")

    monkeypatch.setattr(daskod, "detect_outliers", forbidden)
    monkeypatch.setattr(_location, "free_bytes", lambda path: 1000)
    code = main(["run", cal_files["asn"], "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    inputs = sum(os.path.getsize(p) for p in cal_files["files"])
    assert code == 1 and "Not enough free space for the products" in err
    assert f"({inputs} bytes)" in err and "(1000 bytes) free" in err
    assert not os.path.exists(tmp_path / "out")
    assert os.listdir(temp_dir) == []
