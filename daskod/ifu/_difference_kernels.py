"""The IFU difference method on one tile, and on a whole frame (pure numpy;
docs/algorithm.md section 4.1).

The reference (jwst ``outlier_detection/ifu.py``, since 2023) flags pixels that differ from
their across-slice neighbours in *every* exposure of a detector:

1. ``S = sci`` with NaN where ``dq & DO_NOT_USE``; along ``diffaxis`` (1 for MIRI, 0 for
   NIRSpec) ``L[k] = S[k] - S[k-1]`` and ``R[k] = S[k] - S[k+1]`` with a 0 beyond the frame
   (``np.diff(..., prepend=0)``), computed in float64; ``C = nanmin(|L|, |R|)``.
2. ``minarr = nanmin`` of ``C`` over the detector's exposures.
3. ``normarr`` = NaN-ignoring median over a ``kernel`` box of ``minarr`` zero-padded by
   ``k // 2`` (stcal ``medfilt``: ``kernel[0]`` runs along rows), floored at
   ``nanmedian(minarr) / 3``; ``minnorm = minarr / normarr``.
4. ``pct = nanpercentile(minnorm[4:ny-4, 4:nx-4], threshold_percent)``; outliers are
   ``minnorm > pct`` (plus, with the second check, every pixel where ``minarr`` is NaN).

The tile functions take their input already extended by the halo they need (real neighbours
inside the frame, zeros beyond it), so a tiled run gives bitwise the whole-frame answer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import bottleneck as bn
import numpy as np

from daskod.flag._dq import DO_NOT_USE

__all__ = [
    "CENTRAL_BORDER",
    "parse_kernel_size",
    "masked_science",
    "neighbour_difference",
    "nanmedian_filter",
    "medfilt",
    "noise_floor",
    "median_in_place",
    "percentile_in_place",
    "normalise",
    "central_percentile",
    "outlier_mask",
    "DifferenceFrame",
    "difference_reference",
]

#: Rows/columns at each detector edge left out of the percentile statistic (the reference's 4).
CENTRAL_BORDER = 4
#: Window values held at once by the median filter (bounds its temporary to ~32 MiB).
_FILTER_VALUES = 2**22


def parse_kernel_size(kernel_size: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Parse the reference's ``kernel_size`` (``"7 7"``) into the given and the used box.

    Even sizes are bumped by one, as the reference does (the caller warns about it).

    Parameters
    ----------
    kernel_size : str or pair of int
        ``"ky kx"`` as two whitespace-separated positive integers, or a pair of ints.
        ``kernel_size[0]`` runs along axis 0 (rows), as the reference's filter applies it.

    Returns
    -------
    given, used : tuple of int
        The sizes as given, and the odd sizes used.
    """
    parts: list[Any]
    if isinstance(kernel_size, str):
        parts = kernel_size.replace(",", " ").split()
    elif isinstance(kernel_size, list | tuple):
        parts = list(kernel_size)
    else:
        parts = []
    values = []
    for part in parts:
        if isinstance(part, bool | float | np.floating):
            values = []
            break
        try:
            values.append(int(str(part).strip()))
        except ValueError:
            values = []
            break
    if len(values) != 2 or len(parts) != 2 or min(values) < 1:
        msg = (f"kernel_size must be two positive integers like '7 7', got {kernel_size!r}.")
        raise ValueError(msg)
    given = (values[0], values[1])
    used = tuple(v + 1 if v % 2 == 0 else v for v in given)
    return given, used  # type: ignore[return-value]


def masked_science(sci: np.ndarray, dq: np.ndarray) -> np.ndarray:
    """``sci`` as float64 with NaN where ``dq`` has DO_NOT_USE (a new array)."""
    out = np.array(sci, dtype=np.float64, copy=True)
    out[(np.asarray(dq) & DO_NOT_USE) != 0] = np.nan
    return out


def neighbour_difference(extended: np.ndarray, diffaxis: int) -> np.ndarray:
    """``nanmin(|S[k] - S[k-1]|, |S[k] - S[k+1]|)`` along ``diffaxis``.

    Parameters
    ----------
    extended : ndarray of float64, 2-D
        The masked science block with one extra line on each side along ``diffaxis``: the
        real neighbours inside the frame, 0 beyond its edges (the reference's
        ``prepend=0``).
    diffaxis : {0, 1}
        Axis of the across-slice neighbours.

    Returns
    -------
    ndarray of float64
        Shape of ``extended`` less two lines along ``diffaxis``; NaN only where both
        differences are NaN.
    """
    ext = np.moveaxis(np.asarray(extended, dtype=np.float64), diffaxis, 0)
    centre = ext[1:-1]
    left = np.abs(centre - ext[:-2])
    right = np.abs(centre - ext[2:])
    return np.moveaxis(np.fmin(left, right), 0, diffaxis)


