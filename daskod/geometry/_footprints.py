"""Exposure footprints on the sky: from ``S_REGION`` strings or from the WCS.

The reference builds its output frame from the footprints written in each file's
``meta.wcsinfo.s_region`` (not from the WCS), so an exposure that carries one is measured by
it; other exposures (arrays and a gwcs from Python) use the WCS at the detector's pixel edges,
which is what the pipeline's ``assign_wcs`` writes into ``S_REGION``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from daskod._exceptions import WCSError

__all__ = ["parse_s_region", "s_region_string", "wcs_footprint", "exposure_footprints",
           "separation_deg", "far_exposure"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_s_region(s_region: str, *, name: str = "exposure") -> list[np.ndarray]:
    """The polygons of an ``S_REGION`` string, each an ``(N, 2)`` array of (ra, dec) degrees.

    ``"POLYGON ICRS ra1 dec1 ra2 dec2 ..."``; several ``POLYGON`` parts give several
    polygons (as the reference's ``multi_sregion_to_list``).
    """
    parts = [p for p in re.split(r"(?i)polygon", str(s_region)) if p.strip()]
    polygons = []
    for part in parts:
        values = np.array([float(v) for v in _NUMBER.findall(part)], dtype=np.float64)
        if values.size < 6 or values.size % 2 or not np.all(np.isfinite(values)):
            msg = (f"Exposure {name!r}: its S_REGION {s_region!r} is not a polygon of at least "
                   "three (ra, dec) vertices; fix meta.wcsinfo.s_region or remove it.")
            raise WCSError(msg, exposure=name)
        polygons.append(values.reshape(-1, 2))
    if not polygons:
        msg = f"Exposure {name!r}: its S_REGION {s_region!r} holds no polygon."
        raise WCSError(msg, exposure=name)
    return polygons


def s_region_string(footprint: np.ndarray) -> str:
    """``S_REGION`` text of one polygon, formatted as the pipeline writes it (9 decimals)."""
    fp = np.asarray(footprint, dtype=np.float64).copy()
    fp[:, 0] %= 360.0
    return "POLYGON ICRS  " + " ".join(f"{v:.9f}" for v in fp.ravel())


def _forward(wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    forward = getattr(wcs, "forward_transform", None)
    world = forward(x, y) if forward is not None else wcs.pixel_to_world_values(x, y)
    return np.asarray(world[0], dtype=np.float64), np.asarray(world[1], dtype=np.float64)


def wcs_footprint(wcs: Any, shape: tuple[int, int]) -> np.ndarray:
    """Sky (ra, dec) of the detector's four outer pixel edges, clockwise from (-0.5, -0.5).

    The same vertices as the pipeline's ``S_REGION`` (``compute_s_region_imaging`` with
    ``center=False`` on the bounding box ``(-0.5, n - 0.5)``).
    """
    ny, nx = shape
    x = np.array([-0.5, -0.5, nx - 0.5, nx - 0.5])
    y = np.array([-0.5, ny - 0.5, ny - 0.5, -0.5])
    ra, dec = _forward(wcs, x, y)
    return np.stack([ra % 360.0, dec], axis=1)


def exposure_footprints(exp: Any) -> list[np.ndarray]:
    """Footprint polygons of one exposure: its ``wcsinfo["s_region"]`` if it has one, else
    its WCS at the detector edges. Non-finite vertices raise :class:`WCSError`."""
    name = getattr(exp, "name", None) or "exposure"
    s_region = (getattr(exp, "wcsinfo", None) or {}).get("s_region")
    if s_region:
        polygons = parse_s_region(s_region, name=name)
    else:
        polygons = [wcs_footprint(exp.wcs, exp.shape)]
        if not np.all(np.isfinite(polygons[0])):
            msg = (f"Exposure {name!r}: its WCS gives non-finite sky coordinates at the "
                   "detector corners; the WCS must cover the whole detector.")
            raise WCSError(msg, exposure=name)
    return polygons


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra_r, dec_r = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r),
                     np.sin(dec_r)], axis=-1)


def separation_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors (stable at all angles)."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.rad2deg(np.arctan2(cross, dot))


def far_exposure(footprints: list[list[np.ndarray]], names: list[str]
                 ) -> tuple[str, float, str, float]:
    """The exposure whose footprint lies farthest from the others, for error messages.

    Returns
    -------
    name, distance, other, span
        The exposure, its distance in degrees from the nearest other exposure's centre, that
        other exposure, and the largest separation between any two footprint vertices.
    """
    centres = []
    for polys in footprints:
        v = _unit_vectors(*np.vstack(polys).T).mean(axis=0)
        centres.append(v / np.linalg.norm(v))
    centres = np.array(centres)
    dist = separation_deg(centres[:, None, :], centres[None, :, :])
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    # With two exposures both are "far"; name the second (the first sets the frame).
    k = int(np.argmax(nearest[::-1]))
    k = len(names) - 1 - k
    other = int(np.argmin(dist[k]))
    allv = _unit_vectors(*np.vstack([np.vstack(p) for p in footprints]).T)
    # The span: the largest vertex separation (small sets; at most a few hundred vertices).
    span = float(np.max(separation_deg(allv[:, None, :], allv[None, :, :])))
    return names[k], float(nearest[k]), names[other], span


def angular_extent_pixels(span_deg: float, scale_deg: float) -> int:
    """Pixels a frame must have on a side to span ``span_deg`` at ``scale_deg`` per pixel."""
    if not (math.isfinite(span_deg) and math.isfinite(scale_deg)) or scale_deg <= 0:
        return -1
    # Beyond 90 deg a tangent plane cannot hold the sky at all; quote the arc length instead.
    return int(min(span_deg / scale_deg, 2**62))
