"""JWST-like detector WCS factories and the pointing metadata that describes them.

Two models, both with a small polynomial distortion (analytic inverse):

- :func:`make_detector_wcs`: distortion, scale and roll, tangent-plane projection, sky
  rotation. :func:`detector_wcsinfo` gives the JWST ``meta.wcsinfo`` values that describe it.
- :func:`make_telescope_wcs`: built from the ``meta.wcsinfo`` values the way the JWST pipeline
  builds it (detector -> distortion -> ideal frame -> V2V3 with ``v3yangle``/``vparity`` ->
  sky through the ``v2_ref, v3_ref, roll_ref, ra_ref, dec_ref`` attitude rotation). Its local
  orientation at the detector centre differs slightly from the one the metadata describe, as
  on real data.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import fitting, models
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["make_detector_wcs", "make_simple_wcs", "make_telescope_wcs", "detector_wcsinfo",
           "WCSINFO_KEYS"]

#: The ``meta.wcsinfo`` pointing values the simulators expose and the writers store.
WCSINFO_KEYS = ("ra_ref", "dec_ref", "roll_ref", "v2_ref", "v3_ref", "v3yangle", "vparity")


@lru_cache(maxsize=8)
def _distortion(nx: int, ny: int) -> models.Model:
    """Pixel offsets from the detector centre -> distorted offsets (a few px at the corners),
    with a fitted polynomial inverse (round trip well below 0.01 px)."""
    half = max(nx, ny) / 2.0
    # Coefficients scaled so that the corners move by ~2-3 pixels.
    cx = {"c0_0": 0.0, "c1_0": 1.0, "c0_1": 0.0, "c2_0": 1.5e-6 * 1024 / half,
          "c1_1": -0.8e-6 * 1024 / half, "c0_2": 0.6e-6 * 1024 / half,
          "c3_0": 2.0e-10 * (1024 / half) ** 2, "c1_2": -1.2e-10 * (1024 / half) ** 2}
    cy = {"c0_0": 0.0, "c1_0": 0.0, "c0_1": 1.0, "c2_0": -0.5e-6 * 1024 / half,
          "c1_1": 1.1e-6 * 1024 / half, "c0_2": 0.9e-6 * 1024 / half,
          "c0_3": -1.5e-10 * (1024 / half) ** 2, "c2_1": 1.0e-10 * (1024 / half) ** 2}
    px = models.Polynomial2D(3, **cx)
    py = models.Polynomial2D(3, **cy)
    forward = models.Mapping((0, 1, 0, 1)) | (px & py)
    grid = np.linspace(-1.1 * half, 1.1 * half, 61)
    gu, gv = np.meshgrid(grid, grid)
    du, dv = forward(gu, gv)
    fitter = fitting.LinearLSQFitter()
    with warnings.catch_warnings():
        # Large pixel offsets make the normal equations look ill-conditioned; the fit is
        # still exact to < 1e-3 px, which the tests check.
        warnings.simplefilter("ignore", AstropyUserWarning)
        inv_x = fitter(models.Polynomial2D(5), du, dv, gu)
        inv_y = fitter(models.Polynomial2D(5), du, dv, gv)
    forward.inverse = models.Mapping((0, 1, 0, 1)) | (inv_x & inv_y)
    return forward


def make_detector_wcs(
    *,
    ra: float,
    dec: float,
    roll_deg: float = 0.0,
    shape: tuple[int, int] = (2048, 2048),
    pixel_scale_arcsec: float = 0.031,
    distortion: bool = True,
    crpix: tuple[float, float] | None = None,
):
    """A JWST-like gwcs for one detector: 0-based pixel centres -> ICRS (ra, dec) degrees.

    Parameters
    ----------
    ra, dec : float
        Sky position (degrees) of the reference pixel.
    roll_deg : float
        Rotation of the detector on the sky.
    shape : tuple of int
        Detector ``(ny, nx)``; sets the bounding box and the reference pixel (the centre).
    pixel_scale_arcsec : float
        Pixel scale (NIRCam short-wave: 0.031).
    distortion : bool
        Include the polynomial distortion (a few pixels at the corners, analytic inverse).
    crpix : tuple of float, optional
        0-based ``(x, y)`` of the reference pixel; default the detector centre.

    Returns
    -------
    gwcs.WCS
        With an analytic inverse everywhere (``invert`` needs no numerical iteration); it
        round-trips through ASDF and pickle.
    """

    ny, nx = shape
    cx, cy = crpix if crpix is not None else ((nx - 1) / 2.0, (ny - 1) / 2.0)
    theta = np.deg2rad(roll_deg)
    scale = pixel_scale_arcsec / 3600.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = scale * rot @ np.diag([-1.0, 1.0])
    transform = models.Shift(-cx) & models.Shift(-cy)
    if distortion:
        transform = transform | _distortion(nx, ny)
    transform = (transform | models.AffineTransformation2D(matrix=matrix)
                 | models.Pix2Sky_TAN() | models.RotateNative2Celestial(ra, dec, 180.0))
    return _detector_wcs(transform, nx, ny)


def make_simple_wcs(*, shape: tuple[int, int] = (21, 20), ra: float = 5.0, dec: float = 5.0,
                    cdelt_deg: float = 3e-6, crpix: tuple[float, float] = (5.0, 5.0)):
    """The reference unit tests' WCS: plain TAN, cdelt 3e-6 deg, no distortion."""
    return make_detector_wcs(ra=ra, dec=dec, shape=shape, pixel_scale_arcsec=cdelt_deg * 3600,
                             distortion=False, crpix=crpix)


