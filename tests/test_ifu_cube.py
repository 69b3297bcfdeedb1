"""IFU cube method: kernels by hand, science on the simulator, chunking/scheduler invariance,
bad input."""

from __future__ import annotations

import math

import dask
import numpy as np
import pytest
import zarr
from astropy.modeling import models

from daskod import datasets
from daskod._exceptions import WCSError
from daskod._result import OutlierResult
from daskod.engine._run import run_mode
from daskod.exposure import Exposure
from daskod.ifu._cube_kernels import (
    CubeGrid,
    accumulate_cube,
    blot_points,
    build_grid,
    plane_to_sky,
    point_weights,
    sky_to_plane,
)
from daskod.modes.ifu import IFUParams, IFUPlan

#: The scale pair that keeps the point source's line cores unflagged (see test below).
IFU_SCALE = (2.4, 1.2)


@pytest.fixture(scope="module")
def sim():
    return datasets.make_ifu_exposures(3, seed=0)


class _Run:
    """What the tests read of a run: the grid, the result."""

    def __init__(self, result):
        self.result = result
        self.grid = result.ifu["cube"]["grid"]


def run_cube(exposures, root, *, scheduler="synchronous", eager=True, scale=IFU_SCALE,
             weighting="emsm", plane_chunk=None, tile=None, roi=None, spatial_scale=None,
             spectral_scale=None, maskpt=0.7):
    """The cube method through the engine, with the chunk layout forced when given."""
    plan = IFUPlan(exposures, IFUParams(ifu_method="cube", cube_weighting=weighting,
                                        cube_roi=roi, cube_spatial_scale=spatial_scale,
                                        cube_spectral_scale=spectral_scale),
                   snr="5.0 4.0", scale=scale, backg=0.0, maskpt=maskpt, good_bits=None,
                   tile_size=None, save_intermediate=False)
    if plane_chunk is not None or tile is not None:
        plan.layout = lambda budget: (setattr(plan, "per_task", budget.per_task_bytes)
                                      or {"planes": plane_chunk, "side": tile})
    out = run_mode(plan, scheduler=scheduler, memory_limit="2GiB", tile_size=None,
                   store=str(root), storage_options=None, compute=eager, in_memory=True,
                   keep_store=False, overwrite_store=True, progress=False)
    result = OutlierResult(status="COMPLETE", params={}, exposures=plan.items, dq=out["dq"],
                           median=out["median"], n_flagged=out["counts"], ifu=out["extras"]["ifu"],
                           work=out["work"], store=out["store"])
    if eager:
        dq = [np.asarray(d) for d in result.dq]
        median = np.asarray(result.median)
    else:
        *dq, median = dask.compute(*result.dq, result.median, scheduler="synchronous")
    return _Run(result), dq, median


def scores(sim, dq):
    out = {"strong": 0, "strong_found": 0, "core": 0, "core_flagged": 0}
    for k, d in enumerate(dq):
        flagged = (d & 16) != 0
        strong = sim.cr_snr[k] > 10
        core = sim.line_core_mask[k] & ~sim.cr_mask[k]
        out["strong"] += int(strong.sum())
        out["strong_found"] += int((strong & flagged).sum())
        out["core"] += int(core.sum())
        out["core_flagged"] += int((core & flagged).sum())
    return out


# --- kernels, by hand -------------------------------------------------------------------

def _grid(**kw):
    base = dict(ra0=10.0, dec0=20.0, xi0=0.0, eta0=0.0, scale=1.0, wave0=5.0, dwave=0.1,
                shape=(3, 4, 5), roi=(1.5, 0.1), weighting="emsm")
    base.update(kw)
    return CubeGrid(**base)


def test_tangent_plane_round_trip():
    xi = np.array([0.0, 3.2, -7.5, 0.01])
    eta = np.array([0.0, -1.1, 4.0, 12.0])
    ra, dec = plane_to_sky(xi, eta, 359.999, -30.0)
    back = sky_to_plane(ra, dec, 359.999, -30.0)
    np.testing.assert_allclose(back[0], xi, atol=1e-9)
    np.testing.assert_allclose(back[1], eta, atol=1e-9)
    # One arcsec north is one arcsec of declination.
    assert plane_to_sky(np.array([0.0]), np.array([1.0]), 10.0, 20.0)[1][0] == pytest.approx(
        20.0 + 1 / 3600, abs=1e-12)


