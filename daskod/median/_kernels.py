"""Median kernels on one block (pure numpy + bottleneck)."""

from __future__ import annotations

import numpy as np

__all__ = ["nanmedian_stack"]


def nanmedian_stack(stack: np.ndarray) -> np.ndarray:
    """NaN-median over axis 0 of a ``(G, ny, nx)`` stack; all-NaN columns give NaN.

    bottleneck is ~5x faster than ``np.nanmedian`` and allocates no temporaries; its result
    equals ``np.nanmedian`` (float32 mean of the two middle values).
    """
    import bottleneck as bn

    stack = np.asarray(stack, dtype=np.float32)
    if stack.shape[0] == 0:
        return np.full(stack.shape[1:], np.nan, dtype=np.float32)
    return bn.nanmedian(stack, axis=0).astype(np.float32, copy=False)
