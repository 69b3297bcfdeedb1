"""The IFU difference method as a tiled Dask computation over one detector's exposures.

Phases (each a set of tasks over detector tiles, docs/algorithm.md section 4.1):

``difference``
    per tile: every exposure's across-slice neighbour differences (reading one extra line
    along ``diffaxis``), their minimum over exposures -> ``minarr`` in the working store.
``floor``
    one task: ``nanmedian(minarr) / 3`` over the whole frame (one float64 per pixel).
``normalise``
    per tile: the zero-padded NaN-median filter of ``minarr`` (reading a ``k // 2`` halo),
    the floor, ``minnorm = minarr / normarr`` -> ``minnorm`` in the store.
``percentile``
    one task: the ``threshold_percent`` percentile of ``minnorm`` on the central region.
``flag``
    per exposure and tile: ``minnorm > pct`` (and NaN ``minarr`` with the second check),
    ``DQ |= 17``, DO_NOT_USE where SCI/ERR/VAR are NaN.

The two global statistics are computed from the exact stored values, and every tile reads
the halo it needs, so any tile size and scheduler give bitwise the whole-frame answer.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from daskod.engine._checkpoint import Checkpoints
from daskod.engine._dispatch import PhaseRunner, Scheduler
from daskod.engine._tasks import barrier, new_task
from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE
from daskod.flag._kernels import apply_outlier_flags, nan_or_unusable_flags
from daskod.geometry._tiles import Tile, Tiling
from daskod.ifu._difference_kernels import (
    CENTRAL_BORDER,
    masked_science,
    median_in_place,
    nanmedian_filter,
    neighbour_difference,
    normalise,
    outlier_mask,
    percentile_in_place,
)
from daskod.io._store import array_sources

__all__ = ["DifferenceRun", "build_difference", "difference_tile", "normalise_tile",
           "flag_tile"]

log = logging.getLogger(__name__)

_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


@dataclass
class DifferenceRun:
    """One detector's difference-method run (built, and computed when eager).

    Attributes
    ----------
    detector : str
        Detector name (lower case, as the reference groups).
    indices : list of int
        Positions of this detector's exposures in the input list.
    minarr, minnorm : zarr.Array
        Minimum neighbour difference and its normalised value, in the working store.
    normarr, diffarr : zarr.Array or None
        Kept with ``save_intermediate_results`` (``diffarr`` is ``(n, ny, nx)``).
    nfloor, pct : float or Delayed
        The normalisation floor and the percentile cut.
    dq, counts : list
        New DQ and pixels flagged per exposure of this detector.
    """

    detector: str
    indices: list[int]
    tile: int
    minarr: Any = None
    minnorm: Any = None
    normarr: Any = None
    diffarr: Any = None
    nfloor: Any = None
    pct: Any = None
    dq: list[Any] = field(default_factory=list)
    counts: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _extended_box(tile: Tile, shape: tuple[int, int], halo: tuple[int, int]
                  ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The tile grown by ``halo`` clipped to the frame, and where it sits in the grown tile."""
    y0, y1 = tile.y0 - halo[0], tile.y1 + halo[0]
    x0, x1 = tile.x0 - halo[1], tile.x1 + halo[1]
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, shape[0]), max(x0, 0), min(x1, shape[1])
    return (cy0, cy1, cx0, cx1), (cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0)


def _read_zero_padded(array: Any, tile: Tile, shape: tuple[int, int], halo: tuple[int, int],
                      read: Any) -> np.ndarray:
    """``read(array, box)`` over the tile plus ``halo``, zeros beyond the frame."""
    (cy0, cy1, cx0, cx1), (py0, py1, px0, px1) = _extended_box(tile, shape, halo)
    out = np.zeros((tile.y1 - tile.y0 + 2 * halo[0], tile.x1 - tile.x0 + 2 * halo[1]),
                   dtype=np.float64)
    out[py0:py1, px0:px1] = read(array, (slice(cy0, cy1), slice(cx0, cx1)))
    return out


def _read_masked(source: dict[str, Any], region: tuple[slice, slice]) -> np.ndarray:
    return masked_science(np.asarray(source["sci"][region]), np.asarray(source["dq"][region]))


def difference_tile(sources: list[dict[str, Any]], tile: Tile, *, shape: tuple[int, int],
                    diffaxis: int, minarr: Any, diffarr: Any = None, after: Any = None
                    ) -> None:
    """Minimum over exposures of the neighbour differences on one tile -> ``minarr``."""
    halo = (1, 0) if diffaxis == 0 else (0, 1)
    result = None
    for k, source in enumerate(sources):
        extended = _read_zero_padded(source, tile, shape, halo, _read_masked)
        diff = neighbour_difference(extended, diffaxis)
        if diffarr is not None:
            diffarr[(k, *tile.slices)] = diff
        result = diff if result is None else np.fmin(result, diff)
    minarr[tile.slices] = result