def test_one_point_spreads_with_the_documented_weights():
    grid = _grid(roi=(1.5, 0.15))
    # One point at xi = 1.25, eta = 2.0, on plane 1.
    num, den = accumulate_cube(np.array([1.25]), np.array([2.0]), np.array([5.1]),
                               np.array([10.0]), grid, (0, 3))
    touched = np.argwhere(den > 0)
    # Spatial roi 1.5 spaxels, spectral roi 1.5 planes: planes 0..2, spaxels with r <= 1.5.
    for p, j, i in touched:
        d2xy = (i - 1.25) ** 2 + (j - 2.0) ** 2
        d2w = (p - 1.0) ** 2
        assert d2xy <= 1.5**2
        assert den[p, j, i] == pytest.approx(math.exp(-(d2xy + d2w) / 1.5))
    expected = sum(1 for p in range(3) for j in range(4) for i in range(5)
                   if (i - 1.25) ** 2 + (j - 2.0) ** 2 <= 2.25)
    assert len(touched) == expected
    np.testing.assert_allclose(num[den > 0] / den[den > 0], 10.0)
    # msm: 1 / d^2 (floored).
    w = point_weights(np.array([0.0, 0.25, 1.0]), np.array([0.0, 0.0, 1.0]), "msm", 1.0)
    np.testing.assert_allclose(w, [1e6, 4.0, 0.5])


def test_weighted_mean_of_two_points_and_chunk_restriction():
    grid = _grid(roi=(0.6, 0.05))
    xi = np.array([2.0, 2.3, 4.0])
    eta = np.array([1.0, 1.0, 3.0])
    wave = np.array([5.2, 5.2, 5.0])
    flux = np.array([1.0, 4.0, 7.0])
    num, den = accumulate_cube(xi, eta, wave, flux, grid, (0, 3))
    w1, w2 = 1.0, math.exp(-0.09 / 0.6)
    assert num[2, 1, 2] / den[2, 1, 2] == pytest.approx((w1 * 1 + w2 * 4) / (w1 + w2))
    assert den[0, 3, 4] == pytest.approx(1.0)
    # Computing planes [2, 3) alone gives bit-identical sums for those planes.
    num2, den2 = accumulate_cube(xi, eta, wave, flux, grid, (2, 3))
    np.testing.assert_array_equal(num2[0], num[2])
    np.testing.assert_array_equal(den2[0], den[2])


def test_blot_is_exp_distance_weighted_mean_within_one_pixel():
    x = np.array([2.0, 2.5, 3.9, 10.0])
    y = np.array([1.0, 1.5, 1.0, 1.0])
    f = np.array([2.0, 6.0, 100.0, 50.0])
    blot = blot_points(x, y, f, (0, 4, 0, 5))
    # Pixel (y=1, x=2): point 0 at d=0, point 1 at d=sqrt(0.5); point 2 is 1.9 px away.
    w0, w1 = 1.0, math.exp(-math.sqrt(0.5))
    assert blot[1, 2] == pytest.approx((2 * w0 + 6 * w1) / (w0 + w1), rel=1e-6)
    # Pixel (y=1, x=4) sees only point 2 (d = 0.1); the far point never contributes.
    assert blot[1, 4] == pytest.approx(100.0)
    assert np.isnan(blot[3, 0])
    # The box offset is honoured: the same points onto a shifted box.
    shifted = blot_points(x + 10, y + 20, f, (20, 24, 10, 15))
    np.testing.assert_array_equal(shifted, blot)


