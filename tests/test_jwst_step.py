"""daskod's stpipe step run by the real ``strun`` beside the reference step (jwst 3.0.0), in an
environment that has both (tests/_step_env.py: built and cached if needed; a missing one
FAILS these tests, it never skips them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _step_env import ROOT, step_python

import daskod
from daskod import datasets

pytestmark = pytest.mark.slow
stdatamodels = pytest.importorskip("stdatamodels.jwst.datamodels")

OFFLINE = {"STPIPE_DISABLE_CRDS_STEPPARS": "True", "CRDS_SERVER_URL": "https://127.0.0.1:9",
           "CRDS_OBSERVATORY": "jwst"}


@pytest.fixture(scope="module")
def strun(tmp_path_factory):
    python = step_python()
    crds = tmp_path_factory.mktemp("crds")
    env = {**os.environ, **OFFLINE, "CRDS_PATH": str(crds), "PYTHONPATH": str(ROOT)}

    def run(*args, cwd):
        proc = subprocess.run([str(Path(python).with_name("strun")), *map(str, args)],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout + proc.stderr

    run.python = python
    run.env = env
    return run


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cal")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=6)
    written = datasets.write_cal_files(sim.exposures, folder)
    return sim, written


def _products(folder):
    return sorted(p.name for p in Path(folder).glob("*.fits"))


def _open(path):
    return stdatamodels.open(path)


def test_spec_has_every_reference_parameter_with_its_default(strun, tmp_path):
    script = ("from jwst.outlier_detection import OutlierDetectionStep as R\n"
              "from daskod.jwst_step import DaskodOutlierDetectionStep as D\n"
              "r, d = R().get_pars(), D().get_pars()\n"
              "assert all(d[k] == v for k, v in r.items() if k not in ('suffix',)), "
              "{k: (v, d.get(k)) for k, v in r.items() if d.get(k) != v}\n"
              "print(sorted(set(d) - set(r)))\n")
    proc = subprocess.run([strun.python, "-c", script], env=strun.env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "memory_limit" in proc.stdout and "tile_size" in proc.stdout


def test_same_products_and_flags_as_the_reference_without_resampling(strun, observation,
                                                                       tmp_path):
    """resample_data=False needs no output frame: the flags must be identical."""
    _sim, written = observation
    asn = written["asn"]
    log = strun("outlier_detection", asn, "--output_dir", tmp_path / "ref",
                "--resample_data=False", cwd=tmp_path)
    assert "Step OutlierDetectionStep done" in log
    strun("daskod_outlier_detection", asn, "--output_dir", tmp_path / "ours",
          "--resample_data=False", cwd=tmp_path)
    names = _products(tmp_path / "ref")
    assert names == _products(tmp_path / "ours") and len(names) == 3
    assert all(n.endswith("_outlierdetectionstep.fits") for n in names)
    flagged = 0
    for name in names:
        with _open(tmp_path / "ref" / name) as ref, _open(tmp_path / "ours" / name) as ours:
            np.testing.assert_array_equal(ours.dq, ref.dq)
            np.testing.assert_array_equal(np.isnan(ours.data), np.isnan(ref.data))
            np.testing.assert_array_equal(np.isnan(ours.err), np.isnan(ref.err))
            assert ours.meta.cal_step.outlier_detection == "COMPLETE"
            assert ref.meta.cal_step.outlier_detection == "COMPLETE"
            flagged += int(np.count_nonzero(ours.dq & 16))
    assert flagged > 0


def test_imaging_with_resampling_finds_the_cosmic_rays(strun, observation, tmp_path):
    sim, written = observation
    strun("daskod_outlier_detection", written["asn"], "--output_dir", tmp_path,
          "--memory_limit", "1GiB", "--suffix", "crf", cwd=tmp_path)
    dq = []
    for path in written["files"]:
        stem = Path(path).name.replace("_cal.fits", "")
        (out,) = tmp_path.glob(f"{stem}_*crf.fits")  # <stem>_<asn id>_crf.fits
        with _open(out) as model:
            dq.append(np.array(model.dq))
            assert model.meta.cal_step.outlier_detection == "COMPLETE"
            bad = (model.dq & 1) != 0
            assert np.isnan(model.data[bad]).all()
    results = daskod.OutlierResult(status="COMPLETE", dq=dq, exposures=sim.exposures,
                                   params={})
    scores = datasets.score_against_truth(sim, results)
    bright = sum(s.n_true_bright for s in scores)
    assert bright > 0
    assert sum(s.recalled_bright for s in scores) / bright >= 0.95


def test_parameter_files_written_by_daskod_run_through_strun(strun, observation, tmp_path):
    _sim, written = observation
    pars = daskod.write_parameter_file(tmp_path / "pars.asdf", {
        "snr": "3.0 2.5", "resample_data": False, "memory_limit": "512MiB"})
    strun(pars, written["asn"], "--output_dir", tmp_path / "file", cwd=tmp_path)
    strun("daskod_outlier_detection", written["asn"], "--output_dir", tmp_path / "explicit",
          "--snr", "3.0 2.5", "--resample_data=False", cwd=tmp_path)
    strun("daskod_outlier_detection", written["asn"], "--output_dir", tmp_path / "default",
          "--resample_data=False", cwd=tmp_path)
    n = {}
    for run in ("file", "explicit", "default"):
        n[run] = 0
        for name in _products(tmp_path / "explicit"):
            with _open(tmp_path / run / name) as model:
                n[run] += int(np.count_nonzero(model.dq & 16))
    assert n["file"] == n["explicit"] > n["default"]


def test_time_series_cube_same_flags_as_the_reference(strun, tmp_path):
    sim = datasets.make_tso_cube(nints=40, shape=(16, 32), seed=3)
    cube = sim.cube
    model = stdatamodels.CubeModel(data=np.asarray(cube.sci), err=np.asarray(cube.err),
                                   dq=np.asarray(cube.dq, dtype=np.uint32))
    model.var_rnoise = np.asarray(cube.var_rnoise)
    model.meta.telescope = "JWST"
    model.meta.instrument.name = "NIRCAM"
    model.meta.instrument.detector = "NRCALONG"
    model.meta.exposure.type = "NRC_TSIMAGE"
    model.meta.exposure.nints = 40
    model.meta.visit.tsovisit = True
    model.meta.filename = "jw01234001001_01101_00001_nrcalong_calints.fits"
    path = tmp_path / model.meta.filename
    model.save(path)
    # jwst 3.0.0's step cannot open a single file given by name (its asn-id lookup passes
    # asn_n_members to a FITS open), so both steps get the opened model, as calwebb_tso3
    # gives it.
    script = (
        "import sys\n"
        "from stdatamodels.jwst import datamodels\n"
        "from jwst.outlier_detection import OutlierDetectionStep as Reference\n"
        "from daskod.jwst_step import DaskodOutlierDetectionStep as Ours\n"
        "for cls, out in ((Reference, 'ref.fits'), (Ours, 'ours.fits')):\n"
        "    with datamodels.open(sys.argv[1]) as model:\n"
        "        cls.call(model, rolling_window_width=7).save(out)\n")
    proc = subprocess.run([strun.python, "-c", script, str(path)], env=strun.env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with _open(tmp_path / "ref.fits") as ref, _open(tmp_path / "ours.fits") as ours:
        np.testing.assert_array_equal(ours.dq, ref.dq)
        np.testing.assert_array_equal(np.isnan(ours.data), np.isnan(ref.data))
        assert ours.meta.cal_step.outlier_detection == "COMPLETE"
        assert int(np.count_nonzero(ours.dq & 16)) > 0
    # ... and strun runs daskod's step on the file itself.
    strun("daskod_outlier_detection", path, "--output_dir", tmp_path / "strun",
          "--rolling_window_width", "7", cwd=tmp_path)
    (product,) = (tmp_path / "strun").glob("*_outlierdetectionstep.fits")
    with _open(product) as ours, _open(tmp_path / "ref.fits") as ref:
        np.testing.assert_array_equal(ours.dq, ref.dq)
