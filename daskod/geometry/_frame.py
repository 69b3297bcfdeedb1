"""The output (median) frame: union of the exposures' footprints, as the reference builds it.

Reference (stcal ``resampled_wcs_from_models`` with ``pixel_scale_ratio=1``): tangent-plane
projection at the centre of the union of footprints, the pixel scale and orientation of the
first exposure at its centre, no distortion, and a bounding box that just holds every
footprint corner.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models

from daskod._exceptions import OutputTooLargeError, WCSError

__all__ = ["OutputFrame", "compute_output_frame", "footprint_corners", "make_tan_wcs"]

log = logging.getLogger(__name__)


@dataclass
class OutputFrame:
    """The common sky grid the exposures are drizzled onto and the median lives on.

    Attributes
    ----------
    wcs : gwcs.WCS
        Output pixel -> sky, with an analytic inverse.
    shape : tuple of int
        ``(ny, nx)``.
    crval : tuple of float
        Fiducial (ra, dec) in degrees.
    cd : ndarray, shape (2, 2)
        Pixel -> projection-plane matrix in degrees per pixel.
    crpix : tuple of float
        0-based output pixel ``(x, y)`` of the fiducial.
    """

    wcs: Any
    shape: tuple[int, int]
    crval: tuple[float, float]
    cd: np.ndarray
    crpix: tuple[float, float]

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel scale in arcseconds (square root of the pixel area)."""
        return float(math.sqrt(abs(np.linalg.det(self.cd))) * 3600.0)


def make_tan_wcs(crval: tuple[float, float], cd: np.ndarray, crpix: tuple[float, float],
                 shape: tuple[int, int]) -> Any:
    """A distortion-free tangent-plane gwcs (0-based pixels) with an analytic inverse."""
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    transform = (
        (models.Shift(-crpix[0]) & models.Shift(-crpix[1]))
        | models.AffineTransformation2D(matrix=np.asarray(cd, dtype=np.float64))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(crval[0], crval[1], 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg),
                            axes_names=("lon", "lat"))
    wcs = WCS([(detector, transform), (sky, None)])
    ny, nx = shape
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, nx)
    return wcs


def _forward(wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    forward = getattr(wcs, "forward_transform", None)
    world = forward(x, y) if forward is not None else wcs.pixel_to_world_values(x, y)
    return np.asarray(world[0], dtype=np.float64), np.asarray(world[1], dtype=np.float64)


def footprint_corners(wcs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sky (ra, dec) of the four detector corners (pixel edges), like ``S_REGION``."""
    ny, nx = shape
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    return _forward(wcs, x, y)


def _fiducial(ras: np.ndarray, decs: np.ndarray) -> tuple[float, float]:
    """Centre of the footprints' Cartesian bounding box (stcal ``compute_fiducial``)."""
    ra_r, dec_r = np.deg2rad(ras), np.deg2rad(decs)
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    mid = 0.5 * (xyz.min(axis=1) + xyz.max(axis=1))
    ra = math.degrees(math.atan2(mid[1], mid[0])) % 360.0
    dec = math.degrees(math.atan2(mid[2], math.hypot(mid[0], mid[1])))
    return ra, dec


def _projection_plane(crval: tuple[float, float]) -> Any:
    return models.RotateCelestial2Native(crval[0], crval[1], 180.0) | models.Sky2Pix_TAN()


def _reference_cd(wcs: Any, shape: tuple[int, int], crval: tuple[float, float]) -> np.ndarray:
    """Scale, rotation and parity of the first exposure at its centre, without skew."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    ra, dec = _forward(wcs, np.array([cx, cx + 1.0, cx]), np.array([cy, cy, cy + 1.0]))
    px, py = _projection_plane(crval)(ra, dec)
    jac = np.array([[px[1] - px[0], px[2] - px[0]], [py[1] - py[0], py[2] - py[0]]])
    det = float(np.linalg.det(jac))
    if not math.isfinite(det) or det == 0.0:
        msg = ("The first exposure's WCS has a singular or non-finite Jacobian at its centre "
               f"(det={det!r}); check its WCS.")
        raise WCSError(msg)
    parity = np.diag([-1.0, 1.0]) if det < 0 else np.eye(2)
    m = jac @ parity
    theta = math.atan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1])
    scale = math.sqrt(abs(det))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return scale * rot @ parity


def compute_output_frame(
    wcs_list: list[Any],
    shapes: list[tuple[int, int]],
    *,
    names: list[str] | None = None,
    max_output_pixels: int = 2**32,
) -> OutputFrame:
    """Build the output frame from the union of the exposures' footprints.

    Parameters
    ----------
    wcs_list : list of WCS
        Detector WCS of each exposure (forward direction only is used).
    shapes : list of tuple
        Detector shapes.
    names : list of str, optional
        Exposure names for error messages.
    max_output_pixels : int, optional
        Refuse frames larger than this (bad pointing metadata gives absurd mosaics).

    Returns
    -------
    OutputFrame

    Raises
    ------
    OutputTooLargeError
        Before any heavy work, when the frame has more than ``max_output_pixels`` pixels.
    WCSError
        When a footprint corner is not finite.
    """
    names = names or [f"exposure{k}" for k in range(len(wcs_list))]
    corners = []
    for wcs, shape, name in zip(wcs_list, shapes, names, strict=True):
        ra, dec = footprint_corners(wcs, shape)
        if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
            msg = (f"Exposure {name!r}: its WCS gives non-finite sky coordinates at the "
                   "detector corners; the WCS must cover the whole detector.")
            raise WCSError(msg, exposure=name)
        corners.append((ra, dec))
    ras = np.concatenate([c[0] for c in corners])
    decs = np.concatenate([c[1] for c in corners])
    crval = _fiducial(ras, decs)
    cd = _reference_cd(wcs_list[0], shapes[0], crval)
    px, py = _projection_plane(crval)(ras, decs)
    pix = np.linalg.solve(cd, np.stack([px, py]))
    xmin, ymin = pix.min(axis=1)
    xmax, ymax = pix.max(axis=1)
    # Pixel centre 0 sits half a pixel inside the lowest footprint edge.
    nx_f = xmax - xmin
    ny_f = ymax - ymin
    npix_f = nx_f * ny_f
    if not math.isfinite(npix_f) or npix_f > max_output_pixels:
        nx_i = int(min(nx_f, 2**62)) if math.isfinite(nx_f) else -1
        ny_i = int(min(ny_f, 2**62)) if math.isfinite(ny_f) else -1
        nbytes = max(nx_i, 0) * max(ny_i, 0) * 4
        msg = (f"The output frame would be {ny_i} x {nx_i} pixels ({nbytes / 2**30:.3g} GiB per "
               f"float32 frame), more than max_output_pixels={max_output_pixels}; the "
               "exposures' pointings are probably wrong (check the WCS), or raise "
               "max_output_pixels.")
        raise OutputTooLargeError(msg, shape=(ny_i, nx_i), nbytes=nbytes)
    nx = max(math.ceil(nx_f), 1)
    ny = max(math.ceil(ny_f), 1)
    crpix = (float(-xmin - 0.5), float(-ymin - 0.5))
    wcs = make_tan_wcs(crval, cd, crpix, (ny, nx))
    log.info("Output frame: %d x %d pixels at %.4g arcsec/pixel, centred at (%.6f, %.6f)",
             ny, nx, math.sqrt(abs(np.linalg.det(cd))) * 3600, crval[0], crval[1])
    return OutputFrame(wcs=wcs, shape=(ny, nx), crval=crval, cd=cd, crpix=crpix)