def test_grid_from_band_statistics_by_hand():
    """Dispersion along axis 0 (wavelength steps 0.01 there); sky steps 0.2 along axis 1."""
    rng = np.random.default_rng(0)
    square = np.array([[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 2.0]])
    band = {"y0": 0, "y1": 10, "n": 400, "xi": (-1.0, 1.0), "eta": (-0.5, 1.5),
            "wave": (5.0, 6.0), "hull": square,
            "wave0": np.full(50, 0.01), "wave1": rng.uniform(0, 1e-4, 50),
            "sky0": rng.uniform(0, 1e-3, 50), "sky1": np.full(50, 0.2)}
    grid = build_grid([[band]], 10.0, 20.0, spatial_scale=None, spectral_scale=None,
                      roi=None, weighting="msm")
    assert grid.scale == 0.2 and grid.dwave == 0.01
    assert grid.shape == (101, 11, 11)
    np.testing.assert_allclose([grid.xi[0], grid.xi[-1]], [-1.0, 1.0])
    np.testing.assert_allclose([grid.eta[0], grid.eta[-1]], [-0.5, 1.5])
    # 400 points over 1.0 in wavelength: 4 per step of 0.01 over an area of 4 arcsec^2, so
    # the mean spacing sqrt(4 / 4) = 1 arcsec is the spatial region of interest.
    assert grid.roi == (1.0, 0.01)
    assert grid.weighting == "msm"


def test_weight_threshold_masks_the_median(tmp_path):
    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=3)
    run, _dq, median = run_cube(sim.exposures, tmp_path, maskpt=1e6)
    store = zarr.open_group(str(tmp_path), mode="r")
    weights = np.asarray(store["ifu_cube/single"][:, 1])
    assert np.all(np.asarray(store["ifu_cube/thresholds"][...]) > np.nanmax(weights))
    assert np.isnan(median).all()
    assert [int(n) for n in run.result.n_flagged] == [0, 0]


# --- science on the simulator -----------------------------------------------------------

def test_recall_and_line_cores(sim, tmp_path):
    _, dq, median = run_cube(sim.exposures, tmp_path)
    s = scores(sim, dq)
    assert s["strong"] > 50
    assert s["strong_found"] / s["strong"] >= 0.95
    assert s["core"] > 50
    assert s["core_flagged"] <= 0.01 * s["core"]
    # Outliers carry DO_NOT_USE | OUTLIER; gaps keep their 513 and are never outliers.
    for k, d in enumerate(dq):
        gap = (np.asarray(sim.exposures[k].dq) & 512) != 0
        assert np.all(d[gap] & 513 == 513) and not np.any(d[gap] & 16)
        flagged = (d & 16) != 0
        assert np.all(d[flagged] & 1)
    assert np.isfinite(median).mean() > 0.5


def test_reference_scale_overflags_line_cores(sim, tmp_path):
    """The reference's imaging defaults (scale 1.2 0.7) flag bright line cores: the blot of a
    cube built from an undersampled point source underestimates the line peak (the known
    over-flagging of the old IFU method, jwst #4231/#5965). A larger ``scale`` fixes it."""
    _, dq, _ = run_cube(sim.exposures, tmp_path, scale=(1.2, 0.7))
    s = scores(sim, dq)
    assert s["strong_found"] / s["strong"] >= 0.95
    assert s["core_flagged"] > 0.01 * s["core"]


def test_median_cube_puts_the_point_source_where_it_is(sim, tmp_path):
    run, _, median = run_cube(sim.exposures, tmp_path)
    grid = run.grid
    assert median.shape == grid.shape
    # The simulator places the point source at (0.08, -0.05) arcsec of its tangent plane.
    sky = models.Pix2Sky_TAN() | models.RotateNative2Celestial(80.5, -69.5, 180.0)
    ra, dec = sky(0.08 / 3600, -0.05 / 3600)
    xi, eta = sky_to_plane(np.array([ra]), np.array([dec]), grid.ra0, grid.dec0)
    layout = sim.layout
    lam_line = min(layout.lam0) - layout.d_ref * max(layout.dlam) + 0.3 * (
        2 * layout.d_ref * min(layout.dlam))
    plane = int(round((lam_line - grid.wave0) / grid.dwave))
    j, i = np.unravel_index(np.nanargmax(median[plane]), median[plane].shape)
    assert abs(grid.xi[i] - xi[0]) <= 1.5 * grid.scale
    assert abs(grid.eta[j] - eta[0]) <= 1.5 * grid.scale


def test_msm_weighting_smooths_less_than_emsm(sim, tmp_path):
    """Modified Shepard weights (1/d^2) smooth the cube less than emsm, so at the reference's
    scale (1.2 0.7) the blot keeps the line peaks better: far fewer line-core flags."""
    _, dq_msm, _ = run_cube(sim.exposures, tmp_path / "msm", weighting="msm", scale=(1.2, 0.7))
    _, dq_emsm, _ = run_cube(sim.exposures, tmp_path / "emsm", scale=(1.2, 0.7))
    msm, emsm = scores(sim, dq_msm), scores(sim, dq_emsm)
    assert msm["strong_found"] / msm["strong"] >= 0.95
    assert 2 * msm["core_flagged"] < emsm["core_flagged"]


