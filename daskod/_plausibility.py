"""Implausible inputs: warn (by exposure name) before the work, from a small sample.

An exposure whose ERR is zero, negative or not finite where SCI is valid runs without error,
but the flag rule (``|SCI - blot| > snr * ERR + ...``) then flags those pixels at almost any
difference (ERR all zero flagged 67 % of an exposure); a zero read-noise variance gives zero
``ivm`` weight, so the exposure drops out of the median. Both usually mean an upstream
calibration step failed.

The check reads a bounded sample, never a whole array: a few bands of rows (about
:data:`SAMPLE_PIXELS` pixels per array in :data:`BANDS` reads) or, for chunked arrays (Zarr),
a few whole chunks spread over the detector. Dask arrays are not sampled (reading them would
compute their graphs). An exposure is reported when more than :data:`BAD_FRACTION` of its
sampled valid pixels (finite SCI, DQ without DO_NOT_USE) have an implausible ERR or
``var_rnoise``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from daskod._exceptions import InputWarning
from daskod.flag._dq import DO_NOT_USE

__all__ = ["BAD_FRACTION", "SAMPLE_PIXELS", "BANDS", "sample_boxes", "check_errors"]

log = logging.getLogger(__name__)

#: Fraction of the sampled valid pixels above which an ERR/variance problem is reported.
BAD_FRACTION = 0.01
#: Pixels read per array (about; at least one row per band).
SAMPLE_PIXELS = 2**18
#: Bands of rows read from an unchunked array (a FITS extension read block by block).
BANDS = 2
#: At most this many chunks of a chunked array are read.
MAX_CHUNKS = 16

_CONSEQUENCE = {
    "err": ("the flag rule compares |SCI - blot| with ERR, so these pixels are flagged at "
            "almost any difference; check the ERR array (an upstream step may have failed)"),
    "var_rnoise": ("with weight_type='ivm' these pixels get zero weight and drop out of the "
                   "median; check the VAR_RNOISE array or use weight_type='exptime'"),
}


def _chunk_shape(array: Any) -> tuple[int, int] | None:
    chunks = getattr(array, "chunks", None)
    if not chunks or len(chunks) != 2:
        return None
    try:
        return int(chunks[0]), int(chunks[1])
    except TypeError:  # Dask-style ((8, 8), (8,)) chunk tuples
        return None


def sample_boxes(shape: tuple[int, int], chunks: tuple[int, int] | None = None, *,
                 budget: int = SAMPLE_PIXELS) -> list[tuple[slice, slice]]:
    """Boxes to read from an array of ``shape``: all of it when it has at most ``budget``
    pixels, else :data:`BANDS` bands of rows (or, with ``chunks``, whole chunks spread over
    the array), about ``budget`` pixels in all and each read far smaller than the array."""
    ny, nx = (int(n) for n in shape)
    if ny * nx <= budget:
        return [(slice(0, ny), slice(0, nx))]
    if chunks is not None:
        cy, cx = min(chunks[0], ny), min(chunks[1], nx)
        grid_y, grid_x = -(-ny // cy), -(-nx // cx)
        n_chunks = grid_y * grid_x
        if cy * cx <= budget and n_chunks > 1:
            k = int(np.clip(budget // (cy * cx), 1, min(MAX_CHUNKS, n_chunks)))
            picks = np.unique(np.linspace(0, n_chunks - 1, k + 2)[1:-1].round().astype(int))
            return [(slice((i // grid_x) * cy, min((i // grid_x + 1) * cy, ny)),
                     slice((i % grid_x) * cx, min((i % grid_x + 1) * cx, nx))) for i in picks]
    width = min(nx, max(1, budget // BANDS))
    rows = max(1, budget // (BANDS * width))
    x0 = (nx - width) // 2
    boxes = []
    for k in range(BANDS):
        y0 = int(round((k + 0.5) * ny / BANDS - rows / 2))
        y0 = min(max(y0, 0), max(ny - rows, 0))
        boxes.append((slice(y0, min(y0 + rows, ny)), slice(x0, x0 + width)))
    return boxes


def _lazy_graph(array: Any) -> bool:
    return getattr(array, "__dask_graph__", None) is not None


def check_errors(exp: Any) -> None:
    """Warn (:class:`~daskod.InputWarning`) when ``exp``'s ERR or ``var_rnoise`` is zero,
    negative or not finite at more than :data:`BAD_FRACTION` of the sampled pixels where its
    SCI is valid. Reads only a sample (:func:`sample_boxes`)."""
    names = [n for n in ("err", "var_rnoise") if getattr(exp, n, None) is not None]
    if not names or any(_lazy_graph(getattr(exp, n)) for n in ("sci", "dq", *names)):
        return
    n_valid = 0
    n_bad = dict.fromkeys(names, 0)
    for box in sample_boxes(exp.shape, _chunk_shape(exp.sci)):
        sci = np.asarray(exp.sci[box])
        valid = np.isfinite(sci) & ((np.asarray(exp.dq[box]) & DO_NOT_USE) == 0)
        del sci
        n_valid += int(valid.sum())
        for name in names:
            values = np.asarray(getattr(exp, name)[box])
            with np.errstate(invalid="ignore"):
                n_bad[name] += int((valid & ~(np.isfinite(values) & (values > 0))).sum())
    if n_valid == 0:
        return  # an exposure with no valid pixel is refused later, by name
    for name in names:
        fraction = n_bad[name] / n_valid
        if fraction > BAD_FRACTION:
            label = "ERR" if name == "err" else name
            msg = (f"Exposure {exp.name!r}: {label} is zero, negative or not finite at "
                   f"{100 * fraction:.1f}% of the sampled pixels where SCI is valid "
                   f"({n_bad[name]} of {n_valid}); {_CONSEQUENCE[name]}.")
            warnings.warn(InputWarning(msg, exposure=exp.name), stacklevel=4)
