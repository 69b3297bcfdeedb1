"""Spec-mode kernels: drizzling errors, the pixel range, blotting median and error, flags."""

from __future__ import annotations

import numpy as np
import pytest

from daskod.resample._kernels import drizzle_tile_with_error
from daskod.spec._kernels import (
    blot_pair,
    flag_spec_resampled,
    flag_spec_unresampled,
    mask_below_threshold,
)


def _identity_map(ny, nx, dx=0.0, dy=0.0):
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    return np.dstack([x + dx, y + dy])


def test_errors_are_drizzled_as_a_weighted_linear_mean():
    rng = np.random.default_rng(0)
    ny, nx = 12, 15
    d1, d2 = rng.normal(5, 1, (ny, nx)), rng.normal(5, 1, (ny, nx))
    e1, e2 = rng.uniform(0.1, 1, (ny, nx)), rng.uniform(0.1, 1, (ny, nx))
    w1, w2 = rng.uniform(1, 3, (ny, nx)), rng.uniform(1, 3, (ny, nx))
    pm = _identity_map(ny, nx)
    img, wht, err = drizzle_tile_with_error(
        [(d1, e1, w1, pm, 1.0, None), (d2, e2, w2, pm, 1.0, None)], (ny, nx))
    np.testing.assert_allclose(wht, w1 + w2, rtol=1e-6)
    np.testing.assert_allclose(img, (w1 * d1 + w2 * d2) / (w1 + w2), rtol=1e-5)
    np.testing.assert_allclose(err, (w1 * e1 + w2 * e2) / (w1 + w2), rtol=1e-5)
    # Not a variance propagation: sqrt(sum w^2 e^2) / sum w would be smaller.
    assert np.all(err > np.sqrt(w1**2 * e1**2 + w2**2 * e2**2) / (w1 + w2))


def test_pixel_range_is_not_the_same_as_cropping():
    """Drizzle places pixel corners between neighbouring centres: next to a NaN neighbour
    (outside a WCS bounding box) a pixel is drizzled differently than at a cropped edge.
    One pixel of context is enough to reproduce the whole-array result."""
    ny, nx = 10, 16
    data = np.ones((ny, nx), np.float32)
    err = np.full((ny, nx), 0.5, np.float32)
    w = np.ones((ny, nx), np.float32)
    pm = _identity_map(ny, nx, dx=0.3, dy=0.2)
    pm[:, :4] = np.nan                       # outside the bounding box
    whole = drizzle_tile_with_error([(data, err, w, pm, 1.0, (4, nx - 1, 0, ny - 1))],
                                    (ny, nx))
    cropped = drizzle_tile_with_error([(data[:, 4:], err[:, 4:], w[:, 4:], pm[:, 4:], 1.0,
                                        None)], (ny, nx))
    context = drizzle_tile_with_error([(data[:, 3:], err[:, 3:], w[:, 3:], pm[:, 3:], 1.0,
                                        (1, nx - 4, 0, ny - 1))], (ny, nx))
    assert not np.array_equal(whole[1], cropped[1])
    for a, b in zip(whole, context, strict=True):
        np.testing.assert_array_equal(a, b)


def test_empty_pixel_range_adds_nothing():
    pm = _identity_map(4, 4)
    one = np.ones((4, 4), np.float32)
    img, wht, err = drizzle_tile_with_error([(one, one, one, pm, 1.0, (3, 2, 0, 3))], (4, 4))
    assert np.all(wht == 0) and np.isnan(img).all() and np.isnan(err).all()


def test_threshold_masks_data_and_errors_together():
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    err = img + 10
    wht = np.array([[0, 1, 2], [3, 4, 5]], np.float32)
    d, e = mask_below_threshold(img, err, wht, 2.5)
    assert np.array_equal(np.isnan(d), wht < 2.5) and np.array_equal(np.isnan(e), wht < 2.5)
    d, e = mask_below_threshold(img, err, wht, float("nan"))
    assert not np.isnan(d).any() and not np.isnan(e).any()
    assert np.isnan(img).sum() == 0                     # inputs untouched


def test_blot_pair_interpolates_both_and_fills_nan_outside():
    median = np.arange(30, dtype=np.float32).reshape(5, 6)
    median_err = np.full((5, 6), 2.0, np.float32)
    pm = np.array([[[1.5, 2.0], [np.nan, 1.0], [7.0, 1.0]]])
    blot, blot_err = blot_pair(median, median_err, pm, (5, 6))
    assert blot[0, 0] == pytest.approx(13.5)
    assert blot_err[0, 0] == pytest.approx(2.0)
    assert np.isnan(blot[0, 1:]).all() and np.isnan(blot_err[0, 1:]).all()


def test_flags_use_the_blotted_median_error_not_the_exposures_own():
    """JP-3347: a cosmic ray whose own ERR is inflated (e.g. by the jump step) is still an
    outlier against the median's error."""
    blot = np.full((5, 5), 10.0, np.float32)
    blot_err = np.full((5, 5), 0.1, np.float32)
    sci = blot.copy()
    sci[2, 2] = 14.0
    own_err = np.full((5, 5), 0.1, np.float32)
    own_err[2, 2] = 5.0
    cr = flag_spec_resampled(sci, blot, blot_err, snr=(5.0, 4.0), scale=(1.2, 0.7), backg=0.0)
    assert cr[2, 2] and cr.sum() == 1
    from daskod.flag._kernels import flag_resampled_crs
    assert not flag_resampled_crs(sci, own_err, blot, snr1=5, snr2=4, scale1=1.2, scale2=0.7,
                                  backg=0.0)[2, 2]
    med_err = np.full((5, 5), 0.5, np.float32)
    assert np.array_equal(flag_spec_unresampled(sci, blot, med_err, snr1=5.0),
                          np.abs(sci - blot) > 2.5)
