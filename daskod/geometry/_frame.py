"""The output (median) frame, built exactly as the reference builds it.

Reference: jwst ``resample_utils.resampled_wcs_from_models`` -> stcal
``alignment.util.wcs_from_sregions`` (jwst 3.0.0, stcal 1.20), with ``pixel_scale_ratio=1``:

- footprints: every exposure's ``S_REGION`` polygon(s) (:mod:`daskod.geometry._footprints`);
- fiducial (CRVAL): the centre of the footprints' bounding box in Cartesian coordinates;
- rotation (PC): ``calc_rotation_matrix(roll_ref, v3yangle, vparity)`` of the first
  exposure's ``wcsinfo``;
- pixel scale: the first exposure's WCS measured at its ``ra_ref, dec_ref`` (``compute_scale``:
  the geometric mean of the sky separations of one-pixel steps in x and y);
- CRPIX (0-based): the fiducial's native pixel minus the lowest projected footprint vertex,
  so output pixel 0 lies ON the lowest footprint edge; shape ``int(max + 0.5)`` per axis.

Without ``wcsinfo`` (arrays and a bare gwcs from Python), the documented fallback measures
the first exposure's WCS at its detector centre: the scale by the same one-pixel-step rule,
the rotation and parity from the WCS's Jacobian in the tangent plane at the fiducial, and the
footprints from the WCS at the detector's pixel edges. CRPIX and shape follow the same rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models

from daskod._exceptions import InputError, OutputTooLargeError, WCSError
from daskod.geometry._footprints import (
    _forward,
    _unit_vectors,
    angular_extent_pixels,
    exposure_footprints,
    far_exposure,
    separation_deg,
    wcs_footprint,
)

__all__ = ["OutputFrame", "compute_output_frame", "footprint_corners", "make_tan_wcs",
           "POINTING_KEYS"]

log = logging.getLogger(__name__)

#: The ``Exposure.wcsinfo`` keys the reference's frame needs from the first exposure.
POINTING_KEYS = ("ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity")
#: Beyond this distance from the frame centre a tangent-plane frame is absurd (size quoted as
#: an arc length instead).
MAX_TANGENT_REACH_DEG = 60.0
#: Drizzle takes each input pixel's corners from its neighbours: it needs 2 x 2 pixels.
MIN_DETECTOR_SIZE = 2


@dataclass
class OutputFrame:
    """The common sky grid the exposures are drizzled onto and the median lives on.

    Attributes
    ----------
    wcs : gwcs.WCS or APE-14 WCS
        Output pixel -> sky; the pixel maps use its inverse (``world_to_pixel``).
    shape : tuple of int
        ``(ny, nx)``.
    crval : tuple of float or None
        Fiducial (ra, dec) in degrees (None for a user's WCS that is not a plain TAN).
    pc : ndarray, shape (2, 2), or None
        Rotation (and parity) matrix, applied before the scale.
    cdelt : float or None
        Pixel scale in degrees.
    crpix : tuple of float or None
        0-based output pixel ``(x, y)`` of the fiducial.
    source : str
        How the frame was built: ``"wcsinfo"`` (the reference's rule from the first
        exposure's pointing metadata), ``"wcs"`` (the fallback from its WCS) or ``"user"``.
    """

    wcs: Any
    shape: tuple[int, int]
    crval: tuple[float, float] | None = None
    pc: np.ndarray | None = None
    cdelt: float | None = None
    crpix: tuple[float, float] | None = None
    source: str = "wcsinfo"

    @property
    def cd(self) -> np.ndarray | None:
        """Pixel -> projection-plane matrix in degrees per pixel (``cdelt * pc``)."""
        if self.pc is None or self.cdelt is None:
            return None
        return self.cdelt * np.asarray(self.pc)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel scale in arcseconds (at the frame centre for a user's WCS)."""
        if self.cdelt is not None and self.pc is not None:
            return float(self.cdelt * math.sqrt(abs(np.linalg.det(self.pc))) * 3600.0)
        ny, nx = self.shape
        return 3600.0 * _one_pixel_scale(self.wcs, (nx - 1) / 2.0, (ny - 1) / 2.0)

    @classmethod
    def from_wcs(cls, wcs: Any, shape: tuple[int, int] | None = None, *,
                 max_output_pixels: int = 2**32) -> OutputFrame:
        """A frame on a grid the user chose: a sky cell, an existing mosaic, or a north-up
        frame from ``reproject.mosaicking.find_optimal_celestial_wcs``.

        Parameters
        ----------
        wcs : gwcs.WCS, astropy.wcs.WCS or APE-14 WCS
            Output pixel -> sky (celestial, 2-D), with a world -> pixel direction. A plain
            TAN ``astropy.wcs.WCS`` (no SIP or lookup distortion) is converted to the
            equivalent gwcs, so that products can store it and threads need not share it.
        shape : tuple of int, optional
            ``(ny, nx)``; default the WCS's ``array_shape``.
        max_output_pixels : int, optional
            Refuse larger frames.

        Returns
        -------
        OutputFrame
        """
        if shape is None:
            shape = getattr(wcs, "array_shape", None)
        if shape is None:
            msg = ("OutputFrame.from_wcs needs the frame's shape (ny, nx): give shape= or set "
                   "the WCS's array_shape.")
            raise InputError(msg)
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 1:
            msg = f"The output frame's shape must be two positive sizes (ny, nx), got {shape}."
            raise InputError(msg)
        if shape[0] * shape[1] > max_output_pixels:
            nbytes = 4 * shape[0] * shape[1]
            msg = (f"The output frame {shape[0]} x {shape[1]} ({nbytes / 2**30:.3g} GiB per "
                   f"float32 frame) has more than max_output_pixels={max_output_pixels} "
                   "pixels; give a smaller grid or raise max_output_pixels.")
            raise OutputTooLargeError(msg, shape=shape, nbytes=nbytes)
        if not (hasattr(wcs, "world_to_pixel_values") or hasattr(wcs, "backward_transform")):
            msg = (f"The output WCS (a {type(wcs).__name__}) cannot map sky to pixels; give a "
                   "gwcs.WCS or an astropy.wcs.WCS.")
            raise WCSError(msg)
        naxes = getattr(wcs, "world_n_dim", 2)
        if naxes != 2:
            msg = f"The output WCS must have 2 world axes (ra, dec), it has {naxes}."
            raise WCSError(msg)
        plain = _plain_tan(wcs)
        if plain is not None:
            crval, pc, cdelt, crpix = plain
            return cls(wcs=make_tan_wcs(crval, pc, crpix, shape, cdelt=cdelt), shape=shape,
                       crval=crval, pc=pc, cdelt=cdelt, crpix=crpix, source="user")
        ny, nx = shape
        centre = _forward(wcs, np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0]))
        if not np.all(np.isfinite(centre)):
            msg = "The output WCS gives no sky position at the centre of the given shape."
            raise WCSError(msg)
        return cls(wcs=wcs, shape=shape, source="user")