def nanmedian_filter(padded: np.ndarray, kernel: tuple[int, int], *,
                     max_values: int = _FILTER_VALUES) -> np.ndarray:
    """NaN-ignoring median of every ``kernel`` window fully inside ``padded``.

    ``padded`` is the block extended by ``k // 2`` on each side (the halo, or zeros beyond the
    frame), so the output has the block's shape. NaN where a window holds only NaN. Equal to
    ``np.nanmedian`` of each window; computed with bottleneck in row strips of at most
    ``max_values`` window values (two float64 copies of a strip are held at once).
    """
    k0, k1 = kernel
    arr = np.asarray(padded, dtype=np.float64)
    ny, nx = arr.shape[0] - k0 + 1, arr.shape[1] - k1 + 1
    out = np.empty((max(ny, 0), max(nx, 0)), dtype=np.float64)
    if out.size == 0:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(arr, (k0, k1))
    rows = max(1, int(max_values) // (nx * k0 * k1))
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        block = windows[y0:y1].reshape(y1 - y0, nx, k0 * k1)
        out[y0:y1] = bn.nanmedian(block, axis=-1)
    return out


def medfilt(array: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """stcal's ``medfilt`` on a whole frame: zero padding by ``k // 2``, NaN-ignoring median.

    ``[2, nan, 0] -> [1, 1, 0]`` and ``[nan, nan, nan] -> [0, nan, 0]`` for a 3-wide kernel
    (the zero padding counts as data at the edges).
    """
    k0, k1 = kernel
    padded = np.pad(np.asarray(array, dtype=np.float64), ((k0 // 2, k0 // 2), (k1 // 2, k1 // 2)))
    return nanmedian_filter(padded, kernel)


def noise_floor(minarr: np.ndarray) -> float:
    """``nanmedian(minarr) / 3``: the smallest normalisation allowed (NaN if all NaN)."""
    return float(bn.nanmedian(np.asarray(minarr, dtype=np.float64))) / 3


def median_in_place(values: np.ndarray) -> float:
    """Median of a float64 array without NaN, partitioning it in place (no copy).

    The same value as ``np.nanmedian`` of the array the values were gathered from (the mean
    of the two middle values for an even count); NaN when empty.
    """
    n = values.size
    if n == 0:
        return math.nan
    k = n // 2
    if n % 2:
        values.partition(k)
        return float(values[k])
    values.partition((k - 1, k))
    return float(np.mean(values[k - 1:k + 1]))


def percentile_in_place(values: np.ndarray, threshold_percent: float) -> float:
    """``np.nanpercentile`` (linear) of values gathered without their NaN, in place."""
    if values.size == 0:
        return math.nan
    with np.errstate(invalid="ignore"):  # inf - inf between infinite neighbours, as numpy
        return float(np.percentile(values, threshold_percent, overwrite_input=True))


def normalise(minarr: np.ndarray, normarr: np.ndarray, nfloor: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Floor ``normarr`` at ``nfloor`` and divide: returns ``(normarr, minnorm)`` (new arrays)."""
    norm = np.array(normarr, dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        norm[norm < nfloor] = nfloor
    with np.errstate(divide="ignore", invalid="ignore"):
        minnorm = np.asarray(minarr, dtype=np.float64) / norm
    return norm, minnorm


def central_percentile(central: np.ndarray, threshold_percent: float) -> float:
    """``nanpercentile`` (linear) of the central-region values; NaN if none is finite."""
    values = np.asarray(central, dtype=np.float64)
    if values.size == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanpercentile(values, threshold_percent))


def outlier_mask(minnorm: np.ndarray, pct: float, minarr: np.ndarray | None = None
                 ) -> np.ndarray:
    """``minnorm > pct``; with ``minarr`` (the second check) also where ``minarr`` is NaN."""
    with np.errstate(invalid="ignore"):
        mask = np.asarray(minnorm) > pct
    if minarr is not None:
        mask = mask | np.isnan(minarr)
    return mask


@dataclass
class DifferenceFrame:
    """The whole-frame statistics of one detector (the reference's OutlierIFUOutputModel)."""

    diffarr: np.ndarray
    minarr: np.ndarray
    normarr: np.ndarray
    minnorm: np.ndarray
    nfloor: float
    pct: float
    outliers: np.ndarray
    nan_mask: np.ndarray | None


def difference_reference(scis: list[np.ndarray], dqs: list[np.ndarray], *, diffaxis: int,
                         kernel: tuple[int, int], threshold_percent: float,
                         second_check: bool = False) -> DifferenceFrame:
    """The difference method on whole frames of one detector, in one piece.

    The oracle for the tiled engine (and a plain transcription of the reference's steps).
    ``kernel`` must already be odd (see :func:`parse_kernel_size`).
    """
    diffs = []
    for sci, dq in zip(scis, dqs, strict=True):
        masked = masked_science(sci, dq)
        pad = [(0, 0), (0, 0)]
        pad[diffaxis] = (1, 1)
        diffs.append(neighbour_difference(np.pad(masked, pad), diffaxis))
    diffarr = np.stack(diffs)
    minarr = diffarr[0].copy()
    for d in diffarr[1:]:
        minarr = np.fmin(minarr, d)
    nfloor = noise_floor(minarr)
    normarr, minnorm = normalise(minarr, medfilt(minarr, kernel), nfloor)
    b = CENTRAL_BORDER
    ny, nx = minarr.shape
    pct = central_percentile(minnorm[b:ny - b, b:nx - b], threshold_percent)
    outliers = outlier_mask(minnorm, pct)
    nan_mask = np.isnan(minarr) if second_check else None
    return DifferenceFrame(diffarr=diffarr, minarr=minarr, normarr=normarr, minnorm=minnorm,
                           nfloor=nfloor, pct=pct, outliers=outliers, nan_mask=nan_mask)
