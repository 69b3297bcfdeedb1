"""The output frame's rules at the geometry level (the reference itself: test_parity_frame.py).

What is checked here needs no reference environment: which metadata the frame follows, the
fallback for bare WCSs, errors that name the exposure, and frames on a user's grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import daskod
from daskod import Exposure, InputError, OutputTooLargeError, WCSError, datasets
from daskod.geometry import OutputFrame, compute_output_frame, compute_pixel_map
from daskod.geometry._footprints import parse_s_region, s_region_string, wcs_footprint


@pytest.fixture(scope="module")
def telescope_scene():
    """Two dithers of two 48 x 64 detectors, rolled 200 deg, telescope-like WCS."""
    return datasets.make_dithered_imaging(n_exposures=2, shape=(48, 64), seed=4, roll_deg=200.0,
                                          wcs_model="telescope", n_detectors=2, dither_px=12)


def _angle_deg(pc_a, pc_b):
    """Rotation between two PC matrices of the same parity, in degrees."""
    angles = []
    for pc in (pc_a, pc_b):
        m = pc @ np.diag([np.sign(np.linalg.det(pc)), 1.0])
        angles.append(math.atan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    return math.degrees(angles[0] - angles[1])


def test_frame_follows_the_pointing_metadata_not_the_jacobian(telescope_scene):
    """On a telescope-like WCS the metadata's orientation and the WCS's own at the detector
    centre differ slightly (as on real data); the frame takes the metadata's."""
    exps = telescope_scene.exposures
    frame = compute_output_frame(exps)
    fallback = compute_output_frame([e.copy_with(wcsinfo=None) for e in exps])
    assert frame.source == "wcsinfo" and fallback.source == "wcs"
    info = exps[0].wcsinfo
    # The metadata's rotation: V3's position angle minus the ideal frame's angle to V3.
    expected = (info["roll_ref"] - info["vparity"] * info["v3yangle"]) % 360.0
    # pc = [[p cos a, sin a], [-p sin a, cos a]]: recover a from the two right-column terms.
    got = math.degrees(math.atan2(frame.pc[0, 1], frame.pc[1, 1])) % 360.0
    assert got == pytest.approx(expected, abs=1e-9)
    diff = abs(_angle_deg(frame.pc, fallback.pc))
    assert 1e-4 < diff < 0.1  # different, but both describe the same detector
    assert frame.crpix != fallback.crpix


def test_pixel_zero_sits_on_the_lowest_footprint_edge(telescope_scene):
    exps = telescope_scene.exposures
    frame = compute_output_frame(exps)
    pts = np.vstack([wcs_footprint(e.wcs, e.shape) for e in exps])
    x, y = frame.wcs.invert(pts[:, 0], pts[:, 1], with_bounding_box=False)
    assert abs(np.min(x)) < 1e-6 and abs(np.min(y)) < 1e-6
    assert frame.shape == (int(np.max(y) + 0.5), int(np.max(x) + 0.5))
    # Both detectors of both groups fit side by side: wider than two detectors.
    assert frame.shape[1] > 2 * 64 or frame.shape[0] > 2 * 48


def test_s_region_is_the_footprint_when_present(telescope_scene):
    """An S_REGION that reaches farther than the WCS widens the frame: it is what counts."""
    exps = list(telescope_scene.exposures)
    base = compute_output_frame(exps)
    fp = wcs_footprint(exps[-1].wcs, exps[-1].shape)
    centre = fp.mean(axis=0)
    grown = centre + 3.0 * (fp - centre)  # three times larger around its centre
    exps[-1] = exps[-1].copy_with(wcsinfo={**exps[-1].wcsinfo, "s_region": s_region_string(grown)})
    wider = compute_output_frame(exps)
    assert wider.shape[0] > base.shape[0] + 20 and wider.shape[1] > base.shape[1] + 20
    # Orientation and scale still come from the first exposure.
    np.testing.assert_array_equal(wider.pc, base.pc)
    assert wider.cdelt == base.cdelt


def test_s_region_parsing_handles_several_polygons():
    text = ("POLYGON ICRS  10.0 1.0 10.1 1.0 10.1 1.1 10.0 1.1 "
            "POLYGON ICRS 20.0 -2.0 20.1 -2.0 20.1 -1.9")
    polys = parse_s_region(text)
    assert [p.shape for p in polys] == [(4, 2), (3, 2)]
    assert polys[1][2].tolist() == [20.1, -1.9]
    with pytest.raises(WCSError, match="'bad'"):
        parse_s_region("POLYGON ICRS 1 2 3", name="bad")


def test_fallback_matches_metadata_on_a_plain_wcs():
    """On make_detector_wcs (reference point at the detector centre) the fallback and the
    metadata agree to the distortion a one-pixel step sees (~1e-5 rad on a small detector,
    where the simulated distortion is strongest)."""
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(60, 90), seed=2, roll_deg=33.0,
                                         max_roll_deg=0.0)
    exps = sim.exposures
    a = compute_output_frame(exps)
    b = compute_output_frame([e.copy_with(wcsinfo=None) for e in exps])
    assert a.shape == b.shape
    assert abs(_angle_deg(a.pc, b.pc)) < 2e-3
    np.testing.assert_allclose(a.crpix, b.crpix, atol=0.01)