# --- same answer for any chunking and scheduler -----------------------------------------

def test_chunked_equals_unchunked_and_schedulers_agree(tmp_path):
    sim = datasets.make_ifu_exposures(3, shape=(96, 112), seed=5, roll_deg=8.0)
    _, dq0, med0 = run_cube(sim.exposures, tmp_path / "a", tile=112)
    variants = [dict(plane_chunk=7, tile=24, scheduler="threads"),
                dict(plane_chunk=1, tile=50, scheduler="synchronous"),
                dict(plane_chunk=13, tile=32, scheduler="threads", eager=False)]
    for n, kw in enumerate(variants):
        _, dq, med = run_cube(sim.exposures, tmp_path / f"v{n}", **kw)
        np.testing.assert_array_equal(med, med0)
        for a, b in zip(dq, dq0, strict=True):
            np.testing.assert_array_equal(a, b)
    assert sum(int(((d & 16) != 0).sum()) for d in dq0) > 20


def test_nirspec_layout_and_small_budget_chunking(tmp_path):
    """Dispersion along x (NIRSpec-like); a budget far below the cube size splits the work
    into many plane chunks and small tiles, with the flags of an unchunked run."""
    sim = datasets.make_ifu_exposures(3, shape=(112, 128), seed=4, instrument="NIRSPEC")
    _, dq, med = run_cube(sim.exposures, tmp_path / "one", plane_chunk=10_000, tile=128)
    s = scores(sim, dq)
    assert s["strong_found"] / s["strong"] >= 0.95
    # ~90 core pixels here, so one flag is already 1%; the 1% bound is checked on MIRI above
    # and aggregated over realisations in benchmarks/ifu_methods.py.
    assert s["core_flagged"] <= 0.02 * s["core"]
    small, dq_small, med_small = run_cube(sim.exposures, tmp_path / "small", plane_chunk=3,
                                          tile=20, scheduler="threads")
    assert small.result.median.shape[0] > 4 * 3
    np.testing.assert_array_equal(med_small, med)
    for a, b in zip(dq_small, dq, strict=True):
        np.testing.assert_array_equal(a, b)
    chunks = zarr.open_array(str(tmp_path / "small"), path="ifu_cube/median", mode="r").chunks
    assert chunks[0] == 3


def test_world_axis_order_comes_from_the_frame(tmp_path):
    """A WCS giving (wavelength, ra, dec) instead of (ra, dec, wavelength): same flags."""
    from astropy import coordinates as coord
    from astropy import units as u
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=6)
    spec = cf.SpectralFrame(name="spectral", axes_order=(0,), unit=(u.um,),
                            axes_names=("wavelength",))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="sky", axes_order=(1, 2),
                            unit=(u.deg, u.deg))
    swapped = []
    for exp in sim.exposures:
        det = exp.wcs.input_frame
        transform = exp.wcs.forward_transform | models.Mapping((2, 0, 1))
        wcs = WCS([(det, transform), (cf.CompositeFrame([spec, sky], name="world"), None)])
        swapped.append(exp.copy_with(wcs=wcs))
    _, dq_a, med_a = run_cube(sim.exposures, tmp_path / "a")
    _, dq_b, med_b = run_cube(swapped, tmp_path / "b")
    np.testing.assert_array_equal(med_a, med_b)
    for a, b in zip(dq_a, dq_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_processes_equal_synchronous(tmp_path):
    """Worker processes get pickled WCS copies and the inputs copied into the store."""
    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=8)
    _, dq_a, med_a = run_cube(sim.exposures, tmp_path / "sync")
    _, dq_b, med_b = run_cube(sim.exposures, tmp_path / "proc", scheduler="processes",
                              plane_chunk=20, tile=32)
    np.testing.assert_array_equal(med_a, med_b)
    for a, b in zip(dq_a, dq_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified(tmp_path):
    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=9)
    before = [(e.sci.copy(), e.dq.copy()) for e in sim.exposures]
    run_cube(sim.exposures, tmp_path, scheduler="threads")
    for (sci, dq), exp in zip(before, sim.exposures, strict=True):
        np.testing.assert_array_equal(exp.sci, sci)
        np.testing.assert_array_equal(exp.dq, dq)


