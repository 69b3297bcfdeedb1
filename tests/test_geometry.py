"""Output frame, coarse pixel maps and the tile/exposure table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskod import Exposure, OutputTooLargeError, datasets
from daskod.geometry import Tiling, compute_pixel_map
from daskod.geometry import compute_output_frame as _frame_of_exposures
from daskod.geometry._frame import footprint_corners
from daskod.resample._graph import plan_group_tiles


def compute_output_frame(wcs_list, shapes, **kwargs):
    """The frame of bare WCSs (no wcsinfo: the fallback), through Exposure objects."""
    exps = [Exposure(sci=np.broadcast_to(np.float32(0), s), err=None, dq=None, wcs=w,
                     name=f"e{k}") for k, (w, s) in enumerate(zip(wcs_list, shapes, strict=True))]
    return _frame_of_exposures(exps, **kwargs)


@pytest.fixture(scope="module")
def wcs_pair():
    w0 = datasets.make_detector_wcs(ra=150.0, dec=2.0, roll_deg=0.0, shape=(2048, 2048))
    w1 = datasets.make_detector_wcs(ra=150.0003, dec=2.0004, roll_deg=0.4, shape=(2048, 2048))
    return w0, w1


def test_coarse_pixel_map_error_below_1e3_px(wcs_pair):
    w0, w1 = wcs_pair
    frame = compute_output_frame([w0, w1], [(2048, 2048)] * 2)
    coarse = compute_pixel_map(w1, frame.wcs, (2048, 2048), stepsize=16, order=3)
    full = compute_pixel_map(w1, frame.wcs, (2048, 2048), stepsize=1)
    assert not coarse.is_full and full.is_full
    a = coarse.evaluate(0, 2048, 0, 2048)
    b = full.evaluate(0, 2048, 0, 2048)
    err = np.abs(a - b).max()
    assert err < 1e-3
    # A tile of the coarse map equals the same pixels of the whole map.
    np.testing.assert_array_equal(coarse.evaluate(300, 400, 1000, 1200), a[300:400, 1000:1200])


def test_output_frame_starts_on_the_lowest_footprint_edge(wcs_pair):
    """The reference's rule: output pixel 0 lies ON the lowest projected footprint vertex of
    each axis and the size is int(max + 0.5) (so the top edge may poke up to half a pixel
    beyond the frame's bounding box, as in jwst 3.0.0)."""
    w0, w1 = wcs_pair
    frame = compute_output_frame([w0, w1], [(2048, 2048)] * 2)
    ny, nx = frame.shape
    xs, ys = [], []
    for w in (w0, w1):
        ra, dec = footprint_corners(w, (2048, 2048))
        x, y = frame.wcs.invert(ra, dec, with_bounding_box=False)
        xs.append(x)
        ys.append(y)
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    assert abs(xs.min()) < 1e-7 and abs(ys.min()) < 1e-7
    assert nx == int(xs.max() + 0.5) and ny == int(ys.max() + 0.5)
    # Pixel scale of the first exposure at its centre (0.031 arcsec from the factory).
    assert frame.pixel_scale_arcsec == pytest.approx(0.031, rel=2e-3)
    # Orientation of the first exposure: its +y axis maps to the frame's +y axis.
    pm = compute_pixel_map(w0, frame.wcs, (2048, 2048), stepsize=1).evaluate(1000, 1101, 1024, 1025)
    dx = pm[-1, 0, 0] - pm[0, 0, 0]
    dy = pm[-1, 0, 1] - pm[0, 0, 1]
    assert abs(math.degrees(math.atan2(dx, dy))) < 0.05


def test_absurd_frame_raises_before_work():
    w0 = datasets.make_detector_wcs(ra=150.0, dec=2.0, shape=(64, 64))
    w1 = datasets.make_detector_wcs(ra=160.0, dec=12.0, shape=(64, 64))
    with pytest.raises(OutputTooLargeError, match="output frame would be") as info:
        compute_output_frame([w0, w1], [(64, 64)] * 2, max_output_pixels=10**8)
    assert info.value.nbytes > 4 * 10**8
    assert isinstance(info.value, ValueError)


def test_overlap_table_boxes_are_supersets(wcs_pair):
    w0, w1 = wcs_pair
    shape = (2048, 2048)
    frame = compute_output_frame([w0, w1], [shape] * 2)
    maps = [compute_pixel_map(w, frame.wcs, shape) for w in (w0, w1)]
    tiling = Tiling(frame.shape, (512, 512))
    pad = 4
    plan = plan_group_tiles(maps, [[0], [1]], tiling, pad)
    full = maps[1].evaluate(0, 2048, 0, 2048)
    for (g, tile), entries in plan.items():
        if g != 1:
            continue
        (_k, (iy0, iy1, ix0, ix1)), = entries
        inside = ((full[..., 0] >= tile.x0 - pad - 1) & (full[..., 0] < tile.x1 + pad + 1)
                  & (full[..., 1] >= tile.y0 - pad - 1) & (full[..., 1] < tile.y1 + pad + 1))
        ys, xs = np.nonzero(inside)
        assert ys.min() >= iy0 and ys.max() < iy1 and xs.min() >= ix0 and xs.max() < ix1
    # Every tile some pixel lands in is in the table.
    touched = {(int(y) // 512, int(x) // 512) for x, y in full[::64, ::64].reshape(-1, 2)
               if 0 <= x < frame.shape[1] and 0 <= y < frame.shape[0]}
    planned = {(t.i, t.j) for (g, t) in plan if g == 1}
    assert touched <= planned