def _plain_tan(wcs: Any) -> tuple | None:
    """(crval, pc, cdelt, crpix) of an astropy TAN WCS without distortion, else None."""
    from astropy.wcs import WCS as FitsWCS

    if not isinstance(wcs, FitsWCS) or wcs.naxis != 2:
        return None
    ctype = [str(c).upper() for c in wcs.wcs.ctype]
    if ctype != ["RA---TAN", "DEC--TAN"] or wcs.sip is not None or wcs.has_distortion:
        return None
    w = wcs.wcs
    cd = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(cd)))
    lonpole = float(w.lonpole) if math.isfinite(w.lonpole) else 180.0
    if abs(lonpole - 180.0) > 1e-12 or str(w.radesys).upper() not in ("ICRS", "") or not (
            scale > 0):
        return None
    return ((float(w.crval[0]), float(w.crval[1])), cd / scale, scale,
            (float(w.crpix[0]) - 1.0, float(w.crpix[1]) - 1.0))


def make_tan_wcs(crval: tuple[float, float], pc: np.ndarray, crpix: tuple[float, float],
                 shape: tuple[int, int], *, cdelt: float = 1.0) -> Any:
    """A distortion-free tangent-plane gwcs (0-based pixels) with an analytic inverse.

    ``(x - crpix) -> pc -> * cdelt -> TAN -> sky`` in the order of gwcs's
    ``FITSImagingWCSTransform`` (the reference's output frame); ``pc`` may also be a CD
    matrix with the default ``cdelt=1``.
    """
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    transform = (
        (models.Shift(-crpix[0]) & models.Shift(-crpix[1]))
        | models.AffineTransformation2D(matrix=np.asarray(pc, dtype=np.float64))
        | (models.Scale(cdelt) & models.Scale(cdelt))
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


def footprint_corners(wcs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sky (ra, dec) of the four detector corners (pixel edges), like ``S_REGION``."""
    fp = wcs_footprint(wcs, shape)
    return fp[:, 0], fp[:, 1]


def _fiducial(ras: np.ndarray, decs: np.ndarray) -> tuple[float, float]:
    """Centre of the footprints' Cartesian bounding box (stcal ``_calculate_fiducial``)."""
    lon, lat = np.deg2rad(ras), np.deg2rad(decs)
    x = np.cos(lat) * np.cos(lon)
    y = np.cos(lat) * np.sin(lon)
    z = np.sin(lat)
    x_mid = (np.max(x) + np.min(x)) / 2.0
    y_mid = (np.max(y) + np.min(y)) / 2.0
    z_mid = (np.max(z) + np.min(z)) / 2.0
    ra = float(np.rad2deg(np.arctan2(y_mid, x_mid)) % 360.0)
    dec = float(np.rad2deg(np.arctan2(z_mid, np.sqrt(x_mid**2 + y_mid**2))))
    return ra, dec


def _world_to_pixel(wcs: Any, ra: float, dec: float) -> tuple[float, float]:
    """Detector pixel of a sky position: the WCS's analytic inverse, else Newton steps on the
    forward transform (gwcs's numerical inverse is not relied on)."""
    try:
        backward = wcs.backward_transform
    except (NotImplementedError, AttributeError):
        backward = None
    if backward is not None:
        x, y = backward(ra, dec)
        return float(x), float(y)
    if hasattr(wcs, "world_to_pixel_values") and getattr(wcs, "forward_transform", None) is None:
        x, y = wcs.world_to_pixel_values(ra, dec)
        return float(x), float(y)
    shape = getattr(wcs, "array_shape", None) or (1, 1)
    x, y = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    target = np.array([ra, dec])
    for _ in range(50):
        r, d = _forward(wcs, np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
        resid = target - np.array([r[0], d[0]])
        resid[0] = (resid[0] + 180.0) % 360.0 - 180.0
        jac = np.array([[r[1] - r[0], r[2] - r[0]], [d[1] - d[0], d[2] - d[0]]])
        step = np.linalg.solve(jac, resid)
        x, y = x + step[0], y + step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(x), float(y)


def _one_pixel_scale(wcs: Any, x: float, y: float) -> float:
    """stcal ``compute_scale``: sqrt of the sky separations (deg) of one-pixel x and y steps."""
    ra, dec = _forward(wcs, np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
    # The same path as the reference (SkyCoord separations): a one-pixel separation computed
    # from absolute coordinates carries ~1e-10 relative rounding that depends on the path.
    sky = coord.SkyCoord(ra=ra, dec=dec, unit="deg")
    xscale = np.abs(sky[0].separation(sky[1]).value)
    yscale = np.abs(sky[0].separation(sky[2]).value)
    return float(np.sqrt(xscale * yscale))


def _rotation_matrix(roll_ref: float, v3yangle: float, vparity: int) -> np.ndarray:
    """stcal ``calc_rotation_matrix`` (angles in degrees), as the 2 x 2 PC matrix."""
    if vparity not in (1, -1):
        msg = f"vparity must be 1 or -1, got {vparity!r}."
        raise ValueError(msg)
    rel = np.deg2rad(roll_ref) - vparity * np.deg2rad(v3yangle)
    return np.array([[vparity * np.cos(rel), np.sin(rel)],
                     [vparity * -np.sin(rel), np.cos(rel)]])


def _has_pointing(exp: Any) -> bool:
    info = getattr(exp, "wcsinfo", None) or {}
    return all(info.get(k) is not None for k in POINTING_KEYS)


def _reference_pointing(exp: Any, crval: tuple[float, float]) -> tuple[np.ndarray, float, str]:
    """PC matrix, pixel scale (deg) and source of the frame's orientation and scale."""
    name = exp.name or "exposure0"
    if _has_pointing(exp):
        info = exp.wcsinfo
        try:
            pc = _rotation_matrix(float(info["roll_ref"]), float(info["v3yangle"]),
                                  int(info["vparity"]))
        except (TypeError, ValueError) as err:
            msg = f"Exposure {name!r}: its wcsinfo pointing values are unusable ({err})."
            raise WCSError(msg, exposure=name) from err
        x, y = _world_to_pixel(exp.wcs, float(info["ra_ref"]), float(info["dec_ref"]))
        return pc, _one_pixel_scale(exp.wcs, x, y), "wcsinfo"
    ny, nx = exp.shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    theta, parity = jacobian_orientation(exp.wcs, cx, cy, crval, name=name)
    return _rotation_matrix(-theta, 0.0, parity), _one_pixel_scale(exp.wcs, cx, cy), "wcs"


def jacobian_orientation(wcs: Any, x: float, y: float, crval: tuple[float, float], *,
                         name: str = "exposure") -> tuple[float, int]:
    """Rotation (deg) and parity (+1 or -1) of a WCS at detector pixel ``(x, y)``, measured
    in the tangent plane at ``crval``: ``_rotation_matrix(-theta, 0, parity)`` is its PC."""
    ra, dec = _forward(wcs, np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
    plane = models.RotateCelestial2Native(crval[0], crval[1], 180.0) | models.Sky2Pix_TAN()
    px, py = plane(ra, dec)
    jac = np.array([[px[1] - px[0], px[2] - px[0]], [py[1] - py[0], py[2] - py[0]]])
    det = float(np.linalg.det(jac))
    if not math.isfinite(det) or det == 0.0:
        msg = (f"Exposure {name!r}: its WCS has a singular or non-finite Jacobian at pixel "
               f"({x:g}, {y:g}) (det={det!r}); check its WCS.")
        raise WCSError(msg, exposure=name)
    parity = -1 if det < 0 else 1
    m = jac @ np.diag([float(parity), 1.0])
    theta = math.degrees(math.atan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    return theta, parity


def _check_detectors(exposures: Sequence[Any]) -> None:
    for exp in exposures:
        ny, nx = exp.shape
        if min(ny, nx) < MIN_DETECTOR_SIZE:
            msg = (f"Exposure {exp.name!r} is {ny} x {nx} pixels: drizzling needs at least "
                   f"{MIN_DETECTOR_SIZE} x {MIN_DETECTOR_SIZE} (each pixel's corners come from "
                   "its neighbours in the pixel map); remove it from the inputs, or run "
                   "with resample_data=False.")
            raise InputError(msg, exposure=exp.name)


def _too_large(exposures: Sequence[Any], footprints: list[list[np.ndarray]],
               crval: tuple[float, float], nx_f: float, ny_f: float, scale: float,
               max_output_pixels: int) -> OutputTooLargeError:
    """The error for an absurd frame, naming the exposure far from the others."""
    names = [e.name for e in exposures]
    far, dist, other, span = far_exposure(footprints, names)
    allv = np.vstack([np.vstack(p) for p in footprints])
    reach = float(np.max(separation_deg(_unit_vectors(allv[:, 0], allv[:, 1]),
                                        _unit_vectors(np.array(crval[0]),
                                                      np.array(crval[1])))))
    if reach < MAX_TANGENT_REACH_DEG and math.isfinite(nx_f * ny_f):
        nx_i, ny_i = int(min(nx_f + 0.5, 2**62)), int(min(ny_f + 0.5, 2**62))
        size = f"would be about {ny_i} x {nx_i} pixels"
    else:  # no tangent plane holds it: quote the arc length at the first exposure's scale
        nx_i = ny_i = angular_extent_pixels(span, scale)
        size = (f"cannot be a tangent plane (the footprints reach {reach:.4g} deg from its "
                f"centre); spanning them would take at least {nx_i} x {nx_i} pixels")
    nbytes = nx_i * ny_i * 4
    where = ""
    if len(exposures) > 1:
        where = (f" The footprints span {span:.4g} deg of sky; exposure {far!r} lies "
                 f"{dist:.4g} deg from the nearest other exposure ({other!r}): its WCS or "
                 "pointing is probably wrong.")
    msg = (f"The output frame {size} at {scale * 3600:.4g} arcsec per pixel "
           f"({nbytes / 2**30:.3g} GiB per float32 frame), more than "
           f"max_output_pixels={max_output_pixels}.{where} Remove or fix that exposure, or "
           "raise max_output_pixels for a genuinely large mosaic.")
    return OutputTooLargeError(msg, shape=(ny_i, nx_i), nbytes=nbytes,
                               exposure=far if len(exposures) > 1 else None)


def compute_output_frame(
    exposures: Sequence[Any],
    *,
    max_output_pixels: int = 2**32,
) -> OutputFrame:
    """The reference's output frame for these exposures (see the module docstring).

    Parameters
    ----------
    exposures : sequence of Exposure
        Uses each exposure's ``wcs``, ``shape``, ``name`` and ``wcsinfo``: ``s_region`` of
        every exposure that has one (else its WCS footprint), and the first exposure's
        ``ra_ref, dec_ref, roll_ref, v3yangle, vparity`` (else the fallback).
    max_output_pixels : int, optional
        Refuse frames larger than this (bad pointing metadata gives absurd mosaics).

    Returns
    -------
    OutputFrame

    Raises
    ------
    InputError
        A detector smaller than 2 x 2 pixels (drizzle cannot take it), naming it.
    OutputTooLargeError
        Before any heavy work, when the frame would have more than ``max_output_pixels``
        pixels (or no tangent plane can hold the footprints); names the exposure whose
        footprint lies far from the others.
    WCSError
        A footprint that is not finite, or unusable pointing metadata.
    """
    exposures = list(exposures)
    if not exposures:
        msg = "No exposures: the output frame needs at least one."
        raise InputError(msg)
    _check_detectors(exposures)
    footprints = [exposure_footprints(exp) for exp in exposures]
    allv = np.vstack([np.vstack(polys) for polys in footprints])
    crval = _fiducial(allv[:, 0], allv[:, 1])
    pc, scale, source = _reference_pointing(exposures[0], crval)
    transform = (models.AffineTransformation2D(matrix=pc)
                 | (models.Scale(scale) & models.Scale(scale))
                 | models.Pix2Sky_TAN()
                 | models.RotateNative2Celestial(crval[0], crval[1], 180.0))
    inverse = transform.inverse
    with np.errstate(invalid="ignore"):
        domain = np.hstack([np.asarray(inverse(*poly.T)) for polys in footprints
                            for poly in polys])
        dmin = np.min(domain, axis=1)
        dmax = np.max(domain, axis=1)
    native = np.asarray(inverse(*crval), dtype=np.float64)
    offsets = native - dmin
    dmax = dmax + offsets
    nx_f, ny_f = float(dmax[0]), float(dmax[1])
    # Vertices beyond 90 deg of the fiducial project to NaN: no tangent plane holds them.
    if (not np.all(np.isfinite(domain)) or not math.isfinite(nx_f * ny_f)
            or (nx_f + 0.5) * (ny_f + 0.5) > max_output_pixels):
        raise _too_large(exposures, footprints, crval, nx_f, ny_f, scale,
                         max_output_pixels)
    shape = (max(int(ny_f + 0.5), 1), max(int(nx_f + 0.5), 1))
    crpix = (float(offsets[0]), float(offsets[1]))
    wcs = make_tan_wcs(crval, pc, crpix, shape, cdelt=scale)
    log.info("Output frame: %d x %d pixels at %.4g arcsec/pixel, centred at (%.6f, %.6f) "
             "(orientation and scale from %s)", shape[0], shape[1], scale * 3600, crval[0],
             crval[1], "wcsinfo" if source == "wcsinfo" else "the first exposure's WCS")
    return OutputFrame(wcs=wcs, shape=shape, crval=crval, pc=pc, cdelt=scale, crpix=crpix,
                       source=source)
