"""Tasks of the IFU cube method: one block each, reading and writing the working store.

The arithmetic is in :mod:`daskod.ifu._cube_kernels`; the graph in
:mod:`daskod.ifu.cube_method`. WCS objects travel as pickled bytes and every task unpickles
its own copy, so no WCS object is shared between threads.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from daskod.flag._graph import halo_box, update_dq_block
from daskod.flag._kernels import flag_resampled_crs
from daskod.geometry._tiles import Tile
from daskod.ifu._cube_kernels import (
    CubeGrid,
    accumulate_cube,
    blot_points,
    plane_to_sky,
    sky_to_plane,
)
from daskod.io._store import array_of
from daskod.median._kernels import nanmedian_stack
from daskod.resample._weights import compute_weight_threshold

__all__ = ["HALO", "world_roles", "coordinates_band", "single_cube_chunk", "cube_weight_threshold",
           "median_chunk", "blot_cube_region", "blot_and_flag_cube_tile"]

#: Detector pixels around a tile the flag rule needs (3x3 growth + blot derivative).
HALO = 2


def world_roles(wcs: Any) -> tuple[int, int, int]:
    """Positions of (longitude, latitude, spectral) among the world axes of a gwcs.

    Raises ValueError when the output frame is not two celestial axes plus one spectral.
    """
    types = [str(t).upper() for t in getattr(getattr(wcs, "output_frame", None), "axes_type",
                                             ())]
    spatial = [i for i, t in enumerate(types) if t == "SPATIAL"]
    spectral = [i for i, t in enumerate(types) if t == "SPECTRAL"]
    if len(types) != 3 or len(spatial) != 2 or len(spectral) != 1:
        msg = f"world axes {types} are not (celestial, celestial, spectral)"
        raise ValueError(msg)
    return spatial[0], spatial[1], spectral[0]


def to_world(wcs: Any, roles: tuple[int, int, int], x: np.ndarray, y: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector (x, y) -> (lon, lat, wavelength) as float64, ignoring the bounding box."""
    world = wcs(x, y, with_bounding_box=False)
    return tuple(np.asarray(world[i], np.float64) for i in roles)  # type: ignore[return-value]


def to_detector(wcs: Any, roles: tuple[int, int, int], lon: np.ndarray, lat: np.ndarray,
                wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat, wavelength) -> detector (x, y) through the WCS's backward transform."""
    args: list[Any] = [None, None, None]
    for i, value in zip(roles, (lon, lat, wave), strict=True):
        args[i] = value
    x, y = wcs.backward_transform(*args)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def coordinates_band(payload: bytes, roles: tuple[int, int, int], y0: int, y1: int, nx: int,
                     ny: int, ra0: float, dec0: float, out: dict[str, Any],
                     index: tuple[int, int]) -> dict[str, Any]:
    """Evaluate one band of rows; store (xi, eta, wave); return extent and sampling samples.

    Rows ``[y0, y1]`` (one more than stored) are evaluated so that differences between
    adjacent rows do not depend on where bands start; sampling uses rows ``y % 4 == 0``.
    """
    wcs = pickle.loads(payload)  # a private copy: WCS objects are not shared by threads
    top = min(y1 + 1, ny)
    yy, xx = np.mgrid[y0:top, 0:nx].astype(np.float64)
    ra, dec, wave = to_world(wcs, roles, xx, yy)
    xi, eta = sky_to_plane(ra, dec, ra0, dec0)
    ok = np.isfinite(xi) & np.isfinite(eta) & np.isfinite(wave)
    for arr in (xi, eta, wave):
        arr[~ok] = np.nan
    n = y1 - y0
    for key, arr in (("xi", xi), ("eta", eta), ("wave", wave)):
        out[key].write(index, arr[:n])
    sampled = (np.arange(y0, top) % 4 == 0)[:, None]
    m = min(n, top - y0 - 1)  # pairs of rows (y, y + 1) with y in this band
    samples = {}
    with np.errstate(invalid="ignore"):
        for axis in (0, 1):
            lo = (slice(None, m), slice(None)) if axis == 0 else (slice(None, n), slice(None, -1))
            hi = (slice(1, m + 1), slice(None)) if axis == 0 else (slice(None, n), slice(1, None))
            dsky = np.hypot(xi[hi] - xi[lo], eta[hi] - eta[lo])
            dwave = np.abs(wave[hi] - wave[lo])
            keep = np.isfinite(dsky) & np.isfinite(dwave) & sampled[:dsky.shape[0]]
            samples[f"sky{axis}"] = dsky[keep]
            samples[f"wave{axis}"] = dwave[keep]
    good = ok[:n]
    stats: dict[str, Any] = {"y0": y0, "y1": y1, "n": int(good.sum()), **samples}
    if good.any():
        for key, arr in (("xi", xi), ("eta", eta), ("wave", wave)):
            stats[key] = (float(arr[:n][good].min()), float(arr[:n][good].max()))
        stats["hull"] = _hull_points(xi[:n][good], eta[:n][good])
    return stats