def detector_wcsinfo(*, ra: float, dec: float, roll_deg: float = 0.0) -> dict:
    """The JWST ``meta.wcsinfo`` pointing values that describe a :func:`make_detector_wcs` WCS.

    The reference point is the WCS's ``crpix`` (``ra_ref, dec_ref``), the ideal frame is the
    V2V3 frame (``v2_ref = v3_ref = v3yangle = 0``) with ``vparity = -1``, and
    ``roll_ref = -roll_deg``: with these values the reference's rotation matrix
    (``calc_rotation_matrix(roll_ref, v3yangle, vparity)``) is the WCS's own at ``crpix``.
    """
    return {"ra_ref": float(ra), "dec_ref": float(dec), "roll_ref": float(-roll_deg) % 360.0,
            "v2_ref": 0.0, "v3_ref": 0.0, "v3yangle": 0.0, "vparity": -1}


def _v23_to_sky(wcsinfo: dict) -> models.Model:
    """V2V3 (arcsec) -> sky (deg): the JWST attitude rotation through the reference point."""
    from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

    angles = np.array([wcsinfo["v2_ref"] / 3600.0, -wcsinfo["v3_ref"] / 3600.0,
                       wcsinfo["roll_ref"], wcsinfo["dec_ref"], -wcsinfo["ra_ref"]])
    return ((models.Scale(1 / 3600.0) & models.Scale(1 / 3600.0))
            | SphericalToCartesian(wrap_lon_at=180)
            | models.RotationSequence3D(angles, axes_order="zyxyz")
            | CartesianToSpherical(wrap_lon_at=360))


def ideal_to_v2v3(wcsinfo: dict) -> models.Model:
    """Ideal frame (arcsec) -> V2V3 (arcsec), the SIAF rule with ``v3yangle`` and ``vparity``."""
    a = np.deg2rad(wcsinfo["v3yangle"])
    p = float(wcsinfo["vparity"])
    matrix = np.array([[p * np.cos(a), np.sin(a)], [-p * np.sin(a), np.cos(a)]])
    return models.AffineTransformation2D(matrix=matrix,
                                         translation=[wcsinfo["v2_ref"], wcsinfo["v3_ref"]])


def sky_at_v2v3(attitude: dict, v2: float, v3: float) -> dict:
    """``meta.wcsinfo`` of another aperture under the same attitude: its ``ra_ref, dec_ref``
    and the position angle of V3 there (``roll_ref``), as the pipeline computes per detector."""
    sky = _v23_to_sky(attitude)
    ra, dec = sky(np.array([v2, v2]), np.array([v3, v3 + 1.0]))
    ra_r, dec_r = np.deg2rad(ra), np.deg2rad(dec)
    # Position angle (east of north) of the +V3 direction at the new reference point.
    dra = ra_r[1] - ra_r[0]
    pa = np.arctan2(np.sin(dra) * np.cos(dec_r[1]),
                    np.cos(dec_r[0]) * np.sin(dec_r[1])
                    - np.sin(dec_r[0]) * np.cos(dec_r[1]) * np.cos(dra))
    out = dict(attitude)
    out.update(ra_ref=float(ra[0]) % 360.0, dec_ref=float(dec[0]),
               roll_ref=float(np.rad2deg(pa)) % 360.0, v2_ref=float(v2), v3_ref=float(v3))
    return out


def make_telescope_wcs(
    wcsinfo: dict,
    *,
    shape: tuple[int, int] = (2048, 2048),
    pixel_scale_arcsec: float = 0.031,
    crpix: tuple[float, float] | None = None,
    distortion: bool = True,
):
    """A detector gwcs built from JWST pointing metadata, as the pipeline's ``assign_wcs``.

    detector (0-based pixels) -> distortion around ``crpix`` -> ideal frame (arcsec) ->
    V2V3 (``v3yangle``, ``vparity``, ``v2_ref``, ``v3_ref``) -> sky (the attitude rotation
    through ``ra_ref, dec_ref`` with ``roll_ref``, V3's position angle there).

    Parameters
    ----------
    wcsinfo : dict
        ``ra_ref``, ``dec_ref``, ``roll_ref`` (deg), ``v2_ref``, ``v3_ref`` (arcsec),
        ``v3yangle`` (deg), ``vparity`` (1 or -1): the values a file's ``meta.wcsinfo``
        would carry.
    shape : tuple of int
        Detector ``(ny, nx)``.
    pixel_scale_arcsec : float
        Scale of the ideal frame.
    crpix : tuple of float, optional
        0-based detector ``(x, y)`` of the reference point (where the distortion is zero);
        default the detector centre.
    distortion : bool
        Include the polynomial distortion.

    Returns
    -------
    gwcs.WCS
        With an analytic inverse; it round-trips through ASDF.
    """

    ny, nx = shape
    cx, cy = crpix if crpix is not None else ((nx - 1) / 2.0, (ny - 1) / 2.0)
    transform = models.Shift(-cx) & models.Shift(-cy)
    if distortion:
        transform = transform | _distortion(nx, ny)
    transform = (transform
                 | (models.Scale(pixel_scale_arcsec) & models.Scale(pixel_scale_arcsec))
                 | ideal_to_v2v3(wcsinfo) | _v23_to_sky(wcsinfo))
    return _detector_wcs(transform, nx, ny)


def _detector_wcs(transform: Any, nx: int, ny: int) -> Any:
    """A detector -> ICRS gwcs through ``transform``, bounded by the detector's pixel edges."""
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg),
                            axes_names=("lon", "lat"))
    wcs = WCS([(detector, transform), (sky, None)])
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, nx)
    return wcs
