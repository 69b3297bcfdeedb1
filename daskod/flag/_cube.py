"""Block functions of the time-series and coronagraphic modes (one chunk of integrations
and rows each; docs/algorithm.md section 3)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskod.flag._dq import DO_NOT_USE
from daskod.flag._kernels import apply_outlier_flags, flag_crs
from daskod.io._store import array_of
from daskod.median._kernels import nanmedian_stack, rolling_median, rolling_window_span

__all__ = ["cube_threshold", "rolling_flag_chunk", "median_rows", "flag_against_median",
           "ROLLING_BYTES_PER_SPAN_PIXEL", "ROLLING_BYTES_PER_OUTPUT_PIXEL",
           "MEDIAN_BYTES_PER_PIXEL", "FLAG_BYTES_PER_PIXEL", "SLAB_TEMPORARY_BYTES"]

# What one task holds at its peak (tracemalloc, blocks read from lazy file arrays, which
# return new arrays; tests/test_cube_task_memory.py checks these against the kernels): bytes
# per pixel of the arrays it holds, plus the temporaries of the element-wise steps, which
# run over slabs of at most _SLAB_BYTES so that they do not grow with the block.
#: Rolling-median task, per pixel of the integrations it reads (window halo included): SCI,
#: DQ and the masked copy (12 B), then the masked copy, the moving median and its rows.
ROLLING_BYTES_PER_SPAN_PIXEL = 12
#: ... plus per pixel of the integrations it flags: with the span's 12 this covers the
#: flag step's median rows, SCI, ERR, the outlier and NaN masks and the DQ read and copied
#: (~15 B per flagged pixel, measured).
ROLLING_BYTES_PER_OUTPUT_PIXEL = 8
#: Median-over-integrations task, per pixel of its rows x all integrations: SCI, DQ and the
#: masked copy (coronagraphy), or SCI and the median's working copy.
MEDIAN_BYTES_PER_PIXEL = 12
#: Flag-against-a-median-frame task, per pixel flagged (its median rows are extra).
FLAG_BYTES_PER_PIXEL = 16
_SLAB_BYTES = 2**20
#: The slab temporaries of any task (a difference, a product, masks of one slab).
SLAB_TEMPORARY_BYTES = 4 * _SLAB_BYTES
_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def _slabs(shape: tuple[int, ...]) -> list[slice]:
    """Slabs along axis 0 of about :data:`_SLAB_BYTES` of float32 each."""
    step = max(1, _SLAB_BYTES // max(4 * math.prod(shape[1:]), 1))
    return [slice(a, a + step) for a in range(0, shape[0], step)]


def _masked(sci: np.ndarray, dq: np.ndarray, bad_mask: int, thr: float) -> np.ndarray:
    """``sci`` with NaN where the 0/1 weight is below ``thr`` (as the reference masks), as a
    new float32 array; the weights are formed a slab at a time."""
    out = np.array(sci, dtype=np.float32, copy=True)
    for s in _slabs(out.shape):
        weight = ((dq[s] & np.uint32(bad_mask)) == 0).astype(np.float32)
        with np.errstate(invalid="ignore"):
            out[s][weight < thr] = np.nan
    return out


def _outliers(sci: np.ndarray, err: np.ndarray, median: np.ndarray,
              snr1: float) -> np.ndarray:
    """:func:`~daskod.flag._kernels.flag_crs` a slab at a time (its temporaries stay small)."""
    cr = np.empty(sci.shape, dtype=bool)
    if median.ndim < sci.ndim:  # one frame for every integration
        median = np.broadcast_to(median, sci.shape)
    for s in _slabs(sci.shape):
        cr[s] = flag_crs(sci[s], err[s], median[s], snr1=snr1)
    return cr


def _or_nan(invalid: np.ndarray, values: np.ndarray) -> None:
    """``invalid |= isnan(values)`` in place, a slab at a time."""
    for s in _slabs(values.shape):
        invalid[s] |= np.isnan(values[s])


def _flag_block(sources: dict[str, Any], region: tuple[slice, ...], median: np.ndarray,
                snr1: float) -> tuple[np.ndarray, np.ndarray]:
    """New DQ of one block and its outlier count: ``|= 17`` where ``|S - M| > snr1 * err``,
    then DO_NOT_USE wherever SCI, ERR or a variance is NaN (the reference's NaN matching;
    the same DQ as ``flag._graph.update_dq_block``, holding one input array at a time)."""
    sci = np.asarray(array_of(sources["sci"])[region], dtype=np.float32)
    err = np.asarray(array_of(sources["err"])[region])
    cr = _outliers(sci, err, median, snr1)
    invalid = np.isnan(sci)
    del sci
    _or_nan(invalid, err)
    del err
    for key in _VARIANCES:
        if sources.get(key) is not None:
            _or_nan(invalid, np.asarray(array_of(sources[key])[region]))
    dq = apply_outlier_flags(np.asarray(array_of(sources["dq"])[region]), cr)
    dq[invalid] |= np.uint32(DO_NOT_USE)
    return dq, np.array([np.count_nonzero(cr)], dtype=np.int64)


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
