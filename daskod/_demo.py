"""``daskod demo``: simulate a dithered observation, run imaging mode, score it, draw it."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def run_demo(
    *,
    n_exposures: int = 8,
    shape: tuple[int, int] = (2048, 2048),
    seed: int = 0,
    memory_limit: str | int | None = "1GiB",
    scheduler: Any = None,
    tile_size: int | None = None,
    output_dir: str = ".",
    progress: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Simulate, detect outliers, print a report and write ``daskod_demo.png``.

    The simulation is written straight into a temporary Zarr store (one exposure in memory at
    a time) and the run keeps its results in the store (``in_memory=False``), so the demo
    stays inside ``memory_limit`` whatever ``n_exposures`` is.

    Returns
    -------
    dict
        Totals: flagged pixels, recall of >10 sigma cosmic rays, false positives, star-core
        hits, wall times and the PNG path.
    """
    from matplotlib.figure import Figure

    import daskod
    from daskod import datasets
    from daskod.io._location import temp_folder
    from daskod.plot import plot_result

    os.makedirs(output_dir, exist_ok=True)
    with temp_folder("daskod-demo-") as tmp:
        start = time.perf_counter()
        sim = datasets.make_dithered_imaging(n_exposures=n_exposures, shape=shape, seed=seed,
                                             store=os.path.join(tmp, "simulated.zarr"))
        t_sim = time.perf_counter() - start
        echo(f"Simulated {n_exposures} exposures of {shape[0]}x{shape[1]} pixels in "
             f"{t_sim:.1f} s (seed {seed}).")
        start = time.perf_counter()
        result = daskod.detect_outliers(sim.exposures, memory_limit=memory_limit,
                                        scheduler=scheduler, tile_size=tile_size,
                                        in_memory=False, progress=progress,
                                        store=os.path.join(tmp, "work.zarr"))
        t_run = time.perf_counter() - start
        echo(f"Outlier detection: {t_run:.1f} s  (phases: " + ", ".join(
            f"{k} {v:.1f}s" for k, v in result.timings.items()) + ")")
        echo("")
        echo(f"{'exposure':<24} {'flagged':>9} {'%':>8} {'CR px >10sig':>12} {'recall':>8} "
             f"{'false +':>8} {'star hits':>10}")
        scores = datasets.score_against_truth(sim, result)
        for exp, s in zip(sim.exposures, scores, strict=True):
            pct = 100.0 * s.n_flagged / int(np.prod(exp.shape))
            echo(f"{exp.name:<24} {s.n_flagged:>9d} {pct:>8.4f} {s.n_true_bright:>11d} "
                 f"{s.recall_bright:>8.4f} {s.false_positives:>8d} {s.star_core_hits:>10d}")
        bright = sum(s.n_true_bright for s in scores)
        recalled = sum(s.recalled_bright for s in scores)
        totals = {
            "n_flagged": sum(s.n_flagged for s in scores),
            "recall_bright": recalled / bright if bright else float("nan"),
            "false_positives": sum(s.false_positives for s in scores),
            "star_core_hits": sum(s.star_core_hits for s in scores),
            "simulate_s": t_sim,
            "detect_s": t_run,
        }
        echo(f"{'total':<24} {totals['n_flagged']:>9d} {'':>8} {bright:>11d} "
             f"{totals['recall_bright']:>8.4f} {totals['false_positives']:>8d} "
             f"{totals['star_core_hits']:>10d}")
        # A Figure of its own (not pyplot's): no backend is touched, no window opens.
        fig = plot_result(result, 0, truth=sim.cr_mask(0), fig=Figure(figsize=(16, 5.2),
                                                                         layout="constrained"))
        fig.suptitle(f"daskod demo: {n_exposures} x {shape[0]}x{shape[1]}, flags of exposure "
                     f"{sim.exposures[0].name} (red squares; cyan circles: injected cosmic-ray "
                     "pixels not flagged, any S/N)")
        png = os.path.join(output_dir, "daskod_demo.png")
        fig.savefig(png, dpi=90)
        echo(f"\nDiagnostic picture: {png}")
        totals["png"] = png
        del result
    return totals
