"""Spec-mode parity with the real reference (jwst 3.0.0's OutlierDetectionStep, mode "spec"),
through daskod's production path: ``daskod run`` (the Dask engine, small tiles) on the same
``*_cal.fits`` files the reference reads.

The interpreter of the reference is the suite's (``reference_python`` in conftest.py:
``$DASKOD_REFERENCE_PYTHON``, else the cached environment ``.ci/run`` builds); without one
these tests fail: parity is part of the suite, not an option. The
simulated products are written by daskod; the reference splits them per source as
calwebb_spec3 does and runs the step per source (:func:`daskod.datasets.run_reference_spec`,
both ``resample_data`` settings in one interpreter). Checked per scene and setting: every
slit's DQ array identical (so the new-outlier masks' Jaccard index is 1.000), the file
statuses, the intermediate files (same names and model types; median, median error and
drizzled groups identical; blots within the reference's float32 blot coordinates).
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from daskod import datasets

pytestmark = pytest.mark.slow

SCENES = {
    "fixed_slit": lambda: datasets.make_nirspec_slits("fixed_slit", n_columns=128, seed=11),
    "mos": lambda: datasets.make_nirspec_slits("mos", n_detectors=2, n_slits=3,
                                               n_columns=100, seed=12),
    "lrs": lambda: datasets.make_lrs_exposures(3, shape=(200, 64), seed=13),
}
SETTINGS = {"resampled": True, "unresampled": False}


@pytest.fixture(scope="module", params=sorted(SCENES))
def runs(request, reference_python, tmp_path_factory):
    """Both tools on one scene, both settings: (name, input files, {setting: (ref, ours)})."""
    pytest.importorskip("stdatamodels")
    from daskod._run_files import run_files

    root = tmp_path_factory.mktemp(request.param)
    files = datasets.write_spec_cal_files(SCENES[request.param](), root / "in")
    datasets.run_reference_spec(files["asn"], root / "ref", python=reference_python,
                                runs={name: {"resample_data": value}
                                      for name, value in SETTINGS.items()})
    out = {}
    for name, value in SETTINGS.items():
        ours = root / "ours" / name
        run_files([files["asn"]], str(ours), params={"resample_data": value},
                  tile_size=32, save_intermediate_results=True, progress=False,
                  scheduler="threads", echo=lambda *_: None)
        out[name] = (root / "ref" / name, ours)
    return request.param, files["files"], out


def _hdus(path, ext):
    from astropy.io import fits

    with fits.open(path) as hdul:
        return {h.ver: np.array(h.data) for h in hdul if h.name == ext}, \
            hdul[0].header.get("S_OUTLIR")


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_flags_identical_to_the_reference(runs, setting):
    name, inputs, out = runs
    ref, ours = out[setting]
    both = union = 0
    for path in inputs:
        crf = os.path.basename(path).replace("_cal.fits", "_crf.fits")
        before, _ = _hdus(path, "DQ")
        theirs, their_status = _hdus(ref / crf, "DQ")
        mine, my_status = _hdus(ours / crf, "DQ")
        assert my_status == their_status == "COMPLETE"
        assert sorted(mine) == sorted(theirs) == sorted(before)
        for ver, dq in before.items():
            a = ((mine[ver] & 16) != 0) & ((dq & 16) == 0)
            b = ((theirs[ver] & 16) != 0) & ((dq & 16) == 0)
            both += int((a & b).sum())
            union += int((a | b).sum())
            np.testing.assert_array_equal(mine[ver], theirs[ver],
                                          err_msg=f"{name} {setting} {crf} slit {ver}")
    print(f"{name} {setting}: {union} new outliers, Jaccard {both / union:.3f}")
    assert union > 20
    assert both == union


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_intermediates_as_the_reference_writes_them(runs, setting):
    from astropy.io import fits

    name, _inputs, out = runs
    ref, ours = out[setting]
    theirs = {os.path.basename(p): p for p in glob.glob(str(ref / "*" / "*.fits"))}
    mine = {os.path.basename(p): p for p in glob.glob(str(ours / "*.fits"))
            if not p.endswith("_crf.fits")}
    assert set(mine) == set(theirs) and any(n.endswith("_median.fits") for n in mine)
    for fname, path in theirs.items():
        with fits.open(path) as a, fits.open(mine[fname]) as b:
            assert a[0].header["DATAMODL"] == b[0].header["DATAMODL"], fname
            for ext in ("SCI", "ERR", "WHT"):
                if ext not in a:
                    continue
                x, y = a[ext].data, b[ext].data
                if fname.endswith("_blot.fits"):  # tblot's float32 coordinates
                    np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
                    np.testing.assert_allclose(y, x, rtol=2e-4, atol=1e-6, equal_nan=True)
                else:
                    np.testing.assert_array_equal(y, x, err_msg=f"{name} {fname} {ext}")
