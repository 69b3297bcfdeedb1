"""Diagnostic figures with matplotlib: flags on a SCI cutout, the median with the exposures'
footprints, the flag statistics, and an overview of a result.

Nothing here selects a matplotlib backend (a notebook stays inline, a script keeps its own).
Single-panel functions draw into ``ax`` (default: a new pyplot figure, as pandas and xarray
do) and return the Axes; :func:`plot_result` returns a Figure that is closed in pyplot, so a
notebook shows it once when it is a cell's value and a script saves it with
``fig.savefig(...)``. Only the pixels drawn are read (a cutout of a Zarr or Dask array is
read alone).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["plot_flags", "plot_median", "plot_flag_stats", "plot_result", "new_outlier_mask",
           "densest_region"]


def _limits(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _new_axes(ax: Any, figsize: tuple[float, float] = (6.0, 5.4)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def new_outlier_mask(result: Any, k: int) -> np.ndarray:
    """Pixels of exposure ``k`` that the run flagged as outliers and the input had not."""
    from daskod.flag._dq import OUTLIER

    dq_out = np.asarray(result.dq[k])
    dq_in = np.asarray(result.exposures[k].dq)
    if dq_out.ndim == 3:  # a cube: any integration
        return np.any(((dq_out & OUTLIER) != 0) & ((dq_in & OUTLIER) == 0), axis=0)
    return ((dq_out & OUTLIER) != 0) & ((dq_in & OUTLIER) == 0)


def densest_region(mask: np.ndarray, size: int = 128) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` box ``(y0, y1, x0, x1)`` holding the most True pixels
    (searched on a grid of half-box steps); the centre box when there are none."""
    ny, nx = np.shape(mask)
    sy, sx = min(size, ny), min(size, nx)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        y0, x0 = (ny - sy) // 2, (nx - sx) // 2
        return y0, y0 + sy, x0, x0 + sx
    counts = np.cumsum(np.cumsum(np.pad(mask, ((1, 0), (1, 0))).astype(np.int64), 0), 1)
    best, where = -1, (0, 0)
    for y0 in sorted({*range(0, ny - sy + 1, max(sy // 2, 1)), ny - sy}):
        for x0 in sorted({*range(0, nx - sx + 1, max(sx // 2, 1)), nx - sx}):
            n = (counts[y0 + sy, x0 + sx] - counts[y0, x0 + sx] - counts[y0 + sy, x0]
                 + counts[y0, x0])
            if n > best:
                best, where = int(n), (y0, x0)
    y0, x0 = where
    return y0, y0 + sy, x0, x0 + sx


def plot_flags(sci: Any, flagged: Any, *, region: tuple[int, int, int, int] | None = None,
               size: int = 128, truth: Any = None, ax: Any = None, title: str | None = None,
               marker_size: float | None = None) -> Any:
    """Flagged pixels marked on a cutout of a science image.

    Parameters
    ----------
    sci : array_like, shape (ny, nx)
        Science image (numpy, Dask or Zarr: only the cutout is read).
    flagged : array_like of bool, shape (ny, nx)
        Pixels to mark (e.g. :func:`new_outlier_mask`).
    region : tuple of int, optional
        ``(y0, y1, x0, x1)`` of the cutout; default: the ``size`` box with the most flags.
    size : int, optional
        Edge of the default cutout in pixels.
    truth : array_like of bool, optional
        Known outliers (a simulator's cosmic rays): those not flagged get cyan circles.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    title : str, optional
        Axes title (default: the region and the count).
    marker_size : float, optional
        Marker area in points^2 (default: about one pixel of the cutout).

    Returns
    -------
    matplotlib.axes.Axes
        Axis coordinates are detector pixels; the flag markers are the collection labelled
        ``"flagged"`` (``"missed"`` for missed truth pixels).
    """
    if region is None:
        region = densest_region(np.asarray(flagged, dtype=bool), size)
    y0, y1, x0, x1 = (int(v) for v in region)
    ax = _new_axes(ax)
    cut = np.asarray(sci[y0:y1, x0:x1], dtype=np.float32)
    flags = np.asarray(flagged[y0:y1, x0:x1], dtype=bool)
    lo, hi = _limits(cut[~flags])  # the stretch of the scene, not of the cosmic rays
    ax.imshow(cut, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
              extent=(x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5))
    if marker_size is None:  # about one cutout pixel: a hollow square around each flag
        width_in = ax.get_position().width * ax.figure.get_figwidth()
        pts = 72.0 * width_in / max(x1 - x0, y1 - y0, 1)
        marker_size = max(pts * pts, 16.0)
    fy, fx = np.nonzero(flags)
    ax.scatter(fx + x0, fy + y0, s=marker_size, marker="s", facecolors="none",
               edgecolors="red", linewidths=1.0, label="flagged")
    n_missed = 0
    if truth is not None:
        missed = np.asarray(truth[y0:y1, x0:x1], dtype=bool) & ~flags
        my, mx = np.nonzero(missed)
        n_missed = my.size
        if n_missed:
            ax.scatter(mx + x0, my + y0, s=marker_size * 2.0, marker="o", facecolors="none",
                       edgecolors="cyan", linewidths=1.0, label="missed")
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y0 - 0.5, y1 - 0.5)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    what = f"{fy.size} flagged" + (f", {n_missed} known outliers missed" if truth is not None
                                   else "")
    ax.set_title(title if title is not None else f"[{y0}:{y1}, {x0}:{x1}]: {what}")
    if fy.size or n_missed:
        ax.legend(loc="upper right", fontsize=8)
    return ax


def _shrink(img: np.ndarray, max_pixels: int) -> tuple[np.ndarray, int]:
    f = max(1, int(np.ceil(max(img.shape) / max_pixels)))
    if f == 1:
        return img, 1
    ny, nx = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        out = np.nanmedian(img[:ny, :nx].reshape(ny // f, f, nx // f, f), axis=(1, 3))
    return out, f


def exposure_footprint(exposure: Any, median_wcs: Any, *, n_edge: int = 16
                       ) -> tuple[np.ndarray, np.ndarray]:
    """An exposure's detector outline in median-frame pixels (``n_edge`` points per side)."""
    from daskod.geometry._pixel_map import evaluate_wcs_pixel_map

    ny, nx = exposure.shape
    t = np.linspace(0.0, 1.0, n_edge, endpoint=False)
    x = np.concatenate([-0.5 + t * nx, np.full(n_edge, nx - 0.5), nx - 0.5 - t * nx,
                        np.full(n_edge, -0.5)])
    y = np.concatenate([np.full(n_edge, -0.5), -0.5 + t * ny, np.full(n_edge, ny - 0.5),
                        ny - 0.5 - t * ny])
    fx, fy = evaluate_wcs_pixel_map(exposure.wcs, median_wcs, x, y)
    return np.append(fx, fx[0]), np.append(fy, fy[0])


def plot_median(median: Any, *, median_wcs: Any = None, exposures: Any = None, ax: Any = None,
                max_pixels: int = 1024, title: str = "median frame") -> Any:
    """The median frame, with the outline of every exposure on it.

    Parameters
    ----------
    median : array_like, shape (ny, nx)
        The median (``result.median``); block-medianed to at most ``max_pixels`` a side.
    median_wcs : gwcs.WCS, optional
        Its WCS (``result.median_wcs``); with ``exposures``, their footprints are drawn.
    exposures : list of Exposure, optional
        Exposures with a WCS (``result.exposures``).
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        Axis coordinates are median-frame pixels.
    """
    ax = _new_axes(ax)
    img, f = _shrink(np.asarray(median, dtype=np.float32), max_pixels)
    lo, hi = _limits(img)
    ny, nx = img.shape
    ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi,
              extent=(-0.5, nx * f - 0.5, -0.5, ny * f - 0.5))
    if median_wcs is not None and exposures:
        import matplotlib as mpl

        colours = mpl.colormaps["tab10"]
        for k, exp in enumerate(exposures):
            if getattr(exp, "wcs", None) is None:
                continue
            fx, fy = exposure_footprint(exp, median_wcs)
            ax.plot(fx, fy, color=colours(k % 10), linewidth=1.0, label=str(exp.name))
        if len(exposures) <= 10:
            ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(-0.5, np.shape(median)[1] - 0.5)
    ax.set_ylim(-0.5, np.shape(median)[0] - 0.5)
    ax.set_title(title)
    ax.set_xlabel("x (median-frame pixel)")
    ax.set_ylabel("y (median-frame pixel)")
    return ax


def plot_flag_stats(result: Any, *, ax: Any = None) -> Any:
    """Percentage of each exposure's pixels newly flagged, one bar per exposure.

    Computes the counts when they are lazy (``result.stats``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _new_axes(ax, figsize=(6.0, 3.6))
    stats = result.stats
    pct = np.array([row["percent"] for row in stats], dtype=float)
    names = [str(row["name"]) for row in stats]
    positions = np.arange(len(stats))
    ax.bar(positions, pct, color="tab:red", label="flagged")
    if len(stats):
        ax.axhline(float(np.median(pct)), color="k", linestyle="--", linewidth=0.8,
                   label=f"median {np.median(pct):.3f} %")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(positions)
    ax.set_xticklabels(names if len(names) <= 16 else [str(i) for i in positions],
                       rotation=60 if len(names) <= 16 else 0, ha="right", fontsize=7)
    ax.set_ylabel("new outliers (% of pixels)")
    ax.set_title(f"{sum(row['n_flagged'] for row in stats)} pixels flagged in "
                 f"{len(stats)} exposure{'s' * (len(stats) != 1)}")
    return ax


def plot_result(result: Any, k: int = 0, *, region: tuple[int, int, int, int] | None = None,
                size: int = 128, truth: Any = None, fig: Any = None) -> Any:
    """Overview of a result: median with footprints, flags of exposure ``k`` on its SCI
    cutout, flag statistics (``result.plot()``).

    Parameters
    ----------
    result : OutlierResult
        A computed (or lazy: computed here) result of the imaging mode; other modes get
        the panels that apply (no median: flags and statistics).
    k : int, optional
        Exposure whose flags are drawn.
    region, size, truth
        As :func:`plot_flags`.
    fig : matplotlib Figure, optional
        Figure to draw into (it is cleared); default a new one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(16, 5.2), constrained_layout=True)
        plt.close(fig)  # returned, not left to pyplot: a notebook shows it once
    else:
        fig.clear()
    has_median = result.median is not None and np.ndim(result.median) == 2
    panels = 3 if has_median else 2
    axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": [1.0] * (panels - 1) + [0.8]})
    if has_median:
        plot_median(result.median, median_wcs=result.median_wcs, exposures=result.exposures,
                    ax=axes[0])
    exp = result.exposures[k]
    mask = new_outlier_mask(result, k)
    sci = exp.sci if np.ndim(exp.sci) == 2 else np.asarray(exp.sci[0])
    plot_flags(sci, mask, region=region, size=size, truth=truth, ax=axes[-2],
               title=None)
    axes[-2].set_title(f"{exp.name}: " + axes[-2].get_title())
    plot_flag_stats(result, ax=axes[-1])
    return fig
