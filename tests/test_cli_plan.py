"""``daskod run --dry-run`` / ``daskod estimate`` and the rule for existing products
(issue 14 item 9; decision 4: a fresh run refuses existing products unless --overwrite, a
resumed run may replace the products it was writing)."""

from __future__ import annotations

import os
import re

import pytest

import daskod
from daskod import datasets
from daskod.cli import main


@pytest.fixture(scope="module")
def cal_files(tmp_path_factory):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    return datasets.write_cal_files(sim.exposures, tmp_path_factory.mktemp("cal"))


@pytest.fixture
def no_pixels(monkeypatch):
    """Fail on any pixel read or any start of the work."""
    from daskod.io._jwst import FitsArray

    def forbidden(*args, **kwargs):
        raise AssertionError("pixels read or work started during a dry run")

    monkeypatch.setattr(FitsArray, "__getitem__", forbidden)
    monkeypatch.setattr(FitsArray, "__array__", forbidden)
    monkeypatch.setattr(daskod, "detect_outliers", forbidden)


def _crf(path):
    return os.path.basename(path).replace("_cal", "_crf")


@pytest.mark.parametrize("command", [["run", "--dry-run"], ["estimate"]])
def test_dry_run_prints_the_plan_without_reading_pixels(cal_files, tmp_path, no_pixels,
                                                        capsys, command):
    out_dir = tmp_path / "out"
    code = main([*command, cal_files["asn"], "-o", str(out_dir), "--memory-limit", "1GiB",
                 "--scheduler", "synchronous"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 exposure(s), mode imaging, 3 group(s)" in out
    assert re.search(r"tile \d+ px", out) and "1 worker" in out
    assert "predicted peak" in out and "memory limit 1.00 GiB" in out
    assert re.search(r"working store: .*\d+(\.\d+)? (KiB|MiB|GiB)", out)
    assert re.search(r"output frame: \d+ x \d+ px", out)
    for path in cal_files["files"]:
        assert re.search(rf"{_crf(path)}\s+new", out)
    assert not out_dir.exists()


def test_existing_products_are_refused_unless_overwrite(cal_files, tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = [cal_files["asn"], "-o", str(out_dir), "--no-progress", "--scheduler", "synchronous"]
    assert main(["run", *args]) == 0
    capsys.readouterr()
    mtimes = {p: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    assert len(mtimes) == 3
    assert main(["run", *args]) == 1
    err = capsys.readouterr().err
    assert "3 product(s) already exist" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes
    # The dry run says the same and which ones.
    assert main(["run", *args, "--dry-run"]) == 1
    out, err = capsys.readouterr()
    for path in cal_files["files"]:
        assert re.search(rf"{_crf(path)}\s+exists", out)
    assert "--overwrite" in err
    assert main(["run", *args, "--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns != mtimes[p] for p in out_dir.iterdir())


def test_resumed_run_may_replace_the_products_it_was_writing(cal_files, tmp_path, capsys):
    out_dir, store = tmp_path / "out", tmp_path / "work.zarr"
    args = [cal_files["asn"], "-o", str(out_dir), "--no-progress", "--scheduler",
            "synchronous", "--store", str(store)]
    assert main(["run", *args]) == 0
    capsys.readouterr()
    assert main(["run", *args]) == 0  # same store, same fingerprint: a resumed run
    assert "Resumed the run" in capsys.readouterr().out
    # Another store, or the store discarded: a fresh run, refused.
    assert main(["run", *args[:-1], str(tmp_path / "other.zarr")]) == 1
    assert "already exist" in capsys.readouterr().err
    assert main(["run", *args, "--overwrite-store", "--snr", "6 4"]) == 1
    assert "already exist" in capsys.readouterr().err
    assert main(["run", *args, "--overwrite-store", "--snr", "6 4", "--overwrite"]) == 0


def test_products_of_another_output_folder_are_not_the_runs_own(cal_files, tmp_path, capsys):
    store = tmp_path / "work.zarr"
    common = ["--no-progress", "--scheduler", "synchronous", "--store", str(store)]
    assert main(["run", cal_files["asn"], "-o", str(tmp_path / "a"), *common]) == 0
    # Folder b holds products of the same names that this store never wrote.
    b = tmp_path / "b"
    b.mkdir()
    for path in cal_files["files"]:
        (b / _crf(path)).write_bytes(b"someone else's product")
    capsys.readouterr()
    assert main(["run", cal_files["asn"], "-o", str(b), *common]) == 1
    assert "already exist" in capsys.readouterr().err
    assert all((b / _crf(p)).read_bytes() == b"someone else's product"
               for p in cal_files["files"])


def test_output_that_is_a_folder_is_refused_even_with_overwrite(cal_files, tmp_path, capsys):
    out_dir = tmp_path / "out"
    (out_dir / _crf(cal_files["files"][1])).mkdir(parents=True)
    code = main(["run", cal_files["asn"], "-o", str(out_dir), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and "is a folder" in err and _crf(cal_files["files"][1]) in err

