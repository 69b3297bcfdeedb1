"""Kernels against the formulas of docs/algorithm.md (sections 2.5, 2.6, 2.8-2.10) on hand-made
cases, including the reference's own unit scenarios (section 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from daskod import abs_deriv, flag_cr
from daskod.blot._kernels import blot_tile, median_window_for
from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import (
    apply_outlier_flags,
    flag_crs,
    flag_resampled_crs,
    match_nans_and_flags,
    parse_pair,
)
from daskod.median._kernels import nanmedian_stack
from daskod.resample._weights import build_driz_weight, compute_weight_threshold


def _slow_abs_deriv(a):
    out = np.zeros_like(a)
    ny, nx = a.shape
    for i in range(ny):
        for j in range(nx):
            best = 0.0
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                y, x = i + di, j + dj
                if 0 <= y < ny and 0 <= x < nx:
                    d = abs(a[i, j] - a[y, x])
                    if np.isfinite(d):
                        best = max(best, d)
            out[i, j] = np.nan if np.isnan(a[i, j]) else best
    return out


class TestAbsDeriv:
    def test_single_spike_is_a_cross(self):
        a = np.zeros((7, 7), np.float32)
        a[3, 3] = 5.0
        d = abs_deriv(a)
        expected = np.zeros((7, 7), np.float32)
        expected[3, 3] = expected[2, 3] = expected[4, 3] = expected[3, 2] = expected[3, 4] = 5
        np.testing.assert_array_equal(d, expected)
        assert d.dtype == np.float32

    def test_arange_ramp_gives_ncols(self):
        a = np.arange(6 * 9, dtype=np.float64).reshape(6, 9)
        np.testing.assert_array_equal(abs_deriv(a), np.full((6, 9), 9.0))

    def test_nan_only_at_the_nan_pixel_and_matches_loop(self):
        rng = np.random.default_rng(3)
        a = rng.normal(size=(12, 11)).astype(np.float32)
        a[4, 5] = np.nan
        a[0, 0] = np.inf
        d = abs_deriv(a)
        assert np.isnan(d[4, 5])
        assert np.count_nonzero(np.isnan(d)) == 1
        np.testing.assert_array_equal(d, _slow_abs_deriv(a))

    def test_flat_is_zero(self):
        assert not abs_deriv(np.full((5, 4), 3.0)).any()


class TestWeights:
    def test_threshold_robust_to_outlier_and_ignores_zeros(self):
        w = np.full((10, 10), 42.0, np.float32)
        w[0, 0] = 9000.0
        w[5:, :] = 0.0
        assert compute_weight_threshold(w, 0.7) == pytest.approx(0.7 * 42.0)

    def test_threshold_is_order_independent(self):
        rng = np.random.default_rng(0)
        w = rng.gamma(5.0, 10.0, size=(64, 64)).astype(np.float32)
        w[rng.random(w.shape) < 0.3] = 0
        w[3, 3] = np.nan
        values = w[np.isfinite(w) & (w != 0)]
        rng.shuffle(values)
        assert compute_weight_threshold(values, 0.7) == compute_weight_threshold(w, 0.7)

    def test_threshold_matches_formula(self):
        from astropy.stats import sigma_clip

        rng = np.random.default_rng(1)
        w = rng.normal(100, 5, 5000)
        w[:40] = 1000
        expected = 0.7 * np.mean(sigma_clip(w, sigma=3, maxiters=5, masked=False))
        assert compute_weight_threshold(w, 0.7) == pytest.approx(expected, rel=1e-12)

    def test_no_valid_weight_gives_nan_which_masks_nothing(self):
        thr = compute_weight_threshold(np.zeros((4, 4)), 0.7)
        assert math.isnan(thr)
        assert not (np.ones(3) < thr).any()

    def test_ivm_and_exptime(self):
        dq = np.array([[0, 1], [4, 0]], np.uint32)
        var = np.array([[4.0, 4.0], [2.0, 0.0]], np.float32)
        bad = interpret_good_bits("~DO_NOT_USE")
        w = build_driz_weight(dq, weight_type="ivm", bad_mask=bad, var_rnoise=var)
        np.testing.assert_array_equal(w, [[0.25, 0.0], [0.5, 0.0]])
        assert w.dtype == np.float32
        w = build_driz_weight(dq, weight_type="exptime", bad_mask=bad, exposure_time=30.0)
        np.testing.assert_array_equal(w, [[30.0, 0.0], [30.0, 30.0]])
        with pytest.raises(ValueError, match="weight_type"):
            build_driz_weight(dq, weight_type="bogus", bad_mask=bad)

    def test_good_bits(self):
        assert interpret_good_bits("~DO_NOT_USE") == 1
        assert interpret_good_bits(0) == 0xFFFFFFFF
        assert interpret_good_bits(None) == 0
        assert interpret_good_bits("~DO_NOT_USE+SATURATED") == 3
        with pytest.raises(ValueError, match="unknown DQ flag"):
            interpret_good_bits("~NOT_A_FLAG")


class TestFlagRule:
    def test_single_cr_of_ten_with_err_one(self):
        sci = np.zeros((9, 9), np.float32)
        sci[4, 4] = 10.0
        blot = np.zeros_like(sci)
        cr = flag_resampled_crs(sci, np.ones_like(sci), blot, snr1=5, snr2=4, scale1=1.2,
                                scale2=0.7, backg=0.0)
        assert cr.sum() == 1
        assert cr[4, 4]
        assert flag_crs(sci, np.ones_like(sci), blot, snr1=5).sum() == 1

    def test_reference_flag_cr_scenario(self):
        """jwst test_flag_cr: CRs of 1e2..1e5 flagged exactly, the 20-sigma source not."""
        rng = np.random.default_rng(720)
        sigma = 0.02
        sci = rng.normal(3.0, sigma, (20, 20)).astype(np.float32)
        sci[10, 10] += 20 * sigma
        blot = (ndimage.gaussian_filter(sci, 3) - 3).astype(np.float32)
        for (y, x), v in zip([(3, 3), (3, 7), (7, 3), (7, 7)], [1e2, 1e3, 1e4, 1e5],
                             strict=True):
            sci[y, x] += v
        err = np.full_like(sci, sigma)
        err[10, 10] = np.sqrt(sigma**2 + 20 * sigma)  # photon noise of the source
        cr = flag_cr(sci, err, blot, snr="5.0 4.0", scale="1.2 0.7", backg=3.0)
        expected = np.zeros_like(cr)
        expected[[3, 3, 7, 7], [3, 7, 3, 7]] = True
        np.testing.assert_array_equal(cr, expected)

    def test_growth_takes_neighbours_above_the_second_threshold_only(self):
        sci = np.zeros((7, 7), np.float32)
        sci[3, 3] = 10.0   # passes snr1 = 5
        sci[3, 4] = 4.5    # passes snr2 = 4 only: flagged by growth
        sci[5, 5] = 4.5    # passes snr2 but not adjacent: not flagged
        sci[2, 2] = 3.0    # adjacent, below snr2: not flagged
        cr = flag_resampled_crs(sci, np.ones_like(sci), np.zeros_like(sci), snr1=5, snr2=4,
                                scale1=1.2, scale2=0.7, backg=0.0)
        assert cr[3, 3]
        assert cr[3, 4]
        assert not cr[5, 5]
        assert not cr[2, 2]
        assert cr.sum() == 2

    def test_growth_equals_reference_convolution(self):
        from daskod.flag._kernels import _grow_3x3

        rng = np.random.default_rng(8)
        m = rng.random((37, 29)) < 0.05
        m[0, 0] = m[-1, -1] = m[0, -1] = True
        ref = ndimage.convolve(m.astype(int), np.ones((3, 3), int), mode="nearest") > 0
        np.testing.assert_array_equal(_grow_3x3(m), ref)

    def test_derivative_raises_the_threshold(self):
        sci = np.zeros((5, 5), np.float32)
        sci[2, 2] = 10.0
        blot = np.zeros_like(sci)
        blot[2, 3] = 8.0   # steep blot next to the pixel: D = 8 there
        err = np.ones_like(sci)
        cr = flag_resampled_crs(sci, err, blot, snr1=5, snr2=4, scale1=1.2, scale2=0.7,
                                backg=0.0)
        # R = 10 < 1.2 * 8 + 5 = 14.6 -> not flagged
        assert not cr[2, 2]

    def test_nan_is_never_flagged_and_nan_err_counts_as_zero(self):
        sci = np.full((5, 5), 100.0, np.float32)
        blot = np.zeros_like(sci)
        blot[0, 0] = np.nan
        sci[4, 4] = np.nan
        err = np.ones_like(sci)
        err[2, 2] = np.nan
        cr = flag_resampled_crs(sci, err, blot, snr1=5, snr2=4, scale1=1.2, scale2=0.7,
                                backg=0.0)
        assert not cr[0, 0]
        assert not cr[4, 4]
        assert cr[2, 2]

    def test_background_is_subtracted(self):
        sci = np.full((3, 3), 10.0, np.float32)
        cr = flag_resampled_crs(sci, np.ones_like(sci), np.zeros_like(sci), snr1=5, snr2=4,
                                scale1=1.2, scale2=0.7, backg=10.0)
        assert not cr.any()

    def test_parse_pair(self):
        assert parse_pair("5.0 4.0", "snr") == (5.0, 4.0)
        assert parse_pair((1.2, 0.7), "scale") == (1.2, 0.7)
        for bad in ("5.0", "a b", "5 nan", (1, 2, 3)):
            with pytest.raises(ValueError, match="snr must be two finite numbers"):
                parse_pair(bad, "snr")


class TestDQ:
    def test_apply_flags_ors_17_without_touching_input(self):
        dq = np.array([[0, 4], [1, 16]], np.uint32)
        cr = np.array([[True, True], [False, False]])
        out = apply_outlier_flags(dq, cr)
        np.testing.assert_array_equal(out, [[17, 21], [1, 16]])
        np.testing.assert_array_equal(dq, [[0, 4], [1, 16]])

    def test_match_nans_and_flags(self):
        dq = np.array([[0, 1], [0, 0]], np.uint32)
        sci = np.array([[1.0, 2.0], [np.nan, 4.0]], np.float32)
        err = np.array([[1.0, 1.0], [1.0, np.nan]], np.float32)
        new_dq, arrays = match_nans_and_flags(dq, {"sci": sci, "err": err})
        np.testing.assert_array_equal(new_dq, [[0, 1], [1, 1]])
        np.testing.assert_array_equal(np.isnan(arrays["sci"]), [[False, True], [True, True]])
        np.testing.assert_array_equal(np.isnan(arrays["err"]), [[False, True], [True, True]])
        assert sci[0, 1] == 2.0  # input untouched


class TestMedian:
    def test_equals_numpy_nanmedian_with_all_nan_columns(self):
        rng = np.random.default_rng(2)
        stack = rng.normal(size=(6, 30, 40)).astype(np.float32)
        stack[rng.random(stack.shape) < 0.2] = np.nan
        stack[:, 5, :] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            expected = np.nanmedian(stack, axis=0)
        got = nanmedian_stack(stack)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == np.float32

    def test_median_of_three_with_nan(self):
        stack = np.array([[[3.0]], [[2.0]], [[np.nan]]], np.float32)
        assert nanmedian_stack(stack)[0, 0] == 2.5


class TestBlot:
    def test_matches_tblot_rule_at_edges(self):
        """Valid for 0 <= x < nx, clamped past the last column, fill elsewhere."""
        med = np.arange(12, dtype=np.float32).reshape(3, 4)
        pts = np.array([[[0.0, 0.0], [3.5, 1.0], [-0.01, 1.0], [4.0, 1.0], [1.5, 0.5]]])
        out = blot_tile(med, pts, (0, 0), med.shape)
        assert out[0, 0] == 0.0
        assert out[0, 1] == med[1, 3]
        assert np.isnan(out[0, 2])
        assert np.isnan(out[0, 3])
        assert out[0, 4] == pytest.approx((1 + 2 + 5 + 6) / 4)

    def test_window_blot_equals_whole_blot_bitwise(self):
        rng = np.random.default_rng(4)
        med = rng.normal(size=(200, 220)).astype(np.float32)
        yy, xx = np.mgrid[0:150, 0:160].astype(float)
        pm = np.dstack([xx * 1.07 + 12.3 + 1e-4 * yy**2, yy * 0.97 + 20.7 + 1e-3 * xx])
        whole = blot_tile(med, pm, (0, 0), med.shape)
        sub = pm[40:90, 70:150]
        y0, y1, x0, x1 = median_window_for(sub, med.shape)
        part = blot_tile(med[y0:y1, x0:x1], sub, (y0, x0), med.shape)
        np.testing.assert_array_equal(part, whole[40:90, 70:150])

    def test_median_window_skips_coordinates_that_are_not_finite(self):
        yy, xx = np.mgrid[0:60, 0:80].astype(float)
        pm = np.dstack([xx * 1.5 + 10.25, yy * 0.5 + 30.75])
        assert median_window_for(pm, (200, 200)) == (28, 64, 8, 132)
        pm[0, 0] = [np.nan, np.nan]   # outside the WCS domain: both NaN
        pm[59, 79, 0] = np.inf        # one coordinate only
        pm[59, 78, 1] = np.nan
        # the other rows still reach x = 128.75 and row 59 y = 60.25: the same window
        assert median_window_for(pm, (200, 200)) == (28, 64, 8, 132)
        pm[:, 40:, 0] = np.nan       # the right half: x now ends at col 39
        assert median_window_for(pm, (200, 200)) == (28, 64, 8, 72)
        pm[:, :, 0] = np.nan
        assert median_window_for(pm, (200, 200)) is None