def _hull_points(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pts = np.unique(np.column_stack([x, y]), axis=0)
    if len(pts) < 4:
        return pts
    from scipy.spatial import ConvexHull, QhullError

    try:
        return pts[np.sort(ConvexHull(pts).vertices)]
    except QhullError:  # collinear points
        return pts


def single_cube_chunk(sources: dict[str, Any], coords: dict[str, Any],
                      bands: list[dict[str, Any]], grid: CubeGrid, planes: tuple[int, int],
                      bad_mask: int) -> tuple[np.ndarray, np.ndarray]:
    """One exposure's cube on planes ``[p0, p1)``: flux and weight, ``(1, 2, planes, ny, nx)``."""
    p0, p1 = planes
    lo = grid.wave0 + (p0 - 1) * grid.dwave - grid.roi[1]
    hi = grid.wave0 + p1 * grid.dwave + grid.roi[1]
    parts: list[tuple[np.ndarray, ...]] = []
    for band in bands:  # bands in row order: points stay in whole-frame row-major order
        if band["n"] == 0 or band["wave"][1] < lo or band["wave"][0] > hi:
            continue
        rows = slice(band["y0"], band["y1"])
        wave = np.asarray(coords["wave"][rows])
        sci = np.asarray(array_of(sources["sci"])[rows], np.float64)
        dq = np.asarray(array_of(sources["dq"])[rows])
        use = (np.isfinite(wave) & (wave >= lo) & (wave <= hi) & np.isfinite(sci)
               & ((dq & np.uint32(bad_mask)) == 0))
        parts.append((np.asarray(coords["xi"][rows])[use], np.asarray(coords["eta"][rows])[use],
                      wave[use], sci[use]))
    if parts:
        xi, eta, wave, flux = (np.concatenate(v) for v in zip(*parts, strict=True))
    else:
        xi = eta = wave = flux = np.empty(0)
    num, den = accumulate_cube(xi, eta, wave, flux, grid, planes)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = np.where(den > 0, num / den, np.nan).astype(np.float32)
    return np.stack([cube, den.astype(np.float32)])[None]


def cube_weight_threshold(single: Any, k: int, chunks: list[tuple[int, int]],
                          maskpt: float) -> np.ndarray:
    """``maskpt`` x the clipped mean of one exposure's non-zero spaxel weights."""
    single = array_of(single)
    parts = []
    for p0, p1 in chunks:
        block = np.asarray(single[k, 1, p0:p1])
        parts.append(block[np.isfinite(block) & (block != 0)])
    return np.array([compute_weight_threshold(np.concatenate(parts), maskpt)])


def median_chunk(single: Any, thresholds: Any, planes: tuple[int, int]) -> np.ndarray:
    """NaN-median over exposures of planes ``[p0, p1)``, low-weight spaxels masked."""
    p0, p1 = planes
    single, thresholds = array_of(single), array_of(thresholds)
    stack = np.array(single[:, 0, p0:p1], dtype=np.float32)
    wht = np.asarray(single[:, 1, p0:p1])
    thr = np.asarray(thresholds[...])
    for k in range(stack.shape[0]):
        with np.errstate(invalid="ignore"):
            stack[k][wht[k] < thr[k]] = np.nan
    n, nw, ny, nx = stack.shape
    return nanmedian_stack(stack.reshape(n, nw * ny, nx)).reshape(nw, ny, nx)


def blot_cube_region(payload: bytes, roles: tuple[int, int, int], coords: dict[str, Any],
                     median: Any, grid: CubeGrid, box: tuple[int, int, int, int],
                     shape: tuple[int, int]) -> np.ndarray:
    """The reference CubeBlot of the median cube on detector pixels ``box``."""
    y0, y1, x0, x1 = halo_box(Tile(0, 0, *box), shape, 2)
    wave = np.asarray(coords["wave"][y0:y1, x0:x1])
    median = array_of(median)
    finite = wave[np.isfinite(wave)]
    if finite.size == 0:
        return np.full((box[1] - box[0], box[3] - box[2]), np.nan, dtype=np.float32)
    p0, p1 = grid.planes_for(float(finite.min()) - 2 * grid.dwave,
                             float(finite.max()) + 2 * grid.dwave)
    cube = np.asarray(median[p0:p1], dtype=np.float64)
    use = np.isfinite(cube) & (cube != 0)
    pz, jy, ix = np.nonzero(use)
    if pz.size == 0:
        return np.full((box[1] - box[0], box[3] - box[2]), np.nan, dtype=np.float32)
    ra, dec = plane_to_sky(grid.xi[ix], grid.eta[jy], grid.ra0, grid.dec0)
    wcs = pickle.loads(payload)
    x, y = to_detector(wcs, roles, ra, dec, grid.wavelength[p0 + pz])
    keep = np.isfinite(x) & np.isfinite(y)
    return blot_points(x[keep], y[keep], cube[use][keep], box)


def blot_and_flag_cube_tile(sources: dict[str, Any], coords: dict[str, Any], payload: bytes,
                            roles: tuple[int, int, int], tile: Tile, median: Any, *,
                            shape: tuple[int, int], grid: CubeGrid,
                            snr: tuple[float, float], scale: tuple[float, float], backg: float
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Blot, flag and update the DQ of one detector tile: ``(new DQ, count)``."""
    box = halo_box(tile, shape, HALO)
    y0, y1, x0, x1 = box
    blot = blot_cube_region(payload, roles, coords, median, grid, box, shape)
    sci = np.asarray(array_of(sources["sci"])[y0:y1, x0:x1])
    err = np.asarray(array_of(sources["err"])[y0:y1, x0:x1])
    cr = flag_resampled_crs(sci, err, blot, snr1=snr[0], snr2=snr[1], scale1=scale[0],
                            scale2=scale[1], backg=backg)
    inner = (slice(tile.y0 - y0, tile.y1 - y0), slice(tile.x0 - x0, tile.x1 - x0))
    return update_dq_block(sources, tile.slices, cr[inner],
                           {"sci": sci[inner], "err": err[inner]})
