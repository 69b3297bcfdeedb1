"""Kernels of the IFU cube method on one block (pure numpy, no Dask; docs/algorithm.md
section 4.2).

Conventions: sky positions are tangent-plane (gnomonic) offsets ``(xi, eta)`` in arcsec
about one reference point, xi towards east (increasing RA), eta towards north. A cube grid
is regular in ``(wavelength, eta, xi)``; spaxel ``(p, j, i)`` is centred at
``(wave0 + p * dwave, eta0 + j * scale, xi0 + i * scale)``.

Every accumulation runs over its points in the order given, one ``np.bincount`` per fixed
neighbour offset, offsets in a fixed order: a spaxel (or detector pixel) therefore sums the
same contributions in the same order whatever subset of other points a block holds, which
makes results bit-identical for any chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod._exceptions import OutputTooLargeError, WCSError

__all__ = ["ARCSEC", "MAX_SPAXELS", "WEIGHTINGS", "CubeGrid", "build_grid", "sky_to_plane",
           "plane_to_sky", "point_weights", "accumulate_cube", "blot_points"]

ARCSEC = 3600.0
WEIGHTINGS = ("emsm", "msm")
#: Smallest normalised distance of the modified Shepard weight (as cube_build's lower limit).
_MSM_FLOOR = 1e-3
_MSM_POWER = 2.0
#: Largest cube built (spaxels); beyond it the WCS or the scales are almost surely wrong.
MAX_SPAXELS = 2_000_000_000


def sky_to_plane(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection of ``(ra, dec)`` degrees about ``(ra0, dec0)``: (xi, eta) arcsec."""
    a = np.deg2rad(np.asarray(ra, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec, dtype=np.float64))
    a0, d0 = math.radians(ra0), math.radians(dec0)
    da = a - a0
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(da)
    xi = np.cos(d) * np.sin(da) / cos_c
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(da)) / cos_c
    return np.rad2deg(xi) * ARCSEC, np.rad2deg(eta) * ARCSEC


