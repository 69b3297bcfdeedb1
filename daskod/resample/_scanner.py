"""Which input pixels a whole-frame drizzle uses: drizzle's input "scanner", in numpy.

Drizzle (the C library, 2.x and 3.x alike) does not simply drop input pixels whose centres
fall outside the output image. Before drizzling it maps the outline of the input region to the
output frame (bilinear interpolation of the pixel map, extrapolated beyond the outer pixel
centres), clips that outline to the output image ``[-0.5, n - 0.5]``, maps the clipped
polygon back to input pixels (a golden-section search good to ~0.03 px) and then, row by
row, keeps the input pixels between the polygon's left and right edges (with a 0.03 px
tolerance). Rows past the polygon's top are dropped once their centre is more than ~0.03 px
beyond it; rows below the bottom are kept up to ~0.44 px outside.

A tile of a daskod drizzle is padded, so its own output window never cuts a pixel that lands
in the cropped tile; but where an exposure crosses the edge of the FRAME, the whole-frame
drizzle of the reference drops pixels that a padded tile would keep (jwst 3.0.0's frame has
its top and right edges up to one pixel inside the footprints). :func:`drizzled_row_limits`
computes, once per exposure, the column range the whole-frame drizzle uses in every input row;
zeroing the weight outside it makes tiled drizzling equal to the whole-frame run there too.

The computation follows drizzle's published algorithm step by step (same formulas, same
order of operations where a threshold depends on it), written here from its description.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["drizzled_row_limits"]

#: drizzle's tolerances: inversion accuracy (px), vertex equality, golden ratio.
_INV_ERR = 0.03
_VERTEX_ATOL = 1.0e-12
_APPROX_ZERO = 1.0e3 * np.finfo(np.float64).tiny
_GOLDEN = 0.6180339887498948482
_MAX_ITER = 50

#: ``centres(i, j)`` -> (X, Y) output coordinates of input pixel centres (integer arrays).
Centres = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


class _Interpolator:
    """Bilinear interpolation of the pixel map between pixel centres, extrapolated from the
    outer cells (as drizzle's ``interpolate_point``)."""

    def __init__(self, centres: Centres, shape: tuple[int, int]) -> None:
        self.centres = centres
        self.nx2 = shape[1] - 2
        self.ny2 = shape[0] - 2

    def __call__(self, xin: float, yin: float) -> tuple[float, float]:
        i0 = min(max(int(xin), 0), self.nx2)  # int(): truncation toward zero, as C
        j0 = min(max(int(yin), 0), self.ny2)
        x = xin - i0
        y = yin - j0
        x1 = 1.0 - x
        y1 = 1.0 - y
        X, Y = self.centres(np.array([i0, i0 + 1, i0, i0 + 1]),
                            np.array([j0, j0, j0 + 1, j0 + 1]))
        f00, f10, f01, f11 = (float(v) for v in X)
        g00, g10, g01, g11 = (float(v) for v in Y)
        xout = f00 * x1 * y1 + f10 * x * y1 + f01 * x1 * y + f11 * x * y
        yout = g00 * x1 * y1 + g10 * x * y1 + g01 * x1 * y + g11 * x * y
        return xout, yout


def _cross(a: tuple[float, float], b: tuple[float, float]) -> float:
    return a[0] * b[1] - a[1] * b[0]


def _ccw(poly: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Counter-clockwise order, judged by the first two vertices about the centroid."""
    if len(poly) < 3:
        return poly
    cx = sum(p[0] for p in poly) / len(poly)
    cy = sum(p[1] for p in poly) / len(poly)
    a = (poly[0][0] - cx, poly[0][1] - cy)
    b = (poly[1][0] - cx, poly[1][1] - cy)
    if _cross(a, b) >= 0.0:
        return poly
    return poly[::-1]


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) < _VERTEX_ATOL and abs(a[1] - b[1]) < _VERTEX_ATOL


def _append(poly: list[tuple[float, float]], v: tuple[float, float]) -> None:
    if poly and (_same(poly[-1], v) or _same(poly[0], v)):
        return
    poly.append(v)


def _drop_collinear(poly: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Remove vertices that lie on the line through their two neighbours."""
    n = len(poly)
    if n < 3:
        return poly
    kept = []
    for k in range(n):
        prev, here, nxt = poly[k - 1], poly[k], poly[(k + 1) % n]
        dp = (nxt[0] - prev[0], nxt[1] - prev[1])
        dq = (here[0] - prev[0], here[1] - prev[1])
        if abs(_cross(dp, dq)) > _APPROX_ZERO and math.hypot(*dp) > _VERTEX_ATOL:
            kept.append(here)
    return kept


def _clip(poly: list[tuple[float, float]], window: list[tuple[float, float]]
          ) -> list[tuple[float, float]]:
    """Sutherland-Hodgman clipping of ``poly`` by the convex ``window`` (points exactly on
    a window edge count as outside)."""
    poly = _ccw(poly)
    window = _ccw(window)
    out = list(poly)
    for k in range(len(window)):
        w0, w1 = window[k - 1], window[k]
        dw = (w1[0] - w0[0], w1[1] - w0[1])
        src, out = out, []
        if not src:
            break
        for j in range(len(src)):
            p0, p1 = src[j - 1], src[j]
            in0 = _cross(dw, (p0[0] - w1[0], p0[1] - w1[1])) > 0.0
            in1 = _cross(dw, (p1[0] - w1[0], p1[1] - w1[1])) > 0.0
            if in0 != in1:
                dp = (p1[0] - p0[0], p1[1] - p0[1])
                d = _cross(dp, dw)
                a_p = _cross(p1, p0)
                a_w = _cross(w1, w0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    vi = (float(np.float64(a_p * dw[0] - a_w * dp[0]) / d),
                          float(np.float64(a_p * dw[1] - a_w * dp[1]) / d))
                if math.isfinite(vi[0]) and math.isfinite(vi[1]):
                    _append(out, vi)
                if in1:
                    _append(out, p1)
            elif in0:
                _append(out, p1)
    return _drop_collinear(_ccw(out))


def _invert(interp: _Interpolator, xout: float, yout: float,
            bounds: tuple[int, int, int, int]) -> tuple[float, float] | None:
    """Input position of an output point: drizzle's planar golden-section search over the
    input region, stopped when the bracket is within 0.03 px."""
    xmin, xmax = bounds[0] - 0.5, bounds[1] + 0.5
    ymin, ymax = bounds[2] - 0.5, bounds[3] + 0.5
    dx, dy = xmax - xmin, ymax - ymin
    niter = 0

    def dist2(x: float, y: float) -> float:
        px, py = interp(x, y)
        return (px - xout) * (px - xout) + (py - yout) * (py - yout)

    while (dx > _INV_ERR or dy > _INV_ERR) and niter < _MAX_ITER:
        niter += 1
        x1 = xmax - _GOLDEN * dx
        x2 = xmin + _GOLDEN * dx
        y1 = ymax - _GOLDEN * dy
        y2 = ymin + _GOLDEN * dy
        d11, d12, d21, d22 = dist2(x1, y1), dist2(x1, y2), dist2(x2, y1), dist2(x2, y2)
        if any(math.isnan(d) for d in (d11, d12, d21, d22)):
            return None
        if d11 < d12 and d11 < d21 and d11 < d22:
            xmax, ymax = x2, y2
        elif d12 < d11 and d12 < d21 and d12 < d22:
            xmax, ymin = x2, y1
        elif d21 < d11 and d21 < d12 and d21 < d22:
            xmin, ymax = x1, y2
        else:
            xmin, ymin = x1, y1
        dx = xmax - xmin
        dy = ymax - ymin
    if niter == _MAX_ITER:
        return None
    return 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)


class _Edge:
    __slots__ = ("b", "c", "m", "v1", "v2")

    def __init__(self, v1: tuple[float, float], v2: tuple[float, float], side: int) -> None:
        self.v1, self.v2 = v1, v2
        with np.errstate(divide="ignore", invalid="ignore"):
            dy = np.float64(v2[1] - v1[1])
            self.m = float(np.float64(v2[0] - v1[0]) / dy)
            self.b = float(np.float64(v1[0] * v2[1] - v1[1] * v2[0]) / dy)
        self.c = self.b - math.copysign(0.5 + 0.5 * abs(self.m), side)


def _chains(poly: list[tuple[float, float]]) -> tuple[list[_Edge], list[_Edge], float, float]:
    """Left and right edge chains from the lowest to the highest vertex."""
    n = len(poly)
    ys = [p[1] for p in poly]
    min_left = 0
    for k in range(1, n):
        if ys[k] < ys[min_left]:
            min_left = k
    min_y = ys[min_left]
    i1, i2 = (min_left - 1) % n, (min_left + 1) % n
    min_right = i1 if ys[i1] < ys[i2] else i2
    if ys[min_right] <= min_y * (1.0 + math.copysign(_VERTEX_ATOL, min_y)):
        if poly[min_left][0] > poly[min_right][0]:
            min_left, min_right = min_right, min_left
    else:
        min_right = min_left
    max_right = 0
    for k in range(1, n):
        if ys[k] > ys[max_right]:
            max_right = k
    max_y = ys[max_right]
    i1, i2 = (max_right - 1) % n, (max_right + 1) % n
    max_left = i1 if ys[i1] > ys[i2] else i2
    if ys[max_left] >= max_y * (1.0 - math.copysign(_VERTEX_ATOL, max_y)):
        if poly[max_left][0] > poly[max_right][0]:
            max_left, max_right = max_right, max_left
    else:
        max_left = max_right
    if max_left > min_left:
        min_left += n
    left = []
    for k in range(min_left - max_left):
        a = (min_left - k) % n
        left.append(_Edge(poly[a], poly[(a - 1) % n], -1))
    if max_right < min_right:
        max_right += n
    right = []
    for k in range(max_right - min_right):
        a = (min_right + k) % n
        right.append(_Edge(poly[a], poly[(a + 1) % n], 1))
    return left, right, min_y, max_y


def drizzled_row_limits(centres: Centres, shape: tuple[int, int], out_shape: tuple[int, int]
                        ) -> np.ndarray | None:
    """Per input row, the inclusive column range ``[x1, x2]`` a whole-frame drizzle of this
    input onto an output of ``out_shape`` uses (``x1 > x2``: the row is not used).

    Parameters
    ----------
    centres : callable
        ``centres(i, j)`` -> ``(X, Y)``: output coordinates of input pixel centres at integer
        columns ``i`` and rows ``j`` (arrays).
    shape : tuple of int
        Input ``(ny, nx)``; the whole input is drizzled (bounding box ``(-0.5, n - 0.5)``).
    out_shape : tuple of int
        Output frame ``(ny, nx)``.

    Returns
    -------
    ndarray of int64, shape (ny, 2), or None
        None when the outline cannot be inverted (drizzle itself then falls back on its own
        rules); callers then keep every pixel.
    """
    ny, nx = shape
    if ny < 2 or nx < 2:
        return None
    interp = _Interpolator(centres, shape)
    bounds = (0, nx - 1, 0, ny - 1)
    outline = [(-0.5, -0.5), (nx - 0.5, -0.5), (nx - 0.5, ny - 0.5), (-0.5, ny - 0.5)]
    mapped = [interp(x, y) for x, y in outline]
    if any(math.isnan(v) for p in mapped for v in p):
        return None
    oy, ox = out_shape
    window = [(-0.5, -0.5), (ox - 0.5, -0.5), (ox - 0.5, oy - 0.5), (-0.5, oy - 0.5)]
    clipped = _clip(mapped, window)
    limits = np.zeros((ny, 2), dtype=np.int64)
    limits[:, 0] = 1  # unused rows: x1 > x2
    if len(clipped) < 3:
        return limits
    back = []
    for vx, vy in clipped:
        inv = _invert(interp, vx, vy, bounds)
        if inv is None:
            return None
        back.append(inv)
    left, right, min_y, max_y = _chains(_ccw(back))
    if not left or not right:
        return limits
    row0 = max(0, int(min_y + 0.5 + 2.0 * _INV_ERR))
    row1 = min(ny - 1, int(max_y + 2.0 * _INV_ERR))
    li = ri = 0
    for y in range(row0, row1 + 1):
        bottom, top = y - 0.5, y + 0.5
        if top <= min_y or bottom >= max_y + 1:
            continue
        while bottom > left[li].v2[1]:
            li += 1
            if li == len(left):
                return limits
        while bottom > right[ri].v2[1]:
            ri += 1
            if ri == len(right):
                return limits
        xlb = left[li].m * y + left[li].c - _INV_ERR
        xrb = right[ri].m * y + right[ri].c + _INV_ERR
        while top > left[li].v2[1] + 0.5 + _INV_ERR:
            li += 1
            if li == len(left):
                return limits
        while top > right[ri].v2[1] + 0.5 + _INV_ERR:
            ri += 1
            if ri == len(right):
                return limits
        xlt = left[li].m * y + left[li].c - _INV_ERR
        xrt = right[ri].m * y + right[ri].c + _INV_ERR
        xlb, xlt = max(xlb, 0.0), max(xlt, 0.0)
        xrb, xrt = min(xrb, nx - 1.0), min(xrt, nx - 1.0)
        if xlt >= xrt:
            if xlb >= xrb:
                continue
            x1, x2 = _c_round(xlb), _c_round(xrb)
        elif xlb >= xrb:
            x1, x2 = _c_round(xlt), _c_round(xrt)
        else:
            x1, x2 = _c_round(max(xlb, xlt)), _c_round(min(xrb, xrt))
        limits[y] = (x1, x2)
    return limits
