"""Exact pixel maps from a slit's detector WCS to a rectified spectral frame.

The reference's spectral mode evaluates every detector pixel (``pixmap_stepsize`` 1): the
input WCS *with* its bounding box (NaN outside, so those pixels are never drizzled nor
flagged), all three world axes, then the output frame's backward transform *without* its
bounding box. The output frame's wavelength axis is a lookup table and the slit WCS's often
are too, so the map is only piecewise smooth: a coarse grid plus spline (imaging's
:func:`~daskod.geometry.compute_pixel_map`) would bend it between the table's nodes; see
:func:`coarse_map_error` for the measured size. Slits are small (tens of rows), so the exact
map costs little; a whole MIRI LRS image is evaluated in blocks of rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap

__all__ = ["compute_spectral_pixel_map", "spectral_map_block", "StoredPixelMap",
           "input_pixel_range", "coarse_map_error"]

#: Pixels evaluated per call of the WCS chain (bounds the float64 temporaries).
_BLOCK_PIXELS = 262144


def input_pixel_range(bounding_box: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(xmin, xmax, ymin, ymax)`` (inclusive) of detector pixels the reference drizzles:
    stcal's ``resample_range`` of the input WCS's bounding box (``int(edge + 0.5)``)."""
    ny, nx = shape
    if bounding_box is None:
        return 0, max(nx - 1, 0), 0, max(ny - 1, 0)
    (x1, x2), (y1, y2) = _intervals(bounding_box)
    xmin = max(0, int(x1 + 0.5))
    ymin = max(0, int(y1 + 0.5))
    xmax = max(xmin, min(nx - 1, int(x2 + 0.5)))
    ymax = max(ymin, min(ny - 1, int(y2 + 0.5)))
    return xmin, xmax, ymin, ymax