def _gather_finite(array: Any, box: tuple[int, int, int, int], rows: int) -> np.ndarray:
    """The non-NaN values of ``array[y0:y1, x0:x1]``, read ``rows`` rows at a time into one
    float64 buffer (at most one frame of values is held, plus one band)."""
    y0, y1, x0, x1 = box
    out = np.empty(max(y1 - y0, 0) * max(x1 - x0, 0), dtype=np.float64)
    n = 0
    for a in range(y0, y1, rows):
        band = np.asarray(array[a:min(a + rows, y1), x0:x1], dtype=np.float64)
        keep = band[~np.isnan(band)]
        out[n:n + keep.size] = keep
        n += keep.size
    return out[:n]


def floor_task(minarr: Any, rows: int, *_after: Any) -> float:
    """``nanmedian(minarr) / 3`` over the stored frame (exact: every value is gathered)."""
    ny, nx = minarr.shape
    return median_in_place(_gather_finite(minarr, (0, ny, 0, nx), rows)) / 3


def normalise_tile(minarr: Any, tile: Tile, *, shape: tuple[int, int], kernel: tuple[int, int],
                   nfloor: float, minnorm: Any, normarr: Any = None, max_values: int = 2**22,
                   after: Any = None) -> None:
    """Median filter (halo ``k // 2``, zeros beyond the frame), floor and ratio on one tile."""
    halo = (kernel[0] // 2, kernel[1] // 2)
    padded = _read_zero_padded(minarr, tile, shape, halo,
                               lambda a, region: np.asarray(a[region]))
    centre = padded[halo[0]:padded.shape[0] - halo[0], halo[1]:padded.shape[1] - halo[1]]
    norm, ratio = normalise(centre, nanmedian_filter(padded, kernel, max_values=max_values),
                            nfloor)
    minnorm[tile.slices] = ratio
    if normarr is not None:
        normarr[tile.slices] = norm


def percentile_task(minnorm: Any, shape: tuple[int, int], threshold_percent: float,
                    rows: int, *_after: Any) -> float:
    """The percentile cut over the stored ``minnorm`` of the central region (exact)."""
    b = CENTRAL_BORDER
    ny, nx = shape
    return percentile_in_place(_gather_finite(minnorm, (b, ny - b, b, nx - b), rows),
                               threshold_percent)


def flag_tile(source: dict[str, Any], tile: Tile, *, minnorm: Any, minarr: Any, pct: float,
              second_check: bool, out: Any = None, after: Any = None) -> dict[str, Any]:
    """New DQ of one exposure tile and the pixels flagged there (the reference's count).

    The count is ``minnorm > pct`` plus, with the second check, the pixels where ``minarr``
    is NaN that were still valid (not NaN, not DO_NOT_USE, not already an outlier).
    """
    region = tile.slices
    above = outlier_mask(np.asarray(minnorm[region]), pct)
    dq = np.asarray(source["dq"][region]).astype(np.uint32)
    sci = np.asarray(source["sci"][region])
    mask = above
    n = int(np.count_nonzero(above))
    if second_check:
        nan_min = np.isnan(np.asarray(minarr[region]))
        extra = nan_min & ~above & ~np.isnan(sci) & ((dq & DO_NOT_USE) == 0)
        n += int(np.count_nonzero(extra))
        mask = above | nan_min
    new = apply_outlier_flags(dq, mask)
    arrays = {"sci": sci, "err": np.asarray(source["err"][region])}
    for key in _VARIANCES:
        if source.get(key) is not None:
            arrays[key] = np.asarray(source[key][region])
    new = nan_or_unusable_flags(new, arrays)
    if out is not None:
        out[region] = new
        return {"n": n}
    return {"dq": new, "n": n}


def _phase_name(detector: str) -> str:
    """A detector name usable as a store path component."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(detector)) or "detector"


def build_difference(exposures: list[Exposure], indices: list[int], *, detector: str,
                     root: Any, scheduler: Scheduler, eager: bool, tile: int, diffaxis: int,
                     kernel: tuple[int, int], threshold_percent: float, second_check: bool,
                     save_intermediate: bool, filter_values: int = 2**22,
                     checkpoints: Checkpoints | None = None) -> DifferenceRun:
    """Build (and with ``eager`` run) the difference method for one detector's exposures.

    Parameters
    ----------
    exposures : list of Exposure
        All validated inputs; ``indices`` picks this detector's.
    root : str
        The working store; arrays go under ``ifu_difference/<detector>/``.
    kernel : tuple of int
        Odd filter sizes (rows, columns).
    filter_values : int
        Window values the median filter holds per strip (bounds its temporaries).
    checkpoints : Checkpoints, optional
        Record finished tasks in the store / reuse those of a resumed run.
    """
    ckpt = checkpoints or Checkpoints.disabled(root)
    create_array = ckpt.array  # reopens the arrays of a resumed run
    members = [exposures[k] for k in indices]
    shape = members[0].shape
    run = DifferenceRun(detector=detector, indices=list(indices), tile=tile)
    phases = PhaseRunner(scheduler, eager, run.timings)
    prefix = f"ifu_difference/{detector}"
    chunks = (tile, tile)
    sources, ingest = [], []
    for k in indices:
        entry, tasks = array_sources(exposures[k], root, f"inputs/{k}", chunks,
                                     shares_memory=scheduler.shares_memory, create=create_array)
        sources.append(entry)
        ingest.extend(tasks)
    name = _phase_name(detector)
    ingested = phases.run("ingest", ckpt.tasks(f"ingest/{name}", ingest))
    after = None if eager else new_task(barrier, *ingested)
    attrs = {"detector": detector, "kernel_size": list(kernel),
             "threshold_percent": float(threshold_percent), "diffaxis": int(diffaxis)}
    run.minarr = create_array(f"{prefix}/minarr", shape, np.float64, chunks, np.nan,
                              attributes={**attrs, "kind": "minimum neighbour difference"})
    run.minnorm = create_array(f"{prefix}/minnorm", shape, np.float64, chunks, np.nan,
                               attributes={**attrs, "kind": "minarr / normarr"})
    if save_intermediate:
        run.diffarr = create_array(f"{prefix}/diffarr", (len(indices), *shape), np.float64,
                                   (1, *chunks), np.nan,
                                   attributes={**attrs, "kind": "neighbour differences",
                                               "exposures": [e.name for e in members]})
        run.normarr = create_array(f"{prefix}/normarr", shape, np.float64, chunks, np.nan,
                                   attributes={**attrs, "kind": "normalisation"})
    tiles = list(Tiling(shape, chunks))
    diff_tasks = [new_task(difference_tile,
        sources, t, shape=shape, diffaxis=diffaxis, minarr=run.minarr, diffarr=run.diffarr,
        after=after) for t in tiles]
    done = phases.run("difference", ckpt.tasks(f"difference/{name}", diff_tasks))
    floor = new_task(floor_task, run.minarr, tile, *([] if eager else done))
    (run.nfloor,) = phases.run("floor", ckpt.tasks(f"floor/{name}", [floor]))
    norm_tasks = [new_task(normalise_tile,
        run.minarr, t, shape=shape, kernel=kernel, nfloor=run.nfloor, minnorm=run.minnorm,
        normarr=run.normarr, max_values=filter_values) for t in tiles]
    done = phases.run("normalise", ckpt.tasks(f"normalise/{name}", norm_tasks))
    pct = new_task(percentile_task, run.minnorm, shape, threshold_percent, tile,
                   *([] if eager else done))
    (run.pct,) = phases.run("percentile", ckpt.tasks(f"percentile/{name}", [pct]))
    if eager:
        log.info("Detector %s: %d exposure(s), floor %.6g, %.4g-th percentile %.6g",
                 detector, len(indices), run.nfloor, threshold_percent, run.pct)
    targets: list[Any] = [None] * len(indices)
    if eager:
        targets = [create_array(f"outputs/{k}/dq", shape, np.uint32, chunks, 0)
                   for k in indices]
    flags = [[new_task(
        flag_tile, source, t, minnorm=run.minnorm, minarr=run.minarr, pct=run.pct,
        second_check=second_check, out=target) for t in tiles]
        for source, target in zip(sources, targets, strict=True)]
    if eager:
        flat = ckpt.tasks(f"flag/{name}", [task for per_tile in flags for task in per_tile],
                          encode=operator.itemgetter("n"), decode=lambda v: {"n": int(v)})
        flags = [flat[i:i + len(tiles)] for i in range(0, len(flat), len(tiles))]
    counts = [new_task(
        sum, [new_task(operator.getitem, task, "n") for task in per_tile])
        for per_tile in flags]
    if eager:
        run.counts = [int(n) for n in phases.run("flag", counts)]
        run.dq = [da.from_zarr(t) for t in targets]
        return run
    tiling = Tiling(shape, chunks)
    for per_tile in flags:
        rows: list[list[Any]] = [[None] * tiling.nblocks[1] for _ in range(tiling.nblocks[0])]
        for t, task in zip(tiles, per_tile, strict=True):
            rows[t.i][t.j] = da.from_delayed(
                new_task(operator.getitem, task, "dq"), shape=t.shape,
                dtype=np.uint32, meta=np.empty((0, 0), dtype=np.uint32))
        run.dq.append(da.block(rows))
    run.counts = counts
    return run
