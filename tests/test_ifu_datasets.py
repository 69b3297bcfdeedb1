"""The IFU simulator: reproducible, an exact 3-D WCS round trip, gaps, truth consistent."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from daskod import datasets
from daskod.flag._dq import DO_NOT_USE, NON_SCIENCE


@pytest.fixture(scope="module")
def sim():
    return datasets.make_ifu_exposures(3, shape=(96, 112), seed=3)


def _pixels(shape):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return xx.astype(float), yy.astype(float)


def test_seeded_reproducible_and_seed_matters():
    a = datasets.make_ifu_exposures(2, shape=(64, 80), seed=7)
    b = datasets.make_ifu_exposures(2, shape=(64, 80), seed=7)
    c = datasets.make_ifu_exposures(2, shape=(64, 80), seed=8)
    for ea, eb in zip(a.exposures, b.exposures, strict=True):
        np.testing.assert_array_equal(ea.sci, eb.sci)
        np.testing.assert_array_equal(ea.dq, eb.dq)
    np.testing.assert_array_equal(a.cr_mask[1], b.cr_mask[1])
    assert not np.array_equal(a.exposures[0].sci, c.exposures[0].sci, equal_nan=True)
    assert not np.array_equal(a.bad_pixels, c.bad_pixels)


@pytest.mark.parametrize("instrument", ["MIRI", "NIRSPEC"])
def test_wcs_round_trip_on_slice_pixels(instrument):
    sim = datasets.make_ifu_exposures(2, shape=(80, 96), seed=1, instrument=instrument,
                                      roll_deg=12.0)
    for exp in sim.exposures:
        assert exp.wcs.world_n_dim == 3
        assert exp.wcs.output_frame.axes_type[2] == "SPECTRAL"
        x, y = _pixels(exp.shape)
        ra, dec, lam = exp.wcs(x, y, with_bounding_box=False)
        on_slice = np.isfinite(lam)
        assert 0.5 < on_slice.mean() < 0.95
        bx, by = exp.wcs.backward_transform(ra[on_slice], dec[on_slice], lam[on_slice])
        assert np.max(np.abs(bx - x[on_slice])) < 1e-6
        assert np.max(np.abs(by - y[on_slice])) < 1e-6
        # The WCS pickles (process and distributed schedulers ship it).
        copy = pickle.loads(pickle.dumps(exp.wcs))
        np.testing.assert_array_equal(copy(x[5], y[5], with_bounding_box=False)[2], lam[5])


def test_dispersion_axis_follows_instrument():
    for instrument, diffaxis in (("MIRI", 1), ("NIRSPEC", 0)):
        sim = datasets.make_ifu_exposures(1, shape=(80, 96), seed=2, instrument=instrument)
        exp = sim.exposures[0]
        assert sim.diffaxis == diffaxis
        x, y = _pixels(exp.shape)
        lam = exp.wcs(x, y, with_bounding_box=False)[2]
        along_y = np.nanmedian(np.abs(np.diff(lam, axis=0)))
        along_x = np.nanmedian(np.abs(np.diff(lam, axis=1)))
        # MIRI disperses along y (axis 0), NIRSpec along x.
        assert (along_y > 10 * along_x) == (diffaxis == 1)
        assert exp.detector == ("MIRIFUSHORT" if instrument == "MIRI" else "NRS1")
        assert exp.instrument == instrument


def test_gaps_are_nan_with_dq_513(sim):
    for exp in sim.exposures:
        x, y = _pixels(exp.shape)
        gap = ~np.isfinite(exp.wcs(x, y, with_bounding_box=False)[2])
        assert gap.any()
        assert np.all(exp.dq[gap] == DO_NOT_USE | NON_SCIENCE)
        for arr in (exp.sci, exp.err, exp.var_rnoise, exp.var_poisson):
            assert np.all(np.isnan(arr[gap]))
        # Off the gaps only the dead pixels are unusable.
        usable = (exp.dq & DO_NOT_USE) == 0
        assert np.all(np.isfinite(exp.sci[usable]))
        assert np.count_nonzero(~usable & ~gap) == 4


def test_noise_arrays_consistent(sim):
    for exp in sim.exposures:
        ok = np.isfinite(exp.err)
        np.testing.assert_allclose(exp.err[ok] ** 2, exp.var_rnoise[ok] + exp.var_poisson[ok],
                                   rtol=1e-5)


def test_truth_consistent_with_data(sim):
    exps = sim.exposures
    for k, exp in enumerate(exps):
        mask, snr = sim.cr_mask[k], sim.cr_snr[k]
        assert mask.sum() >= 30
        assert np.all(snr[mask] >= 1.4) and np.all(snr[~mask] == 0)
        assert not (mask & sim.bad_pixels).any()
        # Against another exposure's same pixel, the hits stand out by about their snr
        # (the sky differs by the dither, so compare only where the scene is faint).
        other = exps[(k + 1) % len(exps)]
        faint = mask & (exp.var_poisson < 60) & (other.var_poisson < 60) & ~sim.cr_mask[
            (k + 1) % len(exps)]
        excess = (exp.sci - other.sci)[faint] / exp.err[faint]
        assert np.median(excess / snr[faint]) == pytest.approx(1.0, abs=0.25)
        # Line cores: brighter than the continuum around them, and on slice pixels.
        core = sim.line_core_mask[k]
        assert 10 <= core.sum() <= 200
        assert np.all(np.isfinite(exp.sci[core]))
        assert np.nanmedian(exp.sci[core]) > 5 * np.nanmedian(exp.sci)
    # Hot pixels: the same pixels, high in every exposure, DQ clean.
    assert sim.bad_pixels.sum() == 6
    for exp in exps:
        assert np.all(exp.dq[sim.bad_pixels] == 0)
        assert np.all((exp.sci[sim.bad_pixels] - np.nanmedian(exp.sci))
                      > 20 * exp.err[sim.bad_pixels])


def test_store_writes_zarr(tmp_path):
    import zarr

    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=4, store=tmp_path / "sim.zarr")
    ref = datasets.make_ifu_exposures(2, shape=(64, 80), seed=4)
    assert isinstance(sim.exposures[1].sci, zarr.Array)
    np.testing.assert_array_equal(sim.exposures[1].sci[...], ref.exposures[1].sci)


def test_bad_arguments():
    with pytest.raises(ValueError, match="instrument"):
        datasets.make_ifu_exposures(2, instrument="NIRCAM")
    with pytest.raises(ValueError, match="n_exposures"):
        datasets.make_ifu_exposures(0)
    with pytest.raises(ValueError, match="pixels per slice"):
        datasets.make_ifu_exposures(2, shape=(64, 30), n_slices=12)
