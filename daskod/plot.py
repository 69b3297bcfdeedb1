"""Diagnostic figures (matplotlib, drawn off-screen)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_diagnostic"]


def _limits(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def plot_diagnostic(median: np.ndarray, sci: np.ndarray, flagged: np.ndarray, path: str, *,
                    title: str = "", truth: np.ndarray | None = None,
                    max_pixels: int = 1024) -> str:
    """Write a PNG: the median mosaic, one exposure, and its flagged pixels.

    Parameters
    ----------
    median : ndarray
        Median frame.
    sci : ndarray
        One exposure's science array.
    flagged : ndarray of bool
        Pixels of that exposure flagged as outliers.
    path : str
        Output PNG path.
    truth : ndarray of bool, optional
        Injected cosmic rays, drawn as circles around missed ones.
    max_pixels : int
        Images are block-reduced (max for the masks) to at most this many pixels a side.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def shrink(img: np.ndarray, how: str) -> np.ndarray:
        f = max(1, int(np.ceil(max(img.shape) / max_pixels)))
        if f == 1:
            return img
        ny, nx = (img.shape[0] // f) * f, (img.shape[1] // f) * f
        blocks = img[:ny, :nx].reshape(ny // f, f, nx // f, f)
        if how == "max":
            return blocks.max(axis=(1, 3))
        with np.errstate(all="ignore"):
            return np.nanmedian(blocks.astype(np.float32), axis=(1, 3))

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    med = shrink(np.asarray(median, dtype=np.float32), "median")
    lo, hi = _limits(med)
    axes[0].imshow(med, origin="lower", cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title("median of resampled groups")
    img = shrink(np.asarray(sci, dtype=np.float32), "median")
    lo, hi = _limits(img)
    axes[1].imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi)
    axes[1].set_title("exposure (SCI)")
    flag_img = shrink(np.asarray(flagged, dtype=np.uint8), "max")
    axes[2].imshow(flag_img, origin="lower", cmap="magma", vmin=0, vmax=1,
                   interpolation="nearest")
    axes[2].set_title(f"flagged outliers: {int(np.count_nonzero(flagged))} px")
    if truth is not None:
        missed = np.asarray(truth) & ~np.asarray(flagged)
        my, mx = np.nonzero(missed)
        f = max(1, int(np.ceil(max(np.shape(flagged)) / max_pixels)))
        axes[2].scatter(mx / f, my / f, s=30, facecolors="none", edgecolors="cyan",
                        linewidths=0.6, label=f"injected CR px not flagged, any S/N ({my.size})")
        axes[2].legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


