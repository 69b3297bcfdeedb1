"""The whole-frame spec-mode prototype: the oracle the engine is held to
(tests/test_spec_engine.py) and, through it, the science of the mode."""

from __future__ import annotations

import numpy as np
import pytest

from daskod import datasets
from daskod.exposure import Exposure
from daskod.spec import detect_spec_outliers_dense

SCENES = {
    "fixed_slit": lambda: datasets.make_nirspec_slits("fixed_slit", n_columns=120, seed=1),
    "mos2": lambda: datasets.make_nirspec_slits("mos", n_detectors=2, n_slits=2,
                                                n_columns=120, seed=2),
    "lrs": lambda: datasets.make_lrs_exposures(3, shape=(160, 64), seed=3),
}


@pytest.fixture(scope="module", params=sorted(SCENES))
def scene(request):
    return request.param, SCENES[request.param]()


def test_finds_cosmic_rays_without_flagging_the_spectra(scene):
    """Science sanity on the simulation (nods of 3 exposures): most strong cosmic rays
    where the median is defined are found; almost nothing else is (hot pixels aside)."""
    _, sim = scene
    strong = hit = false = usable = 0
    for exps in sim.by_source().values():
        res = detect_spec_outliers_dense(exps)
        for exp, dq, blot in zip(exps, res.dq, res.blots, strict=True):
            new = (dq & 16) != 0
            cr = sim.cosmic_rays[exp.name]
            covered = np.isfinite(blot)
            s = cr & (sim.cr_snr[exp.name] > 20) & covered
            strong += s.sum()
            hit += (s & new).sum()
            false += (new & ~cr & ~sim.hot_pixels[exp.name]).sum()
            usable += covered.sum()
    assert strong > 10
    assert hit / strong > 0.55
    assert false / usable < 1e-3


def test_outliers_become_nan_and_do_not_use(scene):
    _, sim = scene
    exps = next(iter(sim.by_source().values()))
    res = detect_spec_outliers_dense(exps)
    for exp, dq in zip(exps, res.dq, strict=True):
        new = ((dq & 16) != 0) & ((np.asarray(exp.dq) & 16) == 0)
        assert np.all(dq[new] & 1)
        assert np.all(dq[np.isnan(exp.sci)] & 1)
        assert np.array_equal(dq & ~np.uint32(17), np.asarray(exp.dq) & ~np.uint32(17))


def test_fewer_than_two_inputs_is_a_failed_skip():
    sim = datasets.make_nirspec_slits("mos", n_nods=1, n_slits=1, n_columns=80, seed=0)
    res = detect_spec_outliers_dense(sim.exposures)
    assert res.status == "FAILED"
    np.testing.assert_array_equal(res.dq[0], sim.exposures[0].dq)


def test_without_resampling_refuses_mixed_shapes():
    a = datasets.make_nirspec_slits("mos", n_nods=2, n_slits=2, n_columns=80, seed=0)
    exps = [a.exposures[0], a.exposures[3]]
    assert exps[0].shape != exps[1].shape
    with pytest.raises(ValueError, match="one pixel grid"):
        detect_spec_outliers_dense(exps, resample_data=False)


def test_lamp_frames_are_refused():
    sim = datasets.make_nirspec_slits("fixed_slit", n_nods=2, n_slits=1, n_columns=80,
                                      seed=0)
    exps = [e.copy_with(wcs=None) for e in sim.exposures]
    assert isinstance(exps[0], Exposure)
    with pytest.raises(ValueError, match="no sky output frame"):
        detect_spec_outliers_dense(exps)
