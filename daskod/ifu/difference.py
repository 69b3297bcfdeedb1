"""Block functions of the IFU difference method (one detector tile each; docs/algorithm.md
section 4.1). The graph is built in :mod:`daskod.modes.ifu`.

``difference``
    per tile: every exposure's across-slice neighbour differences (reading one extra line
    along ``diffaxis``), their minimum over exposures -> ``minarr``.
``floor``
    ``nanmedian(minarr) / 3`` over the whole frame (one float64 per pixel, gathered).
``normalise``
    per tile: the zero-padded NaN-median filter of ``minarr`` (reading a ``k // 2`` halo),
    the floor, ``minnorm = minarr / normarr``.
``percentile``
    the ``threshold_percent`` percentile of ``minnorm`` on the central region.
``flag``
    per exposure and tile: ``minnorm > pct`` (and NaN ``minarr`` with the second check),
    ``DQ |= 17``, DO_NOT_USE where SCI/ERR/VAR are NaN.

The two global statistics are computed from the exact stored values, and every tile reads
the halo it needs, so any tile size and scheduler give bitwise the whole-frame answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.flag._dq import DO_NOT_USE
from daskod.flag._kernels import apply_outlier_flags, nan_or_unusable_flags
from daskod.geometry._tiles import Tile
from daskod.ifu._difference_kernels import (
    CENTRAL_BORDER,
    masked_science,
    median_in_place,
    nanmedian_filter,
    neighbour_difference,
    normalise,
    outlier_mask,
    percentile_in_place,
)
from daskod.io._store import array_of

__all__ = ["difference_tile", "floor_task", "normalise_tile", "percentile_task", "flag_tile",
           "extended_region"]

_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def _extended_box(tile: Tile, shape: tuple[int, int], halo: tuple[int, int]
                  ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The tile grown by ``halo`` clipped to the frame, and where it sits in the grown tile."""
    y0, y1 = tile.y0 - halo[0], tile.y1 + halo[0]
    x0, x1 = tile.x0 - halo[1], tile.x1 + halo[1]
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, shape[0]), max(x0, 0), min(x1, shape[1])
    return (cy0, cy1, cx0, cx1), (cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0)


def extended_region(tile: Tile, shape: tuple[int, int], halo: tuple[int, int]
                    ) -> tuple[slice, slice]:
    """The region a tile grown by ``halo`` reads (clipped to the frame)."""
    (cy0, cy1, cx0, cx1), _ = _extended_box(tile, shape, halo)
    return slice(cy0, cy1), slice(cx0, cx1)


def _read_zero_padded(array: Any, tile: Tile, shape: tuple[int, int], halo: tuple[int, int],
                      read: Any) -> np.ndarray:
    """``read(array, box)`` over the tile plus ``halo``, zeros beyond the frame."""
    (cy0, cy1, cx0, cx1), (py0, py1, px0, px1) = _extended_box(tile, shape, halo)
    out = np.zeros((tile.y1 - tile.y0 + 2 * halo[0], tile.x1 - tile.x0 + 2 * halo[1]),
                   dtype=np.float64)
    out[py0:py1, px0:px1] = read(array, (slice(cy0, cy1), slice(cx0, cx1)))
    return out


def _read_masked(source: dict[str, Any], region: tuple[slice, slice]) -> np.ndarray:
    return masked_science(np.asarray(array_of(source["sci"])[region]),
                          np.asarray(array_of(source["dq"])[region]))


def difference_tile(sources: list[dict[str, Any]], tile: Tile, *, shape: tuple[int, int],
                    diffaxis: int, keep_differences: bool) -> Any:
    """Minimum over exposures of the neighbour differences on one tile; with
    ``keep_differences`` also every exposure's differences ``(n, ty, tx)``."""
    halo = (1, 0) if diffaxis == 0 else (0, 1)
    diffs = [neighbour_difference(_read_zero_padded(source, tile, shape, halo, _read_masked),
                                  diffaxis) for source in sources]
    result = diffs[0]
    for diff in diffs[1:]:
        result = np.fmin(result, diff)
    return (result, np.stack(diffs)) if keep_differences else result


