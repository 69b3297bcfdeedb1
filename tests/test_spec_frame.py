"""The rectified spectral output frames and the exact pixel maps onto them."""

from __future__ import annotations

import numpy as np
import pytest

from daskod import datasets
from daskod.geometry._spec_frame import (
    nirspec_output_frame,
    nirspec_sampling_wavelengths,
    select_reference_slit,
)
from daskod.geometry._spec_frame_interp import interpolated_output_frame
from daskod.geometry._spec_pixel_map import (
    coarse_map_error,
    compute_spectral_pixel_map,
    input_pixel_range,
)
from daskod.spec._frame import build_spec_frame


def _slit_wcs(x_nodes, lam_nodes, *, nx=60, ny=12, ra=10.0):
    return datasets.make_nirspec_slit_wcs(
        shape=(ny, nx), trace=(5.5, 0.0, 0.0), pixels_per_unit=5.0,
        wavelength_nodes=(np.asarray(x_nodes, float), np.asarray(lam_nodes, float)), ra=ra,
        dec=-5.0, position_angle=20.0, unit_arcsec=0.5)


def _grid(nx, start, step):
    x = np.arange(-1.0, nx + 1.0)
    return x, start + step * (x + 1)


def test_wavelength_grid_merges_as_the_reference():
    base = _slit_wcs(*_grid(60, 1.0, 0.01))
    same = nirspec_sampling_wavelengths([base, base])
    assert same == nirspec_sampling_wavelengths([base])
    assert len(same) == 60 and np.allclose(np.diff(same), 0.01)
    # A later input entirely redder is appended after the first (a detector gap vanishes).
    red = _slit_wcs(*_grid(60, 2.0, 0.01))
    merged = nirspec_sampling_wavelengths([base, red])
    assert len(merged) == 120 and merged[59] < 1.61 and merged[60] > 2.0
    # An overlapping input adds only its values outside the current range.
    shifted = _slit_wcs(*_grid(60, 1.0 + 0.105, 0.01))
    merged = nirspec_sampling_wavelengths([base, shifted])
    assert merged[:60] == same
    assert len(merged) == 60 + 11 and np.all(np.diff(merged) > 0)   # 1.605 ... 1.705
    # Of two points closer than a tenth of the first input's smallest step, the earlier goes
    # (here the first input's own last point).
    near = _slit_wcs(*_grid(60, 1.0003, 0.01))
    merged = nirspec_sampling_wavelengths([base, near])
    assert len(merged) == 60 and np.min(np.diff(merged)) >= 0.001
    assert merged[-1] == pytest.approx(1.6003) and merged[-2] == pytest.approx(1.59)


def test_nirspec_frame_wavelength_table_keeps_the_right_end_quirk():
    wcs = _slit_wcs(*_grid(60, 1.0, 0.01))
    frame = nirspec_output_frame([wcs], 0, np.ones((12, 60), np.float32))
    nx = frame.shape[1]
    assert nx == 60
    lam = frame.wcs.get_transform("detector", "slit_frame")
    _, _, left = lam(-0.5, 0.0)
    _, _, right = lam(nx - 0.5, 0.0)
    centres = np.array(nirspec_sampling_wavelengths([wcs]))
    assert left == pytest.approx(centres[0] - 0.005)
    # The reference extrapolates the last half pixel from lam[-2] by (n - 0.5) steps.
    assert right == pytest.approx(centres[-2] + 0.01 * (nx - 0.5))


@pytest.fixture(scope="module")
def fixed_slit():
    return datasets.make_nirspec_slits("fixed_slit", n_columns=120, seed=4)


def test_every_input_pixel_lands_inside_the_frame(fixed_slit):
    exps = fixed_slit.by_source()["1"]
    frame = build_spec_frame(exps, bad_mask=1)
    ny, nx = frame.shape
    lo_y, hi_y = np.inf, -np.inf
    for exp in exps:
        pm = compute_spectral_pixel_map(exp.wcs, frame, exp.shape)
        finite = np.isfinite(pm.X)
        assert np.all(pm.X[finite] > -0.5) and np.all(pm.X[finite] < nx - 0.5)
        lo_y, hi_y = min(lo_y, np.nanmin(pm.Y)), max(hi_y, np.nanmax(pm.Y))
    assert lo_y > -0.5 and hi_y < ny - 0.5
    assert (hi_y - lo_y) > ny - 4        # centred, at most a pixel or two of margin


