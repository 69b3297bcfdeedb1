"""Score flags against a simulator's ground truth (the demo, notebooks, tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.flag._dq import DO_NOT_USE, OUTLIER

__all__ = ["ExposureScore", "score_exposure", "score_against_truth"]


@dataclass
class ExposureScore:
    """Flag quality of one exposure against the injected cosmic rays."""

    name: str
    n_flagged: int
    n_true: int
    n_true_bright: int
    recalled_bright: int
    false_positives: int
    star_core_hits: int

    @property
    def recall_bright(self) -> float:
        """Recall of injected CR pixels above 10 sigma (NaN when there are none)."""
        return self.recalled_bright / self.n_true_bright if self.n_true_bright else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "recall_bright": self.recall_bright}


def score_exposure(
    name: str,
    dq_in: np.ndarray,
    dq_out: np.ndarray,
    cr_y: np.ndarray,
    cr_x: np.ndarray,
    cr_snr: np.ndarray,
    star_x: np.ndarray,
    star_y: np.ndarray,
    *,
    cr_coverage: np.ndarray | None = None,
    snr_cut: float = 10.0,
    min_coverage: int = 3,
) -> ExposureScore:
    """Compare new outlier flags with the truth.

    Parameters
    ----------
    dq_in, dq_out : ndarray
        DQ before and after.
    cr_y, cr_x, cr_snr : ndarray
        Injected cosmic-ray pixels and their signal-to-noise.
    star_x, star_y : ndarray
        Detector positions of unsaturated stars; a false flag (not an injected cosmic ray)
        within 1 px of one is a core hit.
    cr_coverage : ndarray, optional
        Exposures that see each CR pixel's sky position.
    snr_cut : float
        Recall is measured on CR pixels above this signal-to-noise ...
    min_coverage : int
        ... seen by at least this many exposures (a median of fewer cannot reject a hit).
    """
    new = ((dq_out & OUTLIER) != 0) & ((dq_in & OUTLIER) == 0)
    usable = (dq_in & DO_NOT_USE) == 0
    truth = np.zeros(dq_in.shape, dtype=bool)
    truth[cr_y, cr_x] = True
    bright = (cr_snr > snr_cut) & usable[cr_y, cr_x]
    if cr_coverage is not None:
        bright &= np.asarray(cr_coverage) >= min_coverage
    recalled = int(np.count_nonzero(new[cr_y[bright], cr_x[bright]]))
    core_hits = 0
    ny, nx = dq_in.shape
    for x, y in zip(np.round(star_x).astype(int), np.round(star_y).astype(int), strict=True):
        y0, y1, x0, x1 = max(y - 1, 0), min(y + 2, ny), max(x - 1, 0), min(x + 2, nx)
        if y0 < y1 and x0 < x1:
            core_hits += int(np.count_nonzero(new[y0:y1, x0:x1] & ~truth[y0:y1, x0:x1]))
    return ExposureScore(
        name=name,
        n_flagged=int(np.count_nonzero(new)),
        n_true=int(np.count_nonzero(truth)),
        n_true_bright=int(np.count_nonzero(bright)),
        recalled_bright=recalled,
        false_positives=int(np.count_nonzero(new & ~truth)),
        star_core_hits=core_hits,
    )


def score_against_truth(sim: Any, result: Any, *, snr_cut: float = 10.0,
                        min_coverage: int = 3) -> list[ExposureScore]:
    """Score a run on simulated data against the simulator's truth, one row per exposure.

    Parameters
    ----------
    sim : SimulatedImaging or SimulatedCube
        What :func:`make_dithered_imaging`, :func:`make_tso_cube` or
        :func:`make_coron_cube` returned.
    result : OutlierResult
        ``detect_outliers`` on ``sim.exposures`` (or ``sim.cube``); lazy arrays are computed.
    snr_cut : float, optional
        Recall counts injected cosmic-ray pixels above this signal-to-noise ...
    min_coverage : int, optional
        ... that at least this many exposures see (imaging: a median of fewer cannot
        reject a hit; ignored for cubes).

    Returns
    -------
    list of ExposureScore
        ``n_flagged`` (new outliers), ``n_true`` / ``n_true_bright`` (injected pixels, all /
        above ``snr_cut``), ``recalled_bright``, ``recall_bright``, ``false_positives``
        (new flags that are not injected cosmic rays) and ``star_core_hits`` (false flags
        within 1 px of an unsaturated star; imaging only).
    """
    if hasattr(sim, "cube"):
        return [_score_cube(sim, result, snr_cut)]
    if not hasattr(sim, "cr_pixels") or not hasattr(sim, "exposures"):
        msg = (f"score_against_truth takes a SimulatedImaging or SimulatedCube, got "
               f"{type(sim).__name__}.")
        raise TypeError(msg)
    if len(result.dq) != len(sim.exposures):
        msg = (f"The result has {len(result.dq)} exposures but the simulation "
               f"{len(sim.exposures)}; score the result of detect_outliers(sim.exposures).")
        raise ValueError(msg)
    saturated = np.asarray(sim.stars["saturated"], dtype=bool)
    scores = []
    for k, exp in enumerate(sim.exposures):
        crs = sim.cr_pixels[k]
        sx, sy = sim.star_pixels(k)
        scores.append(score_exposure(
            str(exp.name), np.asarray(exp.dq), np.asarray(result.dq[k]),
            np.asarray(crs["y"]), np.asarray(crs["x"]), np.asarray(crs["snr"]),
            np.asarray(sx)[~saturated], np.asarray(sy)[~saturated],
            cr_coverage=np.asarray(crs["coverage"]), snr_cut=snr_cut,
            min_coverage=min_coverage))
    return scores


def _score_cube(sim: Any, result: Any, snr_cut: float) -> ExposureScore:
    dq_in = np.asarray(sim.cube.dq)
    dq_out = np.asarray(result.dq[0])
    new = ((dq_out & OUTLIER) != 0) & ((dq_in & OUTLIER) == 0)
    c = sim.cr_pixels
    truth = sim.cr_mask()
    usable = (dq_in[c["t"], c["y"], c["x"]] & DO_NOT_USE) == 0
    bright = (np.asarray(c["snr"]) > snr_cut) & usable
    return ExposureScore(
        name=str(sim.cube.name), n_flagged=int(np.count_nonzero(new)),
        n_true=int(np.count_nonzero(truth)), n_true_bright=int(np.count_nonzero(bright)),
        recalled_bright=int(np.count_nonzero(new[c["t"][bright], c["y"][bright],
                                                 c["x"][bright]])),
        false_positives=int(np.count_nonzero(new & ~truth)), star_core_hits=0)
