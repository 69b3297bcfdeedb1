"""JWST-like detector WCS factories: a small polynomial distortion with an analytic inverse,
then scale and roll, tangent-plane projection and sky rotation."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import fitting, models
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["make_detector_wcs", "make_simple_wcs"]


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
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

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
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg),
                            axes_names=("lon", "lat"))
    wcs = WCS([(detector, transform), (sky, None)])
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, nx)
    return wcs


def make_simple_wcs(*, shape: tuple[int, int] = (21, 20), ra: float = 5.0, dec: float = 5.0,
                    cdelt_deg: float = 3e-6, crpix: tuple[float, float] = (5.0, 5.0)):
    """The reference unit tests' WCS: plain TAN, cdelt 3e-6 deg, no distortion."""
    return make_detector_wcs(ra=ra, dec=dec, shape=shape, pixel_scale_arcsec=cdelt_deg * 3600,
                             distortion=False, crpix=crpix)