def _gather_finite(array: Any, box: tuple[int, int, int, int], rows: int) -> np.ndarray:
    """The non-NaN values of ``array[y0:y1, x0:x1]``, read ``rows`` rows at a time into one
    float64 buffer (at most one frame of values is held, plus one band)."""
    y0, y1, x0, x1 = box
    out = np.empty(max(y1 - y0, 0) * max(x1 - x0, 0), dtype=np.float64)
    n = 0
    for a in range(y0, y1, rows):
        band = np.asarray(array[a:min(a + rows, y1), x0:x1], dtype=np.float64)
        keep = band[~np.isnan(band)]
        out[n:n + keep.size] = keep
        n += keep.size
    return out[:n]


def floor_task(minarr: Any, rows: int) -> np.ndarray:
    """``nanmedian(minarr) / 3`` over the stored frame (exact: every value is gathered)."""
    minarr = array_of(minarr)
    ny, nx = minarr.shape
    return np.array([median_in_place(_gather_finite(minarr, (0, ny, 0, nx), rows)) / 3])


def normalise_tile(minarr: Any, nfloor: Any, tile: Tile, *, shape: tuple[int, int],
                   kernel: tuple[int, int], max_values: int = 2**22,
                   keep_norm: bool = False) -> Any:
    """Median filter (halo ``k // 2``, zeros beyond the frame), floor and ratio on one tile:
    ``minnorm`` (and ``normarr`` with ``keep_norm``)."""
    halo = (kernel[0] // 2, kernel[1] // 2)
    minarr = array_of(minarr)
    padded = _read_zero_padded(minarr, tile, shape, halo,
                               lambda a, region: np.asarray(a[region]))
    centre = padded[halo[0]:padded.shape[0] - halo[0], halo[1]:padded.shape[1] - halo[1]]
    norm, ratio = normalise(centre, nanmedian_filter(padded, kernel, max_values=max_values),
                            float(array_of(nfloor)[0]))
    return (ratio, norm) if keep_norm else ratio


def percentile_task(minnorm: Any, shape: tuple[int, int], threshold_percent: float,
                    rows: int) -> np.ndarray:
    """The percentile cut over the stored ``minnorm`` of the central region (exact)."""
    b = CENTRAL_BORDER
    ny, nx = shape
    return np.array([percentile_in_place(
        _gather_finite(array_of(minnorm), (b, ny - b, b, nx - b), rows), threshold_percent)])


def flag_tile(source: dict[str, Any], minnorm: Any, minarr: Any, pct: Any, tile: Tile, *,
              second_check: bool) -> tuple[np.ndarray, np.ndarray]:
    """New DQ of one exposure tile and the pixels flagged there (the reference's count).

    The count is ``minnorm > pct`` plus, with the second check, the pixels where ``minarr``
    is NaN that were still valid (not NaN, not DO_NOT_USE, not already an outlier).
    """
    region = tile.slices
    above = outlier_mask(np.asarray(array_of(minnorm)[region]), float(array_of(pct)[0]))
    dq = np.asarray(array_of(source["dq"])[region]).astype(np.uint32)
    sci = np.asarray(array_of(source["sci"])[region])
    mask = above
    n = int(np.count_nonzero(above))
    if second_check:
        nan_min = np.isnan(np.asarray(array_of(minarr)[region]))
        extra = nan_min & ~above & ~np.isnan(sci) & ((dq & DO_NOT_USE) == 0)
        n += int(np.count_nonzero(extra))
        mask = above | nan_min
    new = apply_outlier_flags(dq, mask)
    arrays = {"sci": sci, "err": np.asarray(array_of(source["err"])[region])}
    for key in _VARIANCES:
        if source.get(key) is not None:
            arrays[key] = np.asarray(array_of(source[key])[region])
    return nan_or_unusable_flags(new, arrays), np.array([n], dtype=np.int64)
