"""The IFU cube method (``ifu_method="cube"``; the reference before 2023, docs/algorithm.md
section 4.2).

Phases (each one Dask task per block; kernels in :mod:`daskod.ifu._cube_kernels`):

1. **coordinates** (geometry, always computed at build time): every exposure's 3-D WCS is
   evaluated on its detector pixels, one band of rows per task, and stored as tangent-plane
   offsets ``(xi, eta)`` arcsec about one reference point (the centre of the first exposure)
   plus wavelength. Each task also returns its band's extent and sampling.
2. **grid**: one grid for all exposures. Spatial step: the median sky distance between pixels
   adjacent along the detector axis that does not disperse (the along-slice pixel spacing);
   wavelength step: the median per-pixel wavelength step along the dispersion axis (the axis
   where wavelength changes most); either is replaced by ``spatial_scale`` /
   ``spectral_scale`` when given. Extent: the union of all footprints. Region of interest
   (``roi``) by default: spatial ``max(scale, sqrt(A / N))`` with ``A`` the footprint area
   and ``N`` the detector points per wavelength step of one exposure (the mean point
   spacing, so single-exposure cubes have no holes); spectral one wavelength step.
3. **cube**: per exposure and chunk of wavelength planes, each spaxel is the weighted mean of
   that exposure's detector points within the region of interest (spatial distance
   ``<= roi[0]`` and wavelength distance ``<= roi[1]``), with usable DQ only
   (``dq & bad_mask == 0``) and finite SCI. Weights (distances in grid steps):
   ``emsm`` ``exp(-(dxy^2 + dw^2) / (roi[0] / scale))``; ``msm`` (modified Shepard)
   ``1 / max(d, 1e-3)^2``, as jwst ``cube_build``. Spaxels with no point are NaN.
4. **threshold / median**: per exposure ``maskpt`` times the 3-sigma-clipped mean of its
   non-zero spaxel weights (imaging's ``compute_weight_threshold``); lower-weight spaxels
   are masked; the NaN-median over exposures per spaxel, one task per plane chunk, written
   to ``ifu_cube/median`` (the cube never needs to be whole in memory).
5. **flag**: per exposure and detector tile (with a 2-pixel halo), the median-cube spaxel
   centres of the wavelength planes that tile needs are mapped to the detector through the
   exposure's backward transform; the blot of a pixel is ``sum(exp(-d) f) / sum(exp(-d))``
   over the points with ``|dx| <= 1`` and ``|dy| <= 1`` pixel (the reference CubeBlot); then
   the imaging rule ``flag_resampled_crs`` (snr, scale, derivative of the blot), DQ |= 17 and
   DO_NOT_USE wherever SCI/ERR/VAR are NaN; DQ tiles are written to ``ifu_cube/dq/<k>``.

Every reduction visits its contributions in one fixed order (see the kernels), so flags are
identical for any ``plane_chunk``, tile size and scheduler.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskod._exceptions import WCSError
from daskod.exposure import Exposure
from daskod.ifu._cube_kernels import WEIGHTINGS, CubeGrid
from daskod.ifu._cube_tasks import to_world, world_roles

__all__ = ["check_cube_wcs", "check_cube_params", "reference_point", "default_chunks"]


def check_cube_wcs(exp: Exposure) -> None:
    """Refuse an exposure whose WCS cannot give (ra, dec, wavelength) and map back."""
    wcs = exp.wcs
    if wcs is None:
        msg = (f"Exposure {exp.name!r} has no WCS; ifu_method='cube' needs a 3-D WCS "
               "(detector -> ra, dec, wavelength), or use ifu_method='difference'.")
        raise WCSError(msg, exposure=exp.name)
    try:
        world_roles(wcs)
    except ValueError as err:
        n_world = getattr(wcs, "world_n_dim", "?")
        msg = (f"Exposure {exp.name!r}: its WCS ({type(wcs).__name__}, {n_world} world axes) "
               f"has no spectral axis ({err}); ifu_method='cube' needs a gwcs detector -> "
               "(ra, dec, wavelength) (use ifu_method='difference' without one).")
        raise WCSError(msg, exposure=exp.name) from None
    try:
        wcs.backward_transform  # noqa: B018 - raises when there is no inverse
    except NotImplementedError:
        msg = (f"Exposure {exp.name!r}: its WCS has no backward transform (world -> "
               "detector), which the cube blot needs; use ifu_method='difference'.")
        raise WCSError(msg, exposure=exp.name) from None


def _check_params(weighting: str, roi: Any, spatial_scale: Any, spectral_scale: Any) -> None:
    if weighting not in WEIGHTINGS:
        msg = f"cube_weighting must be one of {WEIGHTINGS}, got {weighting!r}."
        raise ValueError(msg)
    for name, value in (("cube_spatial_scale", spatial_scale),
                        ("cube_spectral_scale", spectral_scale)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)
                                      and value > 0):
            msg = f"{name} must be a positive number or None, got {value!r}."
            raise ValueError(msg)
    if roi is not None:
        pair = tuple(roi) if isinstance(roi, list | tuple) else ()
        if len(pair) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) and v > 0
                                     for v in pair):
            msg = (f"cube_roi must be (spatial arcsec, spectral) positive numbers or None, "
                   f"got {roi!r}.")
            raise ValueError(msg)


def _reference_point(exp: Exposure) -> tuple[float, float]:
    """Median (ra, dec) of a coarse grid of the first exposure's slice pixels."""
    ny, nx = exp.shape
    yy, xx = np.mgrid[0:ny:4, 0:nx:4].astype(np.float64)
    ra, dec, _ = to_world(exp.wcs, world_roles(exp.wcs), xx, yy)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        msg = (f"Exposure {exp.name!r}: its WCS gives no finite sky position on the detector; "
               "check the WCS (or its bounding box).")
        raise WCSError(msg, exposure=exp.name)
    ra, dec = np.asarray(ra)[ok], np.asarray(dec)[ok]
    ra = (ra - ra[0] + 180.0) % 360.0 - 180.0 + ra[0]
    return float(np.median(ra) % 360.0), float(np.median(dec))


