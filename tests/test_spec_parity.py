"""Spec-mode parity with the real reference (jwst's OutlierDetectionStep, mode "spec").

Runs only when ``$DASKOD_REFERENCE_PYTHON`` names an interpreter with ``jwst`` installed
(e.g. ``/work/jwst-venv/bin/python``). The simulated products are written by daskod; the
reference splits them per source as calwebb_spec3 does and runs the step per source
(:func:`daskod.datasets.run_reference_spec`); daskod reads the same files
(:mod:`daskod.io._jwst_spec`) and runs its whole-frame prototype and its tile work units.
The new-outlier masks (``DQ & 16`` set by the step) must be identical, and so must the
median and median-error frames the reference saves.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from daskod import datasets

REFERENCE = os.environ.get("DASKOD_REFERENCE_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REFERENCE, reason="set DASKOD_REFERENCE_PYTHON to a jwst env"),
]

SCENES = {
    "fixed_slit": lambda: datasets.make_nirspec_slits("fixed_slit", n_columns=160, seed=11),
    "mos": lambda: datasets.make_nirspec_slits("mos", n_detectors=2, n_slits=3,
                                               n_columns=140, seed=12),
    "lrs": lambda: datasets.make_lrs_exposures(3, shape=(200, 64), seed=13),
}


@pytest.fixture(scope="module", params=sorted(SCENES))
def reference_run(request, tmp_path_factory):
    pytest.importorskip("stdatamodels")
    root = tmp_path_factory.mktemp(request.param)
    files = datasets.write_spec_cal_files(SCENES[request.param](), root / "in")
    runs = {}
    for resample in (True, False):
        out = root / f"ref_{int(resample)}"
        datasets.run_reference_spec(files["asn"], out, python=REFERENCE,
                                    resample_data=resample)
        runs[resample] = out
    return request.param, _read_sources(files["asn"]), runs


def _read_sources(asn):
    """daskod's reading of the products, then each slit's arrays loaded once (the tile run
    below slices them hundreds of times)."""
    from daskod.io._jwst import gather_members
    from daskod.io._jwst_spec import read_spec_members, spec_sources

    sources = spec_sources(read_spec_members(gather_members(asn)))
    loaded = {}
    for key, exps in sources.items():
        loaded[key] = [e.copy_with(**{k: np.asarray(getattr(e, k)[...]) for k in
                                      ("sci", "err", "dq", "var_rnoise", "var_poisson",
                                       "var_flat") if getattr(e, k) is not None})
                       for e in exps]
    return loaded


def _new_outliers(dq, dq_in):
    return ((np.asarray(dq) & 16) != 0) & ((np.asarray(dq_in) & 16) == 0)


def _reference_dq(folder, exp):
    from astropy.io import fits

    crf = os.path.join(folder, exp.meta["filename"].replace("_cal.fits", "_crf.fits"))
    index = exp.meta["slit_index"]
    with fits.open(crf) as hdul:
        return hdul["DQ", 1 if index is None else index + 1].data.astype(np.uint32)


@pytest.mark.parametrize("resample_data", [True, False])
def test_new_outliers_identical_to_the_reference(reference_run, resample_data):
    from daskod.spec import detect_spec_outliers_dense, detect_spec_outliers_tiled

    name, sources, runs = reference_run
    folder = runs[resample_data]
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert list(sources) == list(summary["sources"])
    both = union = 0
    for key, exps in sources.items():
        status = summary["sources"][key]["status"]
        dense = detect_spec_outliers_dense(exps, resample_data=resample_data)
        assert dense.status == status
        tiled = detect_spec_outliers_tiled(exps, tile=16, resample_data=resample_data)
        for exp, ours, tile_dq in zip(exps, dense.dq, tiled.dq, strict=True):
            np.testing.assert_array_equal(ours, tile_dq)
            a = _new_outliers(ours, exp.dq)
            b = _new_outliers(_reference_dq(folder, exp), exp.dq)
            both += int((a & b).sum())
            union += int((a | b).sum())
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {exp.name}")
        if resample_data and status == "COMPLETE":
            from astropy.io import fits

            from daskod.io._jwst_spec import spec_intermediate_name
            from daskod.spec import group_indices

            asn = "o001" if name == "lrs" else None
            names = {spec_intermediate_name(e, "blot", asn_id=asn) for e in exps}
            names.add(spec_intermediate_name(exps[0], "median", asn_id=asn))
            names |= {spec_intermediate_name(exps[g[0]], "outlier_s2d", asn_id=asn)
                      for g in group_indices(exps)}
            assert set(os.listdir(os.path.join(folder, key))) == names

            (median,) = glob.glob(os.path.join(folder, key, "*_median.fits"))
            with fits.open(median) as hdul:
                np.testing.assert_array_equal(hdul["SCI"].data, dense.median)
                np.testing.assert_array_equal(hdul["ERR"].data, dense.median_err)
    assert union > 20
    assert both / union == 1.0
