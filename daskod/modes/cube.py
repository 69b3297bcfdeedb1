"""Time-series (``tso``) and coronagraphic (``coron``) modes: one cube, no resampling.

docs/algorithm.md section 3. TSO compares each integration with a rolling median over
``rolling_window_width`` integrations (computed per chunk of integrations with the halo the
window needs, so chunked equals unchunked exactly); with a window not inside ``(1, nints)``
it falls back to the plain median over all integrations, *without* the DQ mask, as the
reference does. Coronagraphy uses the DQ-masked median over all integrations. Both flag
``|S_t - M_t| > snr1 * err_t``, set ``DQ |= 17`` and NaN-match.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from daskod.cube import Cube
from daskod.engine._checkpoint import (
    Checkpoints,
    container_token,
    read_record,
)
from daskod.engine._dispatch import PhaseRunner, Scheduler
from daskod.engine._tasks import barrier, new_task
from daskod.flag._dq import interpret_good_bits
from daskod.flag._graph import update_dq_block
from daskod.flag._kernels import parse_pair
from daskod.io._store import array_sources, is_zarr_array
from daskod.median._kernels import nanmedian_stack, rolling_median, rolling_window_span

__all__ = ["CubeParams", "CubeGraph", "build_cube_mode", "plan_cube_chunks"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CubeParams:
    """Parameters of the cube modes (reference names and defaults)."""

    maskpt: float = 0.7
    snr: str | tuple[float, float] = "5.0 4.0"
    good_bits: str | int | None = "~DO_NOT_USE"
    rolling_window_width: int = 25
    rolling_nan_policy: str = "propagate"

    def __post_init__(self) -> None:
        if not isinstance(self.maskpt, int | float) or not math.isfinite(self.maskpt) or (
                self.maskpt < 0):
            msg = f"maskpt must be a finite number >= 0, got {self.maskpt!r}."
            raise ValueError(msg)
        if isinstance(self.rolling_window_width, bool) or not isinstance(
                self.rolling_window_width, int | np.integer):
            msg = ("rolling_window_width must be an integer (0 or 1: plain median), got "
                   f"{self.rolling_window_width!r}.")
            raise ValueError(msg)
        if self.rolling_window_width < 0:
            msg = f"rolling_window_width must be >= 0, got {self.rolling_window_width!r}."
            raise ValueError(msg)
        if self.rolling_nan_policy not in ("propagate", "omit"):
            msg = ("rolling_nan_policy must be 'propagate' (the reference) or 'omit' "
                   f"(NaN-robust), got {self.rolling_nan_policy!r}.")
            raise ValueError(msg)
        parse_pair(self.snr, "snr")
        interpret_good_bits(self.good_bits)

    @property
    def snr1(self) -> float:
        return parse_pair(self.snr, "snr")[0]

    @property
    def bad_mask(self) -> int:
        return interpret_good_bits(self.good_bits)


@dataclass
class CubeGraph:
    """The built (and when eager, computed) cube run."""

    mode: str
    cube: Cube
    params: CubeParams
    root: str
    time_chunk: int
    rolling: bool
    median: Any = None
    dq: Any = None
    count: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    checkpoints: Checkpoints | None = None


def plan_cube_chunks(shape: tuple[int, int, int], window: int, budget_bytes: int, *,
                     block_rows: int | None = None) -> tuple[int, int, int]:
    """Work units of the cube modes: ``(integrations, rows)`` per flag task, rows per median task.

    A flag task holds ~16 bytes per pixel over its integrations plus the window's halo
    (SCI, DQ, the masked copy, the rolling median) and ~24 more over its own integrations
    (ERR, DQ, variances); rows follow the input's chunking when it has one, so no chunk is
    read twice. A median task holds all integrations of its rows (~12 bytes per pixel).
    """
    nints, ny, nx = shape
    halo = max(window, 1) - 1
    rows = ny if block_rows is None else max(1, min(ny, int(block_rows)))
    while True:
        row_px = rows * nx
        nt = int((budget_bytes / row_px - 16 * halo) // 40)
        if nt >= min(nints, 4 * max(halo, 1)) or rows == 1:
            break
        rows = max(1, rows // 2)
    nt = max(1, min(nints, nt))
    median_rows = int(budget_bytes // (12 * nints * nx))
    median_rows = max(1, min(ny, median_rows))
    return nt, rows, median_rows


def _threshold(dq: Any, bad_mask: int, maskpt: float) -> float:
    """The reference's cube-wide threshold on 0/1 DQ weights: maskpt, or NaN if no good pixel.

    (``compute_weight_threshold`` of weights that are all 1 after dropping zeros is exactly
    ``maskpt * 1.0``.) Reads DQ planes only until a good pixel shows up.
    """
    nints = int(np.shape(dq)[0])
    for t in range(nints):
        plane = np.asarray(dq[t])
        if np.any((plane & np.uint32(bad_mask)) == 0):
            return float(maskpt)
    return math.nan


def _masked(sci: np.ndarray, dq: np.ndarray, bad_mask: int, thr: float) -> np.ndarray:
    """``sci`` with NaN where the 0/1 weight is below ``thr`` (as the reference masks)."""
    weight = ((dq & np.uint32(bad_mask)) == 0).astype(np.float32)
    out = np.array(sci, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[weight < thr] = np.nan
    return out


def _flag_block(sources: dict[str, Any], region: tuple[slice, slice], median: np.ndarray,
                snr1: float, out: Any) -> dict[str, Any]:
    sci = np.asarray(sources["sci"][region], dtype=np.float32)
    err = np.asarray(sources["err"][region])
    with np.errstate(invalid="ignore"):
        cr = np.abs(sci - median) > snr1 * np.nan_to_num(err)
    return update_dq_block(sources, region, cr, out, {"sci": sci, "err": err})


def rolling_flag_chunk(sources: dict[str, Any], t0: int, t1: int, y0: int, y1: int, *,
                       nints: int, window: int, bad_mask: int, thr: float, snr1: float,
                       nan_policy: str, out: Any = None, median_out: Any = None,
                       after: Any = None) -> dict[str, Any]:
    """TSO rolling-median branch for integrations ``[t0, t1)`` and rows ``[y0, y1)`` (reads
    the window's halo of integrations)."""
    a, b = rolling_window_span(t0, t1, window, nints, parity=nan_policy == "propagate")
    sci = np.asarray(sources["sci"][a:b, y0:y1], dtype=np.float32)
    dq = np.asarray(sources["dq"][a:b, y0:y1])
    masked = _masked(sci, dq, bad_mask, thr)
    del sci, dq
    median = rolling_median(masked, window, t0, t1, nints, origin=a, nan_policy=nan_policy)
    del masked
    if median_out is not None:
        median_out[t0:t1, y0:y1] = median
    return _flag_block(sources, (slice(t0, t1), slice(y0, y1)), median, snr1, out)


def median_rows(sources: dict[str, Any], y0: int, y1: int, *, use_mask: bool, bad_mask: int,
                thr: float, median: Any, after: Any = None) -> None:
    """Median over all integrations of rows ``[y0, y1)``, DQ-masked or not, into the store."""
    sci = np.asarray(sources["sci"][:, y0:y1], dtype=np.float32)
    if use_mask:
        sci = _masked(sci, np.asarray(sources["dq"][:, y0:y1]), bad_mask, thr)
    median[y0:y1] = nanmedian_stack(sci)


def flag_against_median(sources: dict[str, Any], t0: int, t1: int, y0: int, y1: int, *,
                        median: Any, snr1: float, out: Any = None, after: Any = None
                        ) -> dict[str, Any]:
    """Flag integrations ``[t0, t1)``, rows ``[y0, y1)`` against one 2-D median frame."""
    return _flag_block(sources, (slice(t0, t1), slice(y0, y1)), np.asarray(median[y0:y1]),
                       snr1, out)


def _recorded_layout(root: Any) -> tuple[int, int, int] | None:
    """(integrations, rows, median rows) per task of the run recorded in the store."""
    import json

    record = read_record(root)
    try:
        layout = json.loads(record["describe"]["layout"])  # type: ignore[index]
        return int(layout["integrations"]), int(layout["rows"]), int(layout["median_rows"])
    except (KeyError, TypeError, ValueError):
        return None


def _open_checkpoints(run: CubeGraph, layout: tuple[int, int, int], enabled: bool,
                      overwrite: bool) -> Checkpoints:
    if not enabled:
        return Checkpoints.disabled(run.root)
    from dataclasses import asdict

    cube = run.cube
    parts = {"mode": run.mode, "parameters": {**asdict(run.params), "mode": run.mode},
             "inputs": {cube.name or "cube": container_token(cube)}, "geometry": cube.shape,
             "layout": {"integrations": layout[0], "rows": layout[1],
                        "median_rows": layout[2]}}
    return Checkpoints.open(run.root, parts=parts, overwrite=overwrite,
                            describe={"geometry": f"cube {cube.shape}"})


def build_cube_mode(cube: Cube, params: CubeParams, mode: str, *, root: str,
                    budget_bytes: int, scheduler: Scheduler, eager: bool,
                    save_median: bool = False, time_chunk: int | None = None,
                    checkpoint: bool = False, overwrite_store: bool = False) -> CubeGraph:
    """Build (and with ``eager`` run) TSO or coronagraphic outlier detection.

    With ``checkpoint`` every task is recorded in the store and a rerun of the same
    fingerprint resumes (see :mod:`daskod.engine._checkpoint`); a resumed run keeps the
    chunk layout of the run that left the store.
    """
    nints, ny, nx = cube.shape
    window = int(params.rolling_window_width)
    rolling = mode == "tso" and 1 < window < nints
    input_chunks = getattr(cube.sci, "chunks", None)
    block_rows = None
    if is_zarr_array(cube.sci) and input_chunks is not None:
        block_rows = int(input_chunks[1])
    nt, block_rows, rows = plan_cube_chunks(cube.shape, window if rolling else 1, budget_bytes,
                                            block_rows=block_rows)
    if time_chunk is not None:
        nt = max(1, min(nints, int(time_chunk)))
    recorded = _recorded_layout(root) if checkpoint and not overwrite_store else None
    if recorded is not None and (time_chunk is None or recorded[0] == nt):
        nt, block_rows, rows = recorded
    run = CubeGraph(mode=mode, cube=cube, params=params, root=root, time_chunk=nt,
                    rolling=rolling)
    log.info("%s: cube %s, %s, %d integrations x %d rows per task", mode, cube.shape,
             f"rolling median of {window}" if rolling else "median over all integrations", nt,
             block_rows)
    phases = PhaseRunner(scheduler, eager, run.timings)
    ckpt = run.checkpoints = _open_checkpoints(run, (nt, block_rows, rows), checkpoint,
                                               overwrite_store)
    sources, ingest = array_sources(cube, root, "inputs", (nt, ny, nx),
                                    shares_memory=scheduler.shares_memory, create=ckpt.array)
    ingested = phases.run("ingest", ckpt.tasks("ingest", ingest))
    after = None if eager else new_task(barrier, *ingested)
    start = time.perf_counter()
    thr = _threshold(cube.dq, params.bad_mask, params.maskpt)
    run.timings["threshold"] = time.perf_counter() - start
    bad_mask, snr1 = params.bad_mask, params.snr1
    out = None
    if eager:
        out = ckpt.array("outputs/dq", cube.shape, np.uint32, (nt, block_rows, nx), 0)
    chunks = [(t0, min(t0 + nt, nints), y0, min(y0 + block_rows, ny))
              for t0 in range(0, nints, nt) for y0 in range(0, ny, block_rows)]
    if rolling:
        median_out = None
        if save_median:
            median_out = ckpt.array("median", cube.shape, np.float32, (nt, block_rows, nx),
                                    np.nan, attributes={"kind": "rolling median"})
            run.median = median_out
        tasks = [new_task(rolling_flag_chunk,
            sources, t0, t1, y0, y1, nints=nints, window=window, bad_mask=bad_mask, thr=thr,
            snr1=snr1, nan_policy=params.rolling_nan_policy, out=out, median_out=median_out,
            after=after) for t0, t1, y0, y1 in chunks]
    else:
        run.median = ckpt.array("median", (ny, nx), np.float32, (rows, nx), np.nan,
                                attributes={"kind": "median over integrations"})
        median_tasks = [new_task(median_rows,
            sources, y0, min(y0 + rows, ny), use_mask=mode == "coron", bad_mask=bad_mask,
            thr=thr, median=run.median, after=after) for y0 in range(0, ny, rows)]
        done = phases.run("median", ckpt.tasks("median", median_tasks))
        median_done = None if eager else new_task(barrier, *done)
        tasks = [new_task(flag_against_median,
            sources, t0, t1, y0, y1, median=run.median, snr1=snr1, out=out, after=median_done)
            for t0, t1, y0, y1 in chunks]
    if eager:
        tasks = ckpt.tasks("flag", tasks, encode=operator.itemgetter("n"),
                           decode=lambda v: {"n": int(v)})
    counts = new_task(
        sum, [new_task(operator.getitem, t, "n") for t in tasks])
    if eager:
        (run.count,) = phases.run("flag", [counts])
        run.dq = da.from_zarr(out)
        ckpt.complete()
        return run
    n_rows = len(range(0, ny, block_rows))
    blocks = [da.from_delayed(new_task(operator.getitem, t, "dq"),
                              shape=(t1 - t0, y1 - y0, nx), dtype=np.uint32,
                              meta=np.empty((0, 0, 0), dtype=np.uint32))
              for t, (t0, t1, y0, y1) in zip(tasks, chunks, strict=True)]
    run.dq = da.concatenate([da.concatenate(blocks[i:i + n_rows], axis=1)
                             for i in range(0, len(blocks), n_rows)], axis=0)
    run.count = counts
    return run
