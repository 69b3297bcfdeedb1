"""Pointings of a simulated dither pattern: each detector's WCS and the JWST ``meta.wcsinfo``
values that describe it (what a real file's metadata would carry)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.datasets._wcs import (
    detector_wcsinfo,
    ideal_to_v2v3,
    make_detector_wcs,
    make_telescope_wcs,
    sky_at_v2v3,
)

__all__ = ["DetectorPointing", "dither_pointings", "WCS_MODELS"]

WCS_MODELS = ("simple", "telescope")
#: NIRCam-like aperture of the first detector (arcsec) and its ideal-frame angles.
_V2_REF, _V3_REF, _V3YANGLE, _VPARITY = -82.0, -498.0, -0.35, -1


@dataclass
class DetectorPointing:
    """One detector of one exposure: its WCS, metadata and place in the pattern."""

    wcs: Any
    wcsinfo: dict
    exposure: int
    detector: int


def _telescope_crpix(shape: tuple[int, int]) -> tuple[float, float]:
    """Reference point 4 % of the detector off its centre (as real apertures are)."""
    ny, nx = shape
    return (nx - 1) / 2.0 + 0.04 * nx, (ny - 1) / 2.0 - 0.03 * ny


def dither_pointings(
    offsets: np.ndarray,
    rolls: np.ndarray,
    *,
    wcs_model: str,
    pointing: tuple[float, float],
    roll_deg: float,
    shape: tuple[int, int],
    pixel_scale_arcsec: float,
    n_detectors: int,
) -> list[DetectorPointing]:
    """Every detector of every exposure, exposures in order, detectors side by side in x.

    ``offsets`` are dither offsets in pixels, ``rolls`` small roll changes (deg) added to
    ``roll_deg``. ``wcs_model="simple"`` gives :func:`make_detector_wcs` WCSs (offsets along
    RA and Dec) described by :func:`detector_wcsinfo`; ``"telescope"`` gives
    :func:`make_telescope_wcs` WCSs: the telescope attitude moves so that the first detector's
    reference point lands ``offsets`` ideal-frame pixels away, and every detector's
    ``ra_ref, dec_ref, roll_ref`` are those of its own aperture under that attitude.
    """
    if wcs_model not in WCS_MODELS:
        msg = f"wcs_model must be one of {WCS_MODELS}, got {wcs_model!r}."
        raise ValueError(msg)
    if n_detectors < 1 or (n_detectors > 1 and wcs_model != "telescope"):
        msg = (f"n_detectors={n_detectors}: several detectors per exposure need "
               "wcs_model='telescope' (one attitude, one aperture per detector).")
        raise ValueError(msg)
    ra0, dec0 = pointing
    scale_deg = pixel_scale_arcsec / 3600.0
    cosd = math.cos(math.radians(dec0))
    out = []
    if wcs_model == "simple":
        for k, (off, roll) in enumerate(zip(offsets, rolls, strict=True)):
            ra, dec = ra0 + off[0] * scale_deg / cosd, dec0 + off[1] * scale_deg
            total = float(roll_deg + roll)
            wcs = make_detector_wcs(ra=ra, dec=dec, roll_deg=total, shape=shape,
                                    pixel_scale_arcsec=pixel_scale_arcsec)
            out.append(DetectorPointing(wcs, detector_wcsinfo(ra=ra, dec=dec, roll_deg=total),
                                        k, 0))
        return out
    nx = shape[1]
    base = {"ra_ref": ra0, "dec_ref": dec0, "roll_ref": float(roll_deg) % 360.0,
            "v2_ref": _V2_REF, "v3_ref": _V3_REF, "v3yangle": _V3YANGLE, "vparity": _VPARITY}
    crpix = _telescope_crpix(shape)
    gap = 0.05 * nx
    for k, (off, roll) in enumerate(zip(offsets, rolls, strict=True)):
        # The attitude that puts the first aperture's reference point at the dithered spot.
        v2, v3 = ideal_to_v2v3(base)(-off[0] * pixel_scale_arcsec, -off[1] * pixel_scale_arcsec)
        moved = sky_at_v2v3(base, float(v2), float(v3))
        attitude = dict(base, ra_ref=moved["ra_ref"], dec_ref=moved["dec_ref"],
                        roll_ref=(moved["roll_ref"] + float(roll)) % 360.0)
        for j in range(n_detectors):
            dx = j * (nx + gap) * pixel_scale_arcsec
            v2j, v3j = ideal_to_v2v3(base)(dx, 0.0)
            info = sky_at_v2v3(attitude, float(v2j), float(v3j)) if j else dict(attitude)
            wcs = make_telescope_wcs(info, shape=shape, pixel_scale_arcsec=pixel_scale_arcsec,
                                     crpix=crpix)
            out.append(DetectorPointing(wcs, info, k, j))
    return out


def field_box(pointings: list[DetectorPointing], shape: tuple[int, int],
              margin_px: float, pixel_scale_arcsec: float) -> tuple[float, float, float, float]:
    """(ra_min, ra_max, dec_min, dec_max) of the first exposure's detectors, shrunk by a
    margin: where the simulated sources go."""
    from daskod.geometry._footprints import wcs_footprint

    first = [p for p in pointings if p.exposure == 0]
    fp = np.vstack([wcs_footprint(p.wcs, shape) for p in first])
    ra = fp[:, 0]
    ra = np.where(ra - ra[0] > 180.0, ra - 360.0, np.where(ra - ra[0] < -180.0, ra + 360.0, ra))
    margin = margin_px * pixel_scale_arcsec / 3600.0
    cosd = math.cos(math.radians(float(np.mean(fp[:, 1]))))
    return (float(ra.min() + margin / cosd), float(ra.max() - margin / cosd),
            float(fp[:, 1].min() + margin), float(fp[:, 1].max() - margin))
