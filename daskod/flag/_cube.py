"""Block functions of the time-series and coronagraphic modes (one chunk of integrations
and rows each; docs/algorithm.md section 3)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskod.flag._graph import update_dq_block
from daskod.io._store import array_of
from daskod.median._kernels import nanmedian_stack, rolling_median, rolling_window_span

__all__ = ["cube_threshold", "rolling_flag_chunk", "median_rows", "flag_against_median"]


def _masked(sci: np.ndarray, dq: np.ndarray, bad_mask: int, thr: float) -> np.ndarray:
    """``sci`` with NaN where the 0/1 weight is below ``thr`` (as the reference masks)."""
    weight = ((dq & np.uint32(bad_mask)) == 0).astype(np.float32)
    out = np.array(sci, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[weight < thr] = np.nan
    return out


def _flag_block(sources: dict[str, Any], region: tuple[slice, ...], median: np.ndarray,
                snr1: float) -> tuple[np.ndarray, np.ndarray]:
    sci = np.asarray(array_of(sources["sci"])[region], dtype=np.float32)
    err = np.asarray(array_of(sources["err"])[region])
    with np.errstate(invalid="ignore"):
        cr = np.abs(sci - median) > snr1 * np.nan_to_num(err)
    return update_dq_block(sources, region, cr, {"sci": sci, "err": err})


def cube_threshold(dq: Any, bad_mask: int, maskpt: float) -> float:
    """The reference's cube-wide threshold on 0/1 DQ weights: maskpt, or NaN if no good pixel.

    (``compute_weight_threshold`` of weights that are all 1 after dropping zeros is exactly
    ``maskpt * 1.0``.) Reads DQ planes only until a good pixel shows up.
    """
    dq = array_of(dq)
    for t in range(int(np.shape(dq)[0])):
        if np.any((np.asarray(dq[t]) & np.uint32(bad_mask)) == 0):
            return float(maskpt)
    return math.nan


def rolling_flag_chunk(sources: dict[str, Any], thr: float, t0: int, t1: int, y0: int, y1: int,
                       *, nints: int, window: int, bad_mask: int, snr1: float,
                       nan_policy: str, save_median: bool) -> tuple[np.ndarray, ...]:
    """TSO rolling-median branch for integrations ``[t0, t1)`` and rows ``[y0, y1)`` (reads
    the window's halo of integrations): ``(new DQ, count[, rolling median])``."""
    a, b = rolling_window_span(t0, t1, window, nints, parity=nan_policy == "propagate")
    sci = np.asarray(array_of(sources["sci"])[a:b, y0:y1], dtype=np.float32)
    dq = np.asarray(array_of(sources["dq"])[a:b, y0:y1])
    masked = _masked(sci, dq, bad_mask, thr)
    del sci, dq
    median = rolling_median(masked, window, t0, t1, nints, origin=a, nan_policy=nan_policy)
    del masked
    flags = _flag_block(sources, (slice(t0, t1), slice(y0, y1)), median, snr1)
    return (*flags, median) if save_median else flags


def median_rows(sources: dict[str, Any], thr: float, y0: int, y1: int, *, use_mask: bool,
                bad_mask: int) -> np.ndarray:
    """Median over all integrations of rows ``[y0, y1)``, DQ-masked or not."""
    sci = np.asarray(array_of(sources["sci"])[:, y0:y1], dtype=np.float32)
    if use_mask:
        sci = _masked(sci, np.asarray(array_of(sources["dq"])[:, y0:y1]), bad_mask, thr)
    return nanmedian_stack(sci)


def flag_against_median(sources: dict[str, Any], median: Any, t0: int, t1: int, y0: int,
                        y1: int, *, snr1: float) -> tuple[np.ndarray, np.ndarray]:
    """Flag integrations ``[t0, t1)``, rows ``[y0, y1)`` against one 2-D median frame."""
    return _flag_block(sources, (slice(t0, t1), slice(y0, y1)),
                       np.asarray(array_of(median)[y0:y1]), snr1)