def plane_to_sky(xi: np.ndarray, eta: np.ndarray, ra0: float, dec0: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`sky_to_plane`: (xi, eta) arcsec -> (ra, dec) degrees."""
    x = np.deg2rad(np.asarray(xi, dtype=np.float64) / ARCSEC)
    y = np.deg2rad(np.asarray(eta, dtype=np.float64) / ARCSEC)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    denom = math.cos(d0) - y * math.sin(d0)
    ra = a0 + np.arctan2(x, denom)
    dec = np.arctan2(math.sin(d0) + y * math.cos(d0), np.hypot(x, denom))
    return np.mod(np.rad2deg(ra), 360.0), np.rad2deg(dec)


@dataclass(frozen=True)
class CubeGrid:
    """The common cube grid of all exposures (regular in wavelength, eta, xi).

    Attributes
    ----------
    ra0, dec0 : float
        Tangent point (degrees).
    xi0, eta0 : float
        Centre of spaxel ``i = 0`` / ``j = 0`` (arcsec).
    scale : float
        Spatial sampling (arcsec per spaxel).
    wave0, dwave : float
        Wavelength of plane 0 and the step between planes (units of the WCS).
    shape : tuple of int
        ``(n_wave, ny, nx)``.
    roi : tuple of float
        Region of interest used to build the cubes: (spatial arcsec, spectral).
    weighting : str
        ``"emsm"`` or ``"msm"``.
    """

    ra0: float
    dec0: float
    xi0: float
    eta0: float
    scale: float
    wave0: float
    dwave: float
    shape: tuple[int, int, int]
    roi: tuple[float, float]
    weighting: str = "emsm"

    @property
    def xi(self) -> np.ndarray:
        """Spaxel centres along x (arcsec)."""
        return self.xi0 + self.scale * np.arange(self.shape[2])

    @property
    def eta(self) -> np.ndarray:
        """Spaxel centres along y (arcsec)."""
        return self.eta0 + self.scale * np.arange(self.shape[1])

    @property
    def wavelength(self) -> np.ndarray:
        """Plane centres."""
        return self.wave0 + self.dwave * np.arange(self.shape[0])

    def planes_for(self, wave_lo: float, wave_hi: float) -> tuple[int, int]:
        """Half-open plane range ``[p0, p1)`` whose centres lie in ``[wave_lo, wave_hi]``."""
        p0 = math.ceil((wave_lo - self.wave0) / self.dwave - 1e-9)
        p1 = math.floor((wave_hi - self.wave0) / self.dwave + 1e-9) + 1
        return max(p0, 0), min(max(p1, 0), self.shape[0])


def point_weights(d2_spatial: np.ndarray, d2_spectral: np.ndarray, weighting: str,
                  scale_rad: float) -> np.ndarray:
    """Weight of a point at squared normalised distances from a spaxel centre.

    Distances are in grid steps (spatial: ``scale``; spectral: ``dwave``). As jwst
    ``cube_build``: ``emsm`` ``w = exp(-(d_xy^2 + d_w^2) / scale_rad)``, ``msm``
    ``w = 1 / max(d, floor)^p`` with ``d = sqrt(d_xy^2 + d_w^2)``, ``p = 2``.
    """
    d2 = d2_spatial + d2_spectral
    if weighting == "emsm":
        return np.exp(-d2 / scale_rad)
    dist = np.maximum(np.sqrt(d2), _MSM_FLOOR)
    return 1.0 / dist**_MSM_POWER


def accumulate_cube(xi: np.ndarray, eta: np.ndarray, wave: np.ndarray, flux: np.ndarray,
                    grid: CubeGrid, planes: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums of points onto planes ``[p0, p1)`` of the grid.

    A point contributes to every spaxel whose centre lies within ``roi`` of it: spatial
    distance ``<= roi[0]`` and wavelength distance ``<= roi[1]`` (a cylinder, as cube_build).

    Returns
    -------
    flux_sum, weight_sum : ndarray of float64, shape (p1 - p0, ny, nx)
        Divide to get the cube (spaxels with zero weight have no point).
    """
    p0, p1 = planes
    n_wave, ny, nx = p1 - p0, grid.shape[1], grid.shape[2]
    size = n_wave * ny * nx
    num = np.zeros(size)
    den = np.zeros(size)
    if n_wave <= 0 or np.size(flux) == 0:
        return num.reshape(n_wave, ny, nx), den.reshape(n_wave, ny, nx)
    fx = (np.asarray(xi, np.float64) - grid.xi0) / grid.scale
    fy = (np.asarray(eta, np.float64) - grid.eta0) / grid.scale
    fz = (np.asarray(wave, np.float64) - grid.wave0) / grid.dwave
    flux = np.asarray(flux, np.float64)
    rs = grid.roi[0] / grid.scale
    rw = grid.roi[1] / grid.dwave
    bx, by, bz = np.floor(fx), np.floor(fy), np.floor(fz)
    ns, nw = math.ceil(rs), math.ceil(rw)
    scale_rad = max(rs, 1e-12)
    for dz in range(-nw, nw + 2):
        iz = bz + dz
        d2w = (iz - fz) ** 2
        zsel = (iz >= p0) & (iz < p1) & (d2w <= rw * rw)
        if not zsel.any():
            continue
        for dy in range(-ns, ns + 2):
            iy = by + dy
            d2y = (iy - fy) ** 2
            ysel = zsel & (iy >= 0) & (iy < ny) & (d2y <= rs * rs)
            if not ysel.any():
                continue
            for dx in range(-ns, ns + 2):
                ix = bx + dx
                d2xy = d2y + (ix - fx) ** 2
                sel = ysel & (ix >= 0) & (ix < nx) & (d2xy <= rs * rs)
                if not sel.any():
                    continue
                w = point_weights(d2xy[sel], d2w[sel], grid.weighting, scale_rad)
                flat = ((iz[sel] - p0) * ny + iy[sel]) * nx + ix[sel]
                flat = flat.astype(np.int64)
                num += np.bincount(flat, weights=w * flux[sel], minlength=size)
                den += np.bincount(flat, weights=w, minlength=size)
    return num.reshape(n_wave, ny, nx), den.reshape(n_wave, ny, nx)


def blot_points(x: np.ndarray, y: np.ndarray, flux: np.ndarray,
                box: tuple[int, int, int, int]) -> np.ndarray:
    """The reference's cube blot onto detector pixels ``box = (y0, y1, x0, x1)``.

    Each point (a median-cube spaxel centre mapped to detector ``(x, y)``) adds
    ``exp(-d) * flux`` and ``exp(-d)`` to every pixel centre with ``|dx| <= 1`` and
    ``|dy| <= 1`` (``d = hypot(dx, dy)``); the blot is their ratio, NaN where no point fell.

    Returns
    -------
    ndarray of float32, shape (y1 - y0, x1 - x0)
    """
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    num = np.zeros(h * w)
    den = np.zeros(h * w)
    x = np.asarray(x, np.float64) - x0
    y = np.asarray(y, np.float64) - y0
    flux = np.asarray(flux, np.float64)
    bx, by = np.floor(x), np.floor(y)
    for oy in (-1, 0, 1):
        py = by + oy
        dy = py - y
        ysel = (py >= 0) & (py < h) & (np.abs(dy) <= 1.0)
        for ox in (-1, 0, 1):
            px = bx + ox
            dx = px - x
            sel = ysel & (px >= 0) & (px < w) & (np.abs(dx) <= 1.0)
            if not sel.any():
                continue
            wgt = np.exp(-np.hypot(dx[sel], dy[sel]))
            flat = (py[sel] * w + px[sel]).astype(np.int64)
            num += np.bincount(flat, weights=wgt * flux[sel], minlength=h * w)
            den += np.bincount(flat, weights=wgt, minlength=h * w)
    out = np.full(h * w, np.nan)
    good = den > 0
    out[good] = num[good] / den[good]
    return out.reshape(h, w).astype(np.float32)


def _hull_area(points: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    pts = np.unique(points, axis=0)  # sorted: the area does not depend on band order
    if len(pts) < 3:
        return 0.0
    try:
        return float(ConvexHull(pts).volume)
    except QhullError:
        return 0.0


def _sig(value: float) -> float:
    """Round a derived number to 9 significant digits (insensitive to summation order)."""
    return float(f"{value:.9g}")


def build_grid(stats: list[list[dict[str, Any]]], ra0: float, dec0: float, *,
                spatial_scale: float | None, spectral_scale: float | None,
                roi: tuple[float, float] | None, weighting: str) -> CubeGrid:
    """The common grid from the coordinate bands' statistics (see :mod:`..cube_method`).

    Steps: median sampling along the dispersion axis (wavelength) and the other detector
    axis (sky), unless given; extent: union of the bands; default region of interest
    ``(max(scale, sqrt(area / points per wavelength step)), dwave)``. Derived numbers are
    rounded to 9 significant digits so they cannot depend on the order bands came in.
    """
    bands = [b for per_exp in stats for b in per_exp if b["n"] > 0]
    if not bands:
        msg = "No exposure has a pixel with a finite (ra, dec, wavelength); check the WCS."
        raise WCSError(msg)

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([b[key] for b in bands])

    w0, w1 = np.median(pooled("wave0")), np.median(pooled("wave1"))
    disp = 0 if w0 > w1 else 1
    dwave = spectral_scale or _sig(float(np.median(pooled(f"wave{disp}"))))
    sky = pooled(f"sky{1 - disp}")
    scale = spatial_scale or _sig(float(np.median(sky[sky > 0])))
    if not (dwave > 0 and scale > 0):
        msg = (f"Could not derive the cube sampling from the WCS (spatial {scale!r}, spectral "
               f"{dwave!r}); give cube_spatial_scale and cube_spectral_scale.")
        raise WCSError(msg)
    lo = {key: min(b[key][0] for b in bands) for key in ("xi", "eta", "wave")}
    hi = {key: max(b[key][1] for b in bands) for key in ("xi", "eta", "wave")}
    nx = math.ceil((hi["xi"] - lo["xi"]) / scale) + 1
    ny = math.ceil((hi["eta"] - lo["eta"]) / scale) + 1
    nw = math.ceil((hi["wave"] - lo["wave"]) / dwave) + 1
    if nx * ny * nw > MAX_SPAXELS:
        msg = (f"The common cube would have shape {(nw, ny, nx)} ({nx * ny * nw} spaxels); "
               "check the exposures' WCS or give larger cube_spatial_scale / "
               "cube_spectral_scale.")
        raise OutputTooLargeError(msg, shape=(ny, nx), nbytes=4 * nx * ny * nw)
    if roi is None:
        spacings = []
        for per_exp in stats:
            good = [b for b in per_exp if b["n"] > 0]
            if not good:
                continue
            area = _hull_area(np.concatenate([b["hull"] for b in good]))
            span = max(b["wave"][1] for b in good) - min(b["wave"][0] for b in good)
            per_step = sum(b["n"] for b in good) * dwave / max(span, dwave)
            spacings.append(math.sqrt(area / per_step) if per_step > 0 else 0.0)
        roi = (_sig(max(scale, float(np.median(spacings)))), dwave)
    xi0 = _sig(0.5 * (lo["xi"] + hi["xi"]) - 0.5 * (nx - 1) * scale)
    eta0 = _sig(0.5 * (lo["eta"] + hi["eta"]) - 0.5 * (ny - 1) * scale)
    return CubeGrid(ra0=ra0, dec0=dec0, xi0=xi0, eta0=eta0, scale=float(scale),
                    wave0=float(lo["wave"]), dwave=float(dwave), shape=(nw, ny, nx),
                    roi=(float(roi[0]), float(roi[1])), weighting=weighting)
