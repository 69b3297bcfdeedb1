"""Drizzle's input scanner in numpy: tiles equal the whole-frame drizzle at the frame's edges.

Drizzle drops input pixels that cross the output image's edge by more than its 0.03 px
tolerance; a padded tile keeps them. The row limits reproduce its choice exactly, so a padded
tile with zero weight outside them equals the whole-frame run, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from daskod import datasets
from daskod.geometry import compute_output_frame, compute_pixel_map
from daskod.resample._kernels import drizzle_tile
from daskod.resample._scanner import drizzled_row_limits


def _drizzle(pixmap, data, weight, out_shape, kernel, pixfrac):
    return drizzle_tile([(data, weight, pixmap, 1.0)], out_shape, kernel=kernel,
                        pixfrac=pixfrac)


def _random_case(rng, trial):
    ny, nx = (int(v) for v in rng.integers(4, 40, 2))
    oy, ox = (int(v) for v in rng.integers(6, 50, 2))
    theta = rng.uniform(-np.pi, np.pi) if trial % 3 == 0 else rng.normal(0, 0.02)
    scale = rng.uniform(0.7, 1.3)
    iy, ix = np.indices((ny, nx), dtype=float)
    sx, sy = rng.uniform(-15, ox + 5), rng.uniform(-15, oy + 5)
    X = scale * (np.cos(theta) * ix - np.sin(theta) * iy) + sx + 2e-4 * ix * iy
    Y = scale * (np.sin(theta) * ix + np.cos(theta) * iy) + sy + 1e-4 * ix * ix
    data = rng.normal(size=(ny, nx)).astype(np.float32)
    weight = rng.uniform(0.5, 1, (ny, nx)).astype(np.float32)
    return X, Y, data, weight, (oy, ox)


@pytest.mark.parametrize("kernel", ["square", "turbo", "point"])
def test_padded_tile_with_row_limits_equals_whole_frame(kernel):
    rng = np.random.default_rng({"square": 1, "turbo": 2, "point": 3}[kernel])
    pad = 4
    clipped = differs_without = 0
    for trial in range(60):
        X, Y, data, weight, out_shape = _random_case(rng, trial)
        pixmap = np.dstack([X, Y])
        pixfrac = 1.0 if trial % 2 else 0.5
        try:
            whole = _drizzle(pixmap, data, weight, out_shape, kernel, pixfrac)
        except ValueError:  # no overlap at all: drizzle refuses, nothing to compare
            continue
        limits = drizzled_row_limits(lambda i, j, X=X, Y=Y: (X[j, i], Y[j, i]), data.shape,
                                     out_shape)
        assert limits is not None
        cols = np.arange(data.shape[1])
        keep = (cols >= limits[:, :1]) & (cols <= limits[:, 1:])
        clipped += not keep.all()
        padded_shape = (out_shape[0] + 2 * pad, out_shape[1] + 2 * pad)
        crop = (slice(pad, pad + out_shape[0]), slice(pad, pad + out_shape[1]))
        img, wht = _drizzle(pixmap + pad, data, np.where(keep, weight, 0).astype(np.float32),
                            padded_shape, kernel, pixfrac)
        np.testing.assert_array_equal(wht[crop], whole[1], err_msg=f"trial {trial}")
        np.testing.assert_array_equal(np.isnan(img[crop]), np.isnan(whole[0]))
        np.testing.assert_allclose(np.nan_to_num(img[crop]), np.nan_to_num(whole[0]),
                                   rtol=0, atol=1e-5)
        _, plain = _drizzle(pixmap + pad, data, weight, padded_shape, kernel, pixfrac)
        differs_without += not np.array_equal(plain[crop], whole[1])
    # The cases exercise the rule: most are clipped and padding alone would differ often.
    assert clipped > 40 and differs_without > 10


def test_pixel_map_row_limits_on_the_reference_frame():
    """On jwst 3.0.0's frame the footprints reach past its top/right edges: the exposures
    that do get row limits, the others none; masks of tiles are slices of one mask."""
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(64, 80), seed=23,
                                         wcs_model="telescope", dither_px=15)
    exps = sim.exposures
    frame = compute_output_frame(exps)
    maps = [compute_pixel_map(e.wcs, frame.wcs, e.shape, out_shape=frame.shape) for e in exps]
    limited = [pm for pm in maps if pm.row_limits is not None]
    assert limited, "no exposure crosses the frame's edge: the scene does not test anything"
    pm = limited[0]
    whole = pm.drizzle_mask(0, 64, 0, 80)
    assert not whole.all() and whole.any()
    np.testing.assert_array_equal(pm.drizzle_mask(10, 50, 30, 80), whole[10:50, 30:80])
    plain = compute_pixel_map(exps[0].wcs, frame.wcs, exps[0].shape)
    assert plain.row_limits is None and plain.drizzle_mask(0, 4, 0, 4) is None