def test_public_api_runs_the_cube_method(sim, tmp_path):
    """``detect_outliers(mode="ifu", ifu_method="cube")`` gives the flags of the engine."""
    import daskod

    _, dq, median = run_cube(sim.exposures, tmp_path / "direct")
    result = daskod.detect_outliers(sim.exposures, mode="ifu", ifu_method="cube",
                                    scale="2.4 1.2", tile_size=40, scheduler="threads")
    for a, b in zip(result.dq, dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert list(result.n_flagged) == [int(((d & 16) != 0).sum()) for d in dq]
    np.testing.assert_array_equal(np.asarray(result.median), median)


def test_given_sampling_and_roi_are_used(tmp_path):
    sim = datasets.make_ifu_exposures(3, shape=(96, 112), seed=2)
    run, dq, _ = run_cube(sim.exposures, tmp_path, spatial_scale=0.2, spectral_scale=0.0016,
                          roi=(0.25, 0.002))
    auto, _, _ = run_cube(sim.exposures, tmp_path / "auto")
    assert run.grid.scale == 0.2 and run.grid.dwave == 0.0016
    assert run.grid.roi == (0.25, 0.002)
    assert auto.grid.scale == pytest.approx(0.13, rel=1e-6)  # the simulator's pixel scale
    assert auto.grid.dwave == pytest.approx(0.0008, rel=0.03)
    assert run.grid.shape[0] < auto.grid.shape[0] and run.grid.shape[2] < auto.grid.shape[2]
    assert all(((d & 16) != 0).sum() > 0 for d in dq)


def test_unusable_exposure_gets_no_flags_and_breaks_nothing(tmp_path):
    sim = datasets.make_ifu_exposures(3, shape=(64, 80), seed=3)
    # As in calibrated products: DO_NOT_USE pixels are NaN.
    dead = sim.exposures[2].copy_with(dq=sim.exposures[2].dq | 1,
                                      sci=np.full(sim.exposures[2].shape, np.nan, np.float32))
    _, dq, median = run_cube([*sim.exposures[:2], dead], tmp_path)
    assert not np.any(dq[2] & 16)
    assert np.all(dq[2] & 1)
    assert np.isfinite(median).any()


# --- bad input ----------------------------------------------------------------------------

def test_wcs_without_spectral_axis_is_refused_by_name(tmp_path):
    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=1)
    flat = datasets.make_detector_wcs(ra=80.5, dec=-69.5, shape=(64, 80), distortion=False)
    bad = sim.exposures[1].copy_with(wcs=flat, name="flat_one")
    with pytest.raises(WCSError, match=r"flat_one.*no spectral axis") as info:
        run_cube([sim.exposures[0], bad], tmp_path)
    assert info.value.exposure == "flat_one"
    nowcs = Exposure(sci=bad.sci, err=bad.err, dq=bad.dq, name="bare")
    with pytest.raises(WCSError, match="bare"):
        run_cube([sim.exposures[0], nowcs], tmp_path)


def test_absurd_sampling_is_refused_before_work(tmp_path):
    from daskod._exceptions import OutputTooLargeError

    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=1)
    with pytest.raises(OutputTooLargeError, match="cube_spatial_scale"):
        run_cube(sim.exposures, tmp_path, spatial_scale=1e-5, spectral_scale=1e-9)


@pytest.mark.parametrize(("kw", "match"), [
    ({"weighting": "gauss"}, "cube_weighting"),
    ({"roi": (0.2, -1.0)}, "cube_roi"),
    ({"roi": (0.2,)}, "cube_roi"),
    ({"spatial_scale": -0.1}, "cube_spatial_scale"),
    ({"spectral_scale": float("nan")}, "cube_spectral_scale"),
])
def test_bad_parameters(tmp_path, kw, match):
    sim = datasets.make_ifu_exposures(2, shape=(64, 80), seed=1)
    with pytest.raises(ValueError, match=match):
        run_cube(sim.exposures, tmp_path, **kw)