def test_tiny_exposure_is_refused_by_name_before_any_work(small_observation):
    one = np.ones((1, 1), np.float32)
    tiny = Exposure(sci=one, err=one, dq=np.zeros((1, 1), np.uint32), name="tiny_one",
                    wcs=datasets.make_detector_wcs(ra=150.1, dec=2.2, shape=(1, 1)))
    with pytest.raises(InputError, match=r"'tiny_one' is 1 x 1 pixels.*at least 2 x 2"):
        daskod.detect_outliers([*small_observation.exposures[:2], tiny])


def test_exposure_on_the_other_side_of_the_sky_is_named(small_observation):
    exps = list(small_observation.exposures)
    exps[2] = exps[2].copy_with(name="lost", wcsinfo=None, wcs=datasets.make_detector_wcs(
        ra=330.1, dec=-2.2, shape=exps[2].shape))
    with pytest.raises(OutputTooLargeError) as info:
        compute_output_frame(exps)
    err = info.value
    assert err.exposure == "lost"
    assert "'lost' lies 1" in str(err) and "-1 x -1" not in str(err)
    # A sane size: half the sky's circumference at 0.031 arcsec per pixel, both ways.
    side = 180.0 * 3600 / 0.031
    assert err.shape[0] == err.shape[1] and 0.9 * side < err.shape[0] < 1.01 * side
    assert err.nbytes == 4 * err.shape[0] ** 2


def test_far_but_projectable_exposure_is_named_with_its_frame_size(small_observation):
    exps = list(small_observation.exposures)
    exps[1] = exps[1].copy_with(name="drifted", wcsinfo=None, wcs=datasets.make_detector_wcs(
        ra=151.1, dec=2.7, shape=exps[1].shape))
    with pytest.raises(OutputTooLargeError, match="would be about") as info:
        compute_output_frame(exps, max_output_pixels=10**8)
    assert info.value.exposure == "drifted"
    ny, nx = info.value.shape
    assert 1e5 < nx < 2e5 and 0.5e5 < ny < 1e5  # ~1.1 deg x 0.5 deg at 0.031"


def test_pixel_map_with_no_finite_pixels_names_the_exposure(small_observation):
    exps = small_observation.exposures
    frame = compute_output_frame(exps)

    class NanWCS:
        def pixel_to_world_values(self, x, y):
            return np.full(np.shape(x), np.nan), np.full(np.shape(y), np.nan)

    with pytest.raises(WCSError, match=r"'broken'.*maps only 0 of"):
        compute_pixel_map(NanWCS(), frame.wcs, (20, 30), name="broken")


def test_frame_from_a_north_up_wcs_of_reproject(small_observation):
    """OutputFrame.from_wcs on find_optimal_celestial_wcs's grid: converted to the same
    mapping, usable by the pixel maps, north up."""
    from astropy import units as u
    from reproject.mosaicking import find_optimal_celestial_wcs

    exps = small_observation.exposures
    wcs, shape = find_optimal_celestial_wcs([(e.shape, e.wcs) for e in exps],
                                            resolution=0.031 * u.arcsec)
    frame = OutputFrame.from_wcs(wcs, shape)
    assert frame.source == "user" and frame.shape == tuple(shape)
    assert frame.pixel_scale_arcsec == pytest.approx(0.031, rel=1e-9)
    y, x = np.mgrid[0:shape[0]:9, 0:shape[1]:7].astype(float)
    for got, want in zip(frame.wcs.pixel_to_world_values(x, y), wcs.pixel_to_world_values(x, y),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    # North up, east left: +y is +dec, +x is -ra.
    ra, dec = frame.wcs.pixel_to_world_values([10.0, 10.0, 11.0], [10.0, 11.0, 10.0])
    assert dec[1] > dec[0] and abs(ra[1] - ra[0]) < 1e-9 and ra[2] < ra[0]
    # Every exposure lands inside the grid reproject chose.
    for e in exps:
        pm = compute_pixel_map(e.wcs, frame.wcs, e.shape)
        x0, x1, y0, y1 = pm.node_bounds()
        assert x0 > -1 and y0 > -1 and x1 < shape[1] and y1 < shape[0]


def test_frame_from_a_gwcs_keeps_it_and_checks_shape_and_size(small_observation):
    frame0 = compute_output_frame(small_observation.exposures)
    user = OutputFrame.from_wcs(frame0.wcs, frame0.shape)
    assert user.wcs is frame0.wcs and user.pc is None and user.source == "user"
    assert user.pixel_scale_arcsec == pytest.approx(frame0.pixel_scale_arcsec, rel=1e-6)
    assert OutputFrame.from_wcs(frame0.wcs).shape == frame0.shape  # from array_shape
    with pytest.raises(OutputTooLargeError, match="max_output_pixels=100"):
        OutputFrame.from_wcs(frame0.wcs, (20, 20), max_output_pixels=100)
    with pytest.raises(InputError, match="two positive sizes"):
        OutputFrame.from_wcs(frame0.wcs, (0, 20))
    with pytest.raises(WCSError, match="cannot map sky to pixels"):
        OutputFrame.from_wcs(object(), (20, 20))
