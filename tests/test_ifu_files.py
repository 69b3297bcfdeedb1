"""JWST IFU products (IFUImageModel *_cal.fits) in, *_crf.fits out, through ``daskod run``."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import daskod
from daskod import datasets

dm = pytest.importorskip("stdatamodels.jwst.datamodels")

@pytest.fixture(scope="module")
def ifu_files(tmp_path_factory):
    sim = datasets.make_ifu_exposures(3, shape=(80, 80), instrument="MIRI", seed=6)
    written = datasets.write_ifu_files(sim.exposures, tmp_path_factory.mktemp("ifu") / "in")
    return sim, written["files"], written["asn"]


#: The reference's name: the first input's stem, the association id, the detector.
OUTLIER_OUTPUT = "jw01234002001_02101_00001_mirifushort_o002_mirifushort_outlier_output.fits"


def _run(*args):
    return subprocess.run([sys.executable, "-m", "daskod.cli", "run", *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_reader_gives_ifu_exposures(ifu_files):
    from daskod.io._jwst import gather_members, read_members

    _sim, _files, asn = ifu_files
    items, info, mode = read_members(gather_members([asn]))
    assert mode == "ifu"
    assert [i["model_type"] for i in info] == ["IFUImageModel"] * 3
    for exp in items:
        assert exp.detector == "MIRIFUSHORT" and exp.instrument == "MIRI"
        assert exp.meta == {"exp_type": "MIR_MRS"}
        assert exp.wcs is None


def test_run_writes_one_crf_per_input_same_as_the_api(ifu_files, tmp_path):
    sim, files, asn = ifu_files
    before = {p: os.stat(p).st_mtime_ns for p in files}
    proc = _run(asn, "-o", str(tmp_path / "out"), "--no-progress", "--scheduler",
                "synchronous", "--kernel-size", "7 7", "--threshold-percent", "99.5",
                "--save-intermediate-results")
    assert proc.returncode == 0, proc.stderr
    api = daskod.detect_outliers(sim.exposures, mode="ifu", threshold_percent=99.5)
    outs = sorted(p for p in os.listdir(tmp_path / "out") if p.endswith(".fits"))
    crfs = [os.path.basename(p).replace("_cal", "_crf") for p in files]
    assert outs == sorted([*crfs, OUTLIER_OUTPUT])
    for k, src in enumerate(files):
        assert os.stat(src).st_mtime_ns == before[src]  # inputs untouched
        with dm.open(src) as a, dm.open(str(tmp_path / "out" / crfs[k])) as b:
            assert b.meta.cal_step.outlier_detection == "COMPLETE"
            np.testing.assert_array_equal(b.dq, api.dq[k])
            assert np.all((b.dq[sim.bad_pixels] & 17) == 17)
            np.testing.assert_array_equal(np.isnan(b.data), (b.dq & 1) != 0)
            keep = (b.dq & 1) == 0
            np.testing.assert_array_equal(b.data[keep], a.data[keep])
    name = OUTLIER_OUTPUT
    with dm.open(str(tmp_path / "out" / name)) as opt:
        assert opt.diffarr.shape == (3, 80, 80)
        assert opt.meta.kernel_xsize == 7 and opt.meta.threshold_percent == 99.5
        info = api.ifu["mirifushort"]
        np.testing.assert_array_equal(opt.minnorm, np.asarray(info["minnorm"], np.float32))


def test_run_single_file_is_skipped(ifu_files, tmp_path):
    _sim, files, _asn = ifu_files
    proc = _run(files[0], "-o", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Step skipped" in proc.stdout
    out = tmp_path / "out" / os.path.basename(files[0]).replace("_cal", "_crf")
    with dm.open(files[0]) as a, dm.open(str(out)) as b:
        assert b.meta.cal_step.outlier_detection == "SKIPPED"
        np.testing.assert_array_equal(b.dq, a.dq)


def test_run_cube_method_without_wcs_fails_cleanly(ifu_files, tmp_path):
    _sim, _files, asn = ifu_files
    proc = _run(asn, "-o", str(tmp_path / "out"), "--no-progress", "--ifu-method", "cube")
    assert proc.returncode == 1
    assert "no WCS" in proc.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