def _intervals(bounding_box: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        bounding_box = bounding_box.bounding_box(order="F")
    except AttributeError:
        bounding_box = tuple(bounding_box)
    (x1, x2), (y1, y2) = bounding_box
    return (float(x1), float(x2)), (float(y1), float(y2))


def compute_spectral_pixel_map(wcs_in: Any, frame: Any, shape: tuple[int, int]) -> PixelMap:
    """Every detector pixel of ``shape`` mapped to the output frame (the reference's map).

    Parameters
    ----------
    wcs_in : gwcs.WCS
        Detector -> world ``(ra, dec, wavelength)`` of one slit or image; NaN outside its
        bounding box.
    frame : SpecFrame
        The output frame (:func:`~daskod.geometry.nirspec_output_frame` or
        :func:`~daskod.geometry.interpolated_output_frame`).
    shape : tuple of int
        Detector ``(ny, nx)``.

    Returns
    -------
    PixelMap
        A full map (``is_full``; nodes on every pixel), NaN where the input WCS is undefined.
    """
    ny, nx = shape
    X = np.empty((ny, nx), dtype=np.float64)
    Y = np.empty((ny, nx), dtype=np.float64)
    rows = max(1, _BLOCK_PIXELS // max(nx, 1))
    xs = np.arange(nx, dtype=np.float64)
    for r0 in range(0, ny, rows):
        r1 = min(r0 + rows, ny)
        X[r0:r1], Y[r0:r1] = spectral_map_block(wcs_in, frame, (r0, r1, 0, nx))
    return PixelMap(shape=(ny, nx), xs=xs, ys=np.arange(ny, dtype=np.float64), X=X, Y=Y,
                    order=1)


def spectral_map_block(wcs_in: Any, frame: Any, box: tuple[int, int, int, int]
                       ) -> np.ndarray:
    """The exact map on detector pixels ``[y0:y1, x0:x1]`` (``box = (y0, y1, x0, x1)``).

    Every pixel is evaluated on its own (the transforms are element-wise), so any blocking
    of the detector gives the same numbers as :func:`compute_spectral_pixel_map`.

    Returns
    -------
    ndarray, shape (2, y1 - y0, x1 - x0), float64
        Output x and output y.
    """
    y0, y1, x0, x1 = box
    out = np.empty((2, y1 - y0, x1 - x0), dtype=np.float64)
    rows = max(1, _BLOCK_PIXELS // max(x1 - x0, 1))
    for r0 in range(y0, y1, rows):
        r1 = min(r0 + rows, y1)
        gy, gx = np.mgrid[r0:r1, x0:x1].astype(np.float64)
        world = wcs_in(gx, gy)
        out[0, r0 - y0:r1 - y0], out[1, r0 - y0:r1 - y0] = frame.world_to_pixel(*world)
    return out


class StoredPixelMap:
    """A full spectral pixel map held in a stored array (the working store's copy), read a
    band of rows at a time: the same answers as the in-memory full
    :class:`~daskod.geometry.PixelMap` (``evaluate``, ``input_box_for``) in bounded memory.

    ``array[index]`` is ``(2, NY, NX)`` (output x and y, NaN-padded beyond the input's
    ``shape``); ``rows`` is the band read at once by :meth:`input_box_for`.
    """

    def __init__(self, array: Any, index: int, shape: tuple[int, int], rows: int) -> None:
        self.array = array
        self.index = int(index)
        self.shape = (int(shape[0]), int(shape[1]))
        self.rows = max(1, int(rows))

    def evaluate(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The map on detector pixels ``[y0:y1, x0:x1]``: ``(h, w, 2)`` float64 (drizzle's
        pixmap layout), a new array."""
        block = np.asarray(self.array[self.index, :, y0:y1, x0:x1], dtype=np.float64)
        return np.ascontiguousarray(np.moveaxis(block, 0, -1))

    def input_box_for(self, ox0: float, ox1: float, oy0: float, oy1: float,
                      *, margin: float) -> tuple[int, int, int, int] | None:
        """Detector box ``(iy0, iy1, ix0, ix1)`` of the pixels whose centres land within
        ``margin`` of the output box, plus one pixel around (as
        :meth:`PixelMap.input_box_for` for full maps); None when none lands there."""
        ny, nx = self.shape
        row_lo, row_hi, col_lo, col_hi = ny, -1, nx, -1
        for r0 in range(0, ny, self.rows):
            block = np.asarray(self.array[self.index, :, r0:min(r0 + self.rows, ny), :nx])
            X, Y = block[0], block[1]
            inside = ((X >= ox0 - margin) & (X < ox1 + margin)
                      & (Y >= oy0 - margin) & (Y < oy1 + margin))
            rows = np.flatnonzero(inside.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(inside.any(axis=0))
            row_lo, row_hi = min(row_lo, r0 + int(rows[0])), max(row_hi, r0 + int(rows[-1]))
            col_lo, col_hi = min(col_lo, int(cols[0])), max(col_hi, int(cols[-1]))
        if row_hi < 0:
            return None
        return (max(row_lo - 1, 0), min(row_hi + 2, ny), max(col_lo - 1, 0),
                min(col_hi + 2, nx))


def coarse_map_error(wcs_in: Any, frame: Any, shape: tuple[int, int], *,
                     stepsize: float = 16, order: int = 3) -> float:
    """Largest distance (output pixels) between a coarse-grid spline map (imaging's method:
    nodes every ``stepsize`` pixels, spline of ``order``) and the exact map.

    Measured on the box of rows and columns where the exact map is finite everywhere (the
    reference itself falls back to the exact map when a node is not finite), so it shows
    what interpolating between nodes costs. NaN when no such box exists.
    """
    from scipy.interpolate import RectBivariateSpline

    exact = compute_spectral_pixel_map(wcs_in, frame, shape)
    finite = np.isfinite(exact.X) & np.isfinite(exact.Y)
    cols = np.flatnonzero(finite.all(axis=0))
    rows = np.flatnonzero(finite[:, cols].all(axis=1))
    if cols.size < 4 or rows.size < 4:
        return math.nan
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    xs = np.linspace(x0, x1, max(math.ceil((nx - 1) / stepsize) + 1, min(10, nx)))
    ys = np.linspace(y0, y1, max(math.ceil((ny - 1) / stepsize) + 1, min(10, ny)))
    gx, gy = np.meshgrid(xs, ys)
    nodes = frame.world_to_pixel(*wcs_in(gx, gy))
    if not all(np.all(np.isfinite(n)) for n in nodes):
        return math.nan
    k = min(order, len(xs) - 1, len(ys) - 1)
    r, c = np.arange(y0, y1 + 1, dtype=float), np.arange(x0, x1 + 1, dtype=float)
    approx = [RectBivariateSpline(ys, xs, n, kx=k, ky=k, s=0)(r, c) for n in nodes]
    box = np.s_[y0:y1 + 1, x0:x1 + 1]
    d = np.hypot(approx[0] - exact.X[box], approx[1] - exact.Y[box])
    d = d[np.isfinite(d)]
    return float(d.max()) if d.size else math.nan
