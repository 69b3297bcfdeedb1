"""Drizzle weight maps and the reference's weight threshold (docs/algorithm.md sections 2.4
and 2.5)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from daskod._exceptions import DaskodWarning

__all__ = ["build_driz_weight", "compute_weight_threshold"]


def build_driz_weight(dq: np.ndarray, *, weight_type: str, bad_mask: int,
                      var_rnoise: np.ndarray | None = None,
                      exposure_time: float = 1.0) -> np.ndarray:
    """Per-pixel drizzle weight: ``ivm`` (1/var_rnoise) or ``exptime``, 0 at bad DQ.

    Parameters
    ----------
    dq : ndarray of int
        DQ flags; a pixel is good when ``dq & bad_mask == 0``.
    weight_type : {"ivm", "exptime"}
    bad_mask : int
        From :func:`daskod.flag._dq.interpret_good_bits`.
    var_rnoise : ndarray, optional
        Read-noise variance (``ivm``); missing -> weights of 1 with a warning.
    exposure_time : float
        Seconds (``exptime``).

    Returns
    -------
    ndarray of float32
    """
    good = (np.asarray(dq) & np.uint32(bad_mask)) == 0
    if weight_type == "ivm":
        if var_rnoise is None or np.shape(var_rnoise) != np.shape(dq):
            warnings.warn("var_rnoise is missing or misshaped; ivm weights fall back to 1.",
                          DaskodWarning, stacklevel=2)
            return good.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.float32(1.0) / np.asarray(var_rnoise, dtype=np.float32)
        inv[~np.isfinite(inv)] = 0
        return (good * inv).astype(np.float32, copy=False)
    if weight_type == "exptime":
        return (good * np.float32(exposure_time)).astype(np.float32, copy=False)
    msg = f"weight_type must be 'ivm' or 'exptime', got {weight_type!r}."
    raise ValueError(msg)


def compute_weight_threshold(weights: np.ndarray, maskpt: float) -> float:
    """``maskpt`` times the 3-sigma-clipped mean of the finite, non-zero weights.

    Accepts a weight image or the 1-D values already gathered from one; zeros and non-finite
    values never count, so both give the same threshold. NaN when no weight is valid (then
    ``w < NaN`` masks nothing, as in the reference).
    """
    from astropy.stats import sigma_clip

    values = np.asarray(weights).ravel()
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return math.nan
    # Sort so that the float sums below do not depend on the order the tiles came in.
    values = np.sort(values)
    clipped = sigma_clip(values, sigma=3, maxiters=5, masked=False, copy=False)
    return float(maskpt * np.mean(clipped, dtype=np.float64))
