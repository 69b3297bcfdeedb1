"""Diagnostic plots: the backend is never changed, functions return Axes/Figures, the flag
overlay marks exactly the flagged pixels of the cutout, footprints and statistics are drawn
from the result, and ``daskod demo`` writes its picture through them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

import daskod  # noqa: E402
from daskod import datasets  # noqa: E402
from daskod.plot import (  # noqa: E402
    densest_region,
    new_outlier_mask,
    plot_flag_stats,
    plot_flags,
    plot_median,
    plot_result,
)


@pytest.fixture(scope="module")
def run():
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(128, 128), seed=5)
    result = daskod.detect_outliers(sim.exposures, tile_size=64, scheduler="synchronous")
    return sim, result


def _collection(ax, label):
    return next(c for c in ax.collections if c.get_label() == label)


def test_flag_overlay_marks_exactly_the_flagged_pixels_of_the_cutout():
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    sci = rng.normal(size=(200, 300)).astype(np.float32)
    flagged = np.zeros(sci.shape, dtype=bool)
    flagged[rng.integers(0, 200, 60), rng.integers(0, 300, 60)] = True
    region = (40, 120, 100, 190)
    ax = Figure().subplots()
    out = plot_flags(sci, flagged, region=region, ax=ax)
    assert out is ax
    marked = {(int(x), int(y)) for x, y in _collection(ax, "flagged").get_offsets()}
    y0, y1, x0, x1 = region
    fy, fx = np.nonzero(flagged[y0:y1, x0:x1])
    assert marked == {(int(x) + x0, int(y) + y0) for y, x in zip(fy, fx, strict=True)}
    assert 0 < len(marked) < np.count_nonzero(flagged)  # only the cutout's
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array(), sci[y0:y1, x0:x1])
    assert image.get_extent() == [x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5]
    truth = flagged.copy()
    truth[50, 150] = True
    flagged[50, 150] = False
    ax = plot_flags(sci, flagged, region=region, truth=truth, ax=Figure().subplots())
    assert [tuple(p) for p in _collection(ax, "missed").get_offsets()] == [(150.0, 50.0)]


def test_default_cutout_is_where_the_flags_are():
    flagged = np.zeros((512, 512), dtype=bool)
    flagged[400:410, 30:40] = True
    flagged[100, 300] = True
    y0, y1, x0, x1 = densest_region(flagged, 128)
    assert (y1 - y0, x1 - x0) == (128, 128)
    assert y0 <= 400 and y1 >= 410 and x0 <= 30 and x1 >= 40
    assert densest_region(np.zeros((64, 64), bool), 128) == (0, 64, 0, 64)


def test_median_footprints_and_stats(run):
    from matplotlib.figure import Figure

    _sim, result = run
    ax = plot_median(result.median, median_wcs=result.median_wcs,
                     exposures=result.exposures, ax=Figure().subplots())
    assert len(ax.lines) == len(result.exposures)
    ny, nx = result.median.shape
    for line in ax.lines:  # every outline lies on the median frame (which is their union)
        x, y = line.get_xdata(), line.get_ydata()
        # The reference's frame ends int(max + 0.5) pixels after the lowest footprint edge:
        # a footprint may reach past the last pixel's edge by up to half a pixel.
        assert x.min() >= -1.0 and x.max() <= nx + 1 and y.min() >= -1.0 and y.max() <= ny + 1
    ax = plot_flag_stats(result, ax=Figure().subplots())
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [row["percent"] for row in result.stats])


def test_overview_figure_and_result_plot(run):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    sim, result = run
    before = set(plt.get_fignums())
    fig = result.plot(1, truth=sim.cr_mask(1))
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert set(plt.get_fignums()) == before  # not left open in pyplot (shown once)
    flags_ax = fig.axes[1]
    marked = {(int(x), int(y)) for x, y in _collection(flags_ax, "flagged").get_offsets()}
    mask = new_outlier_mask(result, 1)
    assert marked and all(mask[y, x] for x, y in marked)
    own = Figure()
    assert plot_result(result, 0, fig=own) is own


def test_single_panel_functions_make_a_pyplot_figure_without_ax(run):
    import matplotlib.pyplot as plt

    sim, result = run
    ax = plot_flags(sim.exposures[0].sci, new_outlier_mask(result, 0))
    try:
        assert ax.figure.number in plt.get_fignums()
    finally:
        plt.close(ax.figure)


def test_plots_and_demo_never_change_the_backend(tmp_path):
    script = textwrap.dedent("""
        import matplotlib
        assert matplotlib.get_backend().lower() == "svg", matplotlib.get_backend()
        import daskod
        from daskod import datasets
        from daskod.plot import plot_flags, plot_median, plot_flag_stats, new_outlier_mask
        from daskod._demo import run_demo
        sim = datasets.make_dithered_imaging(n_exposures=3, shape=(64, 64), seed=1)
        r = daskod.detect_outliers(sim.exposures, scheduler="synchronous")
        r.plot()
        plot_flags(sim.exposures[0].sci, new_outlier_mask(r, 0))
        plot_median(r.median, median_wcs=r.median_wcs, exposures=r.exposures)
        plot_flag_stats(r)
        totals = run_demo(n_exposures=3, shape=(64, 64), output_dir=OUT, echo=lambda *a: None,
                          progress=False, memory_limit=None)
        print(matplotlib.get_backend().lower(), totals["png"])
    """).replace("OUT", repr(str(tmp_path)))
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    backend, png = out.stdout.split()[-2:]
    assert backend == "svg"
    assert os.path.getsize(png) > 10_000
