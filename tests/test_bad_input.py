"""Bad input is refused early and by name, and nothing is left behind (issue 13).

Every test here names the failure it guards against: secrets echoed in errors, failures
found only after all the work, temporary folders and partial files left by killed runs, and
implausible inputs (ERR all zero) that ran without a word.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod._exceptions import InputError, InputWarning
from daskod.exposure import validate_exposures
from daskod.io import _leftovers, _location


@pytest.fixture
def temp_dir(tmp_path):
    ours = tmp_path / "daskod-tmp"
    ours.mkdir()
    with daskod.set_options(temp_dir=str(ours)):
        yield ours


@pytest.fixture(scope="module")
def cal_folder(tmp_path_factory):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    folder = tmp_path_factory.mktemp("cal")
    datasets.write_cal_files(sim.exposures, folder)
    return folder


@pytest.fixture
def cal_copy(cal_folder, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(cal_folder, folder)
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if outlier detection starts: the refusal must come before it."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the run started before the bad input was refused")

    monkeypatch.setattr(daskod, "detect_outliers", forbidden)


def _main(*argv):
    from daskod.cli import main

    return main([*argv])


# 1. A secret echoed --------------------------------------------------------------------------

def test_malformed_storage_options_never_echo_the_secret(capsys):
    text = '{"key": "AKIAEXAMPLEKEY123", "secret": "hunter2-very-secret",'
    with pytest.raises(SystemExit) as info:
        _main("run", "asn.json", "-o", "out", "--storage-options", text)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "AKIAEXAMPLEKEY123" not in err and "hunter2" not in err
    assert "--storage-options is not valid JSON (line 1, column" in err
    assert err.startswith("usage: daskod run")
    with pytest.raises(SystemExit):
        _main("run", "asn.json", "-o", "out", "--storage-options", '["hunter2-very-secret"]')
    err = capsys.readouterr().err
    assert "hunter2" not in err and "--storage-options must be a JSON object" in err


def test_rejected_storage_options_show_names_not_values(monkeypatch):
    import fsspec

    def refuse(url, **options):
        raise TypeError("unexpected keyword argument 'bogus'")

    monkeypatch.setattr(fsspec.core, "url_to_fs", refuse)
    with pytest.raises(daskod.StoreError) as info:
        _location.url_filesystem("s3://bucket/x", {"secret": "hunter2-very-secret", "bogus": 1})
    assert "hunter2" not in str(info.value)
    assert "bogus" in str(info.value) and "secret" in str(info.value)


# 2. Late failures ----------------------------------------------------------------------------

def _rename_member(folder, old_part, new_name):
    asn = folder / "test_asn.json"
    data = json.loads(asn.read_text())
    for m in data["products"][0]["members"]:
        if old_part in m["expname"]:
            (folder / m["expname"]).rename(folder / new_name)
            m["expname"] = new_name
    asn.write_text(json.dumps(data))
    return asn


@pytest.mark.parametrize("name", ["jw01234001001_02101_00002\nx_cal.fits",
                                  "jw01234001001_02101_00002_é_cal.fits"])
def test_member_name_a_fits_header_cannot_hold_is_refused_first(cal_copy, tmp_path, temp_dir,
                                                                no_work, capsys, name):
    asn = _rename_member(cal_copy, "_00002_", name)
    code = _main("run", str(asn), "-o", str(tmp_path / "out"), "--no-progress")
    err = capsys.readouterr().err
    assert code == 1
    assert "00002" in err and "printable ASCII" in err
    assert not (tmp_path / "out").exists()
    assert os.listdir(temp_dir) == []


def test_product_name_that_would_escape_the_output_folder(cal_copy, tmp_path, no_work, capsys):
    asn = cal_copy / "test_asn.json"
    data = json.loads(asn.read_text())
    data["products"][0]["name"] = "../../escaped"
    asn.write_text(json.dumps(data))
    code = _main("run", str(asn), "-o", str(tmp_path / "out"), "--save-intermediate-results")
    err = capsys.readouterr().err
    assert code == 1 and "'../../escaped'" in err and "product name" in err
    assert not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file_is_refused_first(cal_copy, tmp_path, no_work, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    code = _main("run", str(cal_copy / "test_asn.json"), "-o", str(target))
    err = capsys.readouterr().err
    assert code == 1 and str(target) in err and "is a file" in err
    assert target.read_text() == "keep me"
    code = _main("run", str(cal_copy / "test_asn.json"), "-o", str(target / "below"))
    assert code == 1 and "is a file" in capsys.readouterr().err


# 4. Leftovers ---------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_leftover(parent, kind, pid, host=None):
    host = socket.gethostname() if host is None else host
    path = parent / f"daskod-{kind}-{pid}@{_leftovers.host_tag(host)}-abcd_123"
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "chunk").write_bytes(b"x" * 1000)
    return path


def test_temporary_folders_carry_their_owner(temp_dir):
    with _location.temp_folder("daskod-work-") as path:
        owner = _leftovers.parse_owner(os.path.basename(path))
        assert owner is not None
        assert owner.pid == os.getpid() and owner.host == _leftovers.host_tag(socket.gethostname())
        assert _leftovers.owner_alive(owner, path)


def test_a_new_run_removes_folders_whose_process_is_gone(temp_dir, small_observation):
    _leftovers.forget_sweeps()
    dead = [_fake_leftover(temp_dir, kind, _dead_pid()) for kind in ("work", "outputs", "product")]
    mine = _fake_leftover(temp_dir, "work", os.getpid())
    other_host = _fake_leftover(temp_dir, "work", _dead_pid(), host="some-other-node.example")
    unrelated = temp_dir / "someone-elses-folder"
    unrelated.mkdir()
    result = daskod.detect_outliers(small_observation.exposures, scheduler="synchronous")
    assert int(sum(result.n_flagged)) > 0
    assert not any(p.exists() for p in dead)
    assert mine.exists() and other_host.exists() and unrelated.exists()


def test_a_reused_process_id_does_not_keep_a_leftover(temp_dir):
    # The folder was last touched before the process now holding that id started.
    path = _fake_leftover(temp_dir, "outputs", os.getpid())
    os.utime(path, (1_000_000_000, 1_000_000_000))
    owner = _leftovers.parse_owner(path.name)
    assert not _leftovers.owner_alive(owner, str(path))
    assert str(path) in daskod.clean_leftovers()
    assert not path.exists()


def test_daskod_clean_removes_leftovers_and_reports(temp_dir, capsys):
    dead = _fake_leftover(temp_dir, "work", _dead_pid())
    mine = _fake_leftover(temp_dir, "work", os.getpid())
    assert _main("clean", "--dry-run") == 0
    out = capsys.readouterr().out
    assert str(dead) in out and dead.exists()
    assert _main("clean") == 0
    out = capsys.readouterr().out
    assert str(dead) in out and "Removed 1" in out
    assert not dead.exists() and mine.exists()
    assert daskod.clean_leftovers() == []


def test_daskod_clean_removes_partial_products_of_gone_processes(temp_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    host = _leftovers.host_tag()
    dead = out / f".x_crf.fits.partial-{_dead_pid()}@{host}-0a1b2c3d"
    live = out / f".x_crf.fits.partial-{os.getpid()}@{host}-0a1b2c3d"
    product = out / "x_crf.fits"
    for path in (dead, live, product):
        path.write_bytes(b"x")
    assert _main("clean", str(out)) == 0
    assert str(dead) in capsys.readouterr().out
    assert not dead.exists() and live.exists() and product.exists()


def test_partial_files_never_survive_a_successful_rerun(cal_copy, tmp_path, temp_dir,
                                                         monkeypatch):
    import errno

    out = tmp_path / "out"
    out.mkdir()
    name = "jw01234001001_02101_00001_nrcb1_crf.fits"
    stale = out / f".{name}.partial-1a2b3c4d"  # left by a run killed while publishing
    stale.write_bytes(b"half a product")
    real_replace = os.replace

    def cross_device(src, dst):  # staging on another file system: copy, then rename
        if str(dst).startswith(str(out)) and not os.path.basename(dst).startswith("."):
            if str(src).startswith(str(temp_dir)):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    code = _main("run", str(cal_copy / "test_asn.json"), "-o", str(out), "--no-progress",
                 "--scheduler", "synchronous")
    assert code == 0
    assert sorted(os.listdir(out)) == sorted(
        p.name.replace("_cal", "_crf") for p in cal_copy.glob("*_cal.fits"))


def test_failed_copy_removes_its_partial_file(tmp_path, monkeypatch):
    import errno

    src, folder = tmp_path / "staged.fits", tmp_path / "out"
    src.write_bytes(b"product")
    folder.mkdir()

    def cross_device(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def disk_full(a, b):
        with open(b, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", cross_device)
    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(OSError, match="No space"):
        _location.publish([str(src)], [str(folder / "x_crf.fits")])
    assert os.listdir(folder) == []


def test_failure_before_the_work_leaves_nothing(cal_folder, tmp_path, temp_dir, capsys):
    """An input the engine refuses (no usable pixel) with --save-intermediate-results: the
    output folder and the intermediates store that the run created are gone again."""
    from stdatamodels.jwst import datamodels as dm

    folder = tmp_path / "in"
    shutil.copytree(cal_folder, folder)
    path = next(folder.glob("*_00003_*_cal.fits"))
    with dm.open(str(path)) as m:
        m.data[...] = np.nan
        m.save(str(path))
    code = _main("run", str(folder / "test_asn.json"), "-o", str(tmp_path / "out"),
                 "--no-progress", "--save-intermediate-results", "--scheduler", "synchronous")
    assert code == 1 and "usable" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert os.listdir(temp_dir) == []


# 5. Implausible inputs -----------------------------------------------------------------------

class CountingArray:
    """A lazy 2-D array that records every read (like a FITS extension read block by block)."""

    def __init__(self, data, reads):
        self.data, self.reads = data, reads
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.size)
        return out


@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_err_zero_or_not_finite_where_sci_is_valid_warns_by_name(small_observation, bad):
    exps = small_observation.exposures
    broken = replace(exps[2], err=np.full(exps[2].shape, bad, np.float32), name="broken_cal")
    with pytest.warns(InputWarning, match=r"broken_cal.*ERR") as record:
        validate_exposures([*exps[:2], broken, exps[3]], check_errors=True)
    assert len(record) == 1
    assert "100.0%" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_exposures(exps, check_errors=True)  # plausible inputs: silent


def test_detect_outliers_warns_before_the_work_and_lazy_graphs_read_nothing(
        small_observation, monkeypatch):
    from daskod.modes.imaging import ImagingPlan

    exps = small_observation.exposures
    broken = replace(exps[1], err=np.zeros(exps[1].shape, np.float32), name="zero_err")
    warned_before_work = []
    real = ImagingPlan.build

    def ours(record):
        return [w for w in record if issubclass(w.category, InputWarning)]

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")

        def watching(*args, **kwargs):
            warned_before_work.append(len(ours(record)))
            return real(*args, **kwargs)

        monkeypatch.setattr(ImagingPlan, "build", watching)
        daskod.detect_outliers([exps[0], broken, *exps[2:]], scheduler="synchronous")
    record = ours(record)
    assert warned_before_work == [1] and len(record) == 1
    assert "zero_err" in str(record[0].message)
    assert record[0].filename == __file__  # shown at the caller's line
    reads: list[int] = []
    lazy = [replace(e, err=CountingArray(np.zeros(e.shape, np.float32), reads)) for e in exps]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        daskod.detect_outliers(lazy, compute=False)
    assert reads == []


def test_zero_read_noise_variance_warns_for_ivm_weights(small_observation):
    exp = small_observation.exposures[0]
    bad = replace(exp, var_rnoise=np.zeros(exp.shape, np.float32), name="novar")
    with pytest.warns(InputWarning, match=r"novar.*var_rnoise"):
        validate_exposures([bad], check_errors=True)


def test_err_check_reads_a_bounded_sample_block_by_block():
    ny = nx = 2048
    reads: list[int] = []
    sci = np.ones((ny, nx), np.float32)
    err = np.zeros((ny, nx), np.float32)
    exp = daskod.Exposure(sci=CountingArray(sci, reads), err=CountingArray(err, reads),
                          dq=CountingArray(np.zeros((ny, nx), np.uint32), reads), name="big")
    with pytest.warns(InputWarning, match="big"):
        validate_exposures([exp], need_wcs=False, check_errors=True)
    assert reads, "the check read nothing"
    assert max(reads) <= ny * nx // 8  # never a whole array at once
    assert sum(reads) <= 3 * ny * nx // 4  # a sample, not every pixel of three arrays


def test_estimate_memory_reads_no_pixel(small_observation):
    reads: list[int] = []
    exps = [replace(e, sci=CountingArray(np.asarray(e.sci), reads)) for e in
            small_observation.exposures]
    daskod.estimate_memory(exps, memory_limit="1GiB", scheduler="synchronous")
    assert reads == []


def test_daskod_run_shows_the_warning_as_one_line(cal_folder, tmp_path, capsys):
    from stdatamodels.jwst import datamodels as dm

    folder = tmp_path / "in"
    shutil.copytree(cal_folder, folder)
    path = next(folder.glob("*_00002_*_cal.fits"))
    with dm.open(str(path)) as m:
        m.err[...] = 0
        m.save(str(path))
    code = _main("run", str(folder / "test_asn.json"), "-o", str(tmp_path / "out"),
                 "--no-progress", "--scheduler", "synchronous")
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "ERR is zero" in line]
    assert len(lines) == 1, err  # once, on one line (the run then also warns of its flags)
    assert path.name in lines[0] and ".py:" not in err


def test_refused_input_still_names_the_exposure():
    # The plausibility check never hides the structural checks that come first.
    with pytest.raises(InputError, match="exposure0"):
        validate_exposures([daskod.Exposure(sci=np.ones((4, 4)), err=np.ones((4, 5)),
                                            dq=np.zeros((4, 4), np.uint32))], need_wcs=False)