def test_reference_slit_is_the_first_with_enough_good_pixels():
    empty = np.full((10, 20), np.nan, np.float32)
    few = np.zeros((10, 20), np.float32)
    few[0, :50 % 20] = 1.0
    good = np.ones((10, 20), np.float32)
    dq = np.zeros((10, 20), np.uint32)
    assert select_reference_slit([(empty, dq), (few, dq), (good, dq)], 1) == 2
    assert select_reference_slit([(good, dq | 1), (empty, dq)], 1) == 0   # none: the first
    assert select_reference_slit([(good, dq | 4), (empty, dq)], 1) == 0   # bit 4 is good


def test_pixel_map_is_the_full_wcs_chain_with_the_input_bounding_box():
    sim = datasets.make_lrs_exposures(2, seed=2)
    exps = sim.exposures
    frame = build_spec_frame(exps, bad_mask=1)
    assert frame.kind == "interpolated"
    exp = exps[1]
    pm = compute_spectral_pixel_map(exp.wcs, frame, exp.shape)
    assert pm.is_full
    ny, nx = exp.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    X, Y = frame.wcs.backward_transform(*exp.wcs(x, y))
    np.testing.assert_array_equal(pm.X, X)
    np.testing.assert_array_equal(pm.Y, Y)
    assert np.isnan(pm.X[:, 0]).all()            # outside the bounding box
    world = exp.wcs(x, y, with_bounding_box=False)
    assert np.isfinite(frame.wcs.backward_transform(*world)[0][:, 0]).any()


def test_lrs_frame_runs_blue_to_red_downwards_and_round_trips():
    sim = datasets.make_lrs_exposures(3, seed=1)
    frame = interpolated_output_frame([e.wcs for e in sim.exposures], dispersion_axis=2,
                                      exp_type="MIR_LRS-FIXEDSLIT")
    n_wave, n_spatial = frame.shape
    assert n_wave > n_spatial
    y = np.arange(n_wave, dtype=float)
    _, _, lam = frame.wcs(np.full(n_wave, n_spatial / 2), y)
    assert np.all(np.diff(lam) < 0)
    x, yy = np.meshgrid(np.arange(n_spatial, dtype=float), y)
    xb, yb = frame.world_to_pixel(*frame.wcs(x, yy))
    assert np.max(np.abs(xb - x)) < 1e-6 and np.max(np.abs(yb - yy)) < 1e-6
    other = interpolated_output_frame([e.wcs for e in sim.exposures], dispersion_axis=2,
                                      exp_type="OTHER")
    _, _, lam2 = other.wcs(np.full(n_wave, n_spatial / 2), y)
    assert np.all(np.diff(lam2) > 0)


def test_coarse_spline_maps_are_not_good_enough_for_merged_wavelength_grids():
    sim = datasets.make_nirspec_slits("mos", n_detectors=2, n_columns=160, seed=2,
                                      wavelength_jitter=0.4)
    exps = next(iter(sim.by_source().values()))
    frame = build_spec_frame(exps, bad_mask=1)
    errors = [coarse_map_error(e.wcs, frame, e.shape, stepsize=16) for e in exps]
    assert max(errors) > 0.05             # output pixels: flags would move
    assert min(errors) < 1e-6             # the grid's own input: the map is linear


def test_input_pixel_range_rounds_like_resample_range():
    assert input_pixel_range(None, (10, 20)) == (0, 19, 0, 9)
    assert input_pixel_range(((-0.5, 19.5), (-0.5, 9.5)), (10, 20)) == (0, 19, 0, 9)
    assert input_pixel_range(((13.7, 57.7), (5.5, 247.5)), (256, 72)) == (14, 58, 6, 248)
    assert input_pixel_range(((3.2, 99.0), (-4.0, 3.0)), (10, 20)) == (3, 19, 0, 3)