#: Bytes per spaxel-plane of a median task per exposure (flux + weight read, masked copy)
#: and of its own sums; bytes per spaxel mapped by a blot task (float64 coordinates, masks);
#: bytes per detector pixel of a flag task (SCI, ERR, DQ, variances, blot, temporaries).
_MEDIAN_BYTES, _SUMS_BYTES, _BLOT_BYTES, _FLAG_BYTES = 12, 40, 120, 100


def _default_chunks(grid: CubeGrid, n_exp: int, budget_bytes: int, plane_chunk: int | None,
                    tile: int | None, shape: tuple[int, int]) -> tuple[int, int]:
    """Planes per chunk and detector tile side: as given, else what fits ``budget_bytes``.

    A flag task of side ``s`` maps about ``s + 4`` wavelength planes of spaxels (dispersion
    runs along one detector axis) and holds ``s**2`` detector pixels.
    """
    nw, ny, nx = grid.shape
    per_plane = ny * nx * (_MEDIAN_BYTES * n_exp + _SUMS_BYTES)
    planes = plane_chunk or int(budget_bytes // max(per_plane, 1))
    side = tile or plane_chunk
    if side is None:
        side = 16
        while side < max(shape) and ((2 * side + 4) * ny * nx * _BLOT_BYTES
                                     + (2 * side) ** 2 * _FLAG_BYTES) <= budget_bytes:
            side *= 2
    return int(max(1, min(planes, nw))), int(max(1, min(side, max(shape))))


def check_cube_params(items: list[Exposure], params: Any) -> None:
    """Every check of the cube method that needs no pixel: parameters and each WCS."""
    _check_params(params.cube_weighting, params.roi, params.cube_spatial_scale,
                  params.cube_spectral_scale)
    for exp in items:
        n = getattr(exp.wcs, "world_n_dim", None)
        if n is not None and n != 3:
            msg = (f"Exposure {exp.name!r}: its WCS has {n} world axes, no spectral axis; "
                   "ifu_method='cube' needs detector (x, y) -> (ra, dec, wavelength). Use "
                   "ifu_method='difference', which needs no WCS.")
            raise WCSError(msg, exposure=exp.name)
        check_cube_wcs(exp)


def reference_point(exp: Exposure) -> tuple[float, float]:
    """The sky point the cube's tangent plane is centred on (from the first exposure)."""
    return _reference_point(exp)


def default_chunks(grid: CubeGrid, n_exp: int, budget_bytes: int, plane_chunk: int | None,
                   tile: int | None, shape: tuple[int, int]) -> tuple[int, int]:
    """Planes per chunk and detector tile side (see :func:`_default_chunks`)."""
    return _default_chunks(grid, n_exp, budget_bytes, plane_chunk, tile, shape)
