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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from daskod.cube import Cube, validate_cube
from daskod.engine._budget import scheduler_facts, task_budget
from daskod.engine._fingerprint import container_token
from daskod.engine._run import Context, flag_outputs
from daskod.engine._store import fingerprint
from daskod.flag._cube import (
    FLAG_BYTES_PER_PIXEL,
    MEDIAN_BYTES_PER_PIXEL,
    ROLLING_BYTES_PER_OUTPUT_PIXEL,
    ROLLING_BYTES_PER_SPAN_PIXEL,
    SLAB_TEMPORARY_BYTES,
    cube_threshold,
    flag_against_median,
    median_rows,
    rolling_flag_chunk,
)
from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import parse_pair
from daskod.io._fits_url import _SPAN_FACTOR
from daskod.io._store import is_zarr_array, store_bytes
from daskod.median._kernels import rolling_window_span

__all__ = ["CubeParams", "CubePlan", "plan_cube_chunks", "rolling_task_bytes",
           "median_task_bytes", "flag_task_bytes", "smallest_cube_task", "cube_task_budget",
           "uses_rolling_median",
           "dq_chunk_integrations"]

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


def rolling_task_bytes(integrations: int, span: int, rows: int, nx: int) -> int:
    """What one rolling-median flag task holds at its peak: it reads ``span`` integrations
    (its own ``integrations`` and the window's halo) of ``rows`` x ``nx`` pixels."""
    px = rows * nx
    return int(ROLLING_BYTES_PER_SPAN_PIXEL * span * px
               + ROLLING_BYTES_PER_OUTPUT_PIXEL * integrations * px + SLAB_TEMPORARY_BYTES)


def median_task_bytes(nints: int, rows: int, nx: int) -> int:
    """What one median-over-all-integrations task of ``rows`` rows holds at its peak."""
    return int(MEDIAN_BYTES_PER_PIXEL * nints * rows * nx + SLAB_TEMPORARY_BYTES)


def flag_task_bytes(integrations: int, rows: int, nx: int) -> int:
    """What one flag-against-a-median-frame task holds at its peak (with its median rows)."""
    return int((FLAG_BYTES_PER_PIXEL * integrations + 4) * rows * nx + SLAB_TEMPORARY_BYTES)


def smallest_cube_task(shape: tuple[int, int, int], window: int, *, rolling: bool) -> int:
    """Bytes of the smallest task the cube modes can split a cube into: one row of the
    window's integrations (rolling median), or one row of every integration (the median over
    all integrations)."""
    nints, _, nx = shape
    if rolling:
        return rolling_task_bytes(1, min(nints, window), 1, nx)
    return max(median_task_bytes(nints, 1, nx), flag_task_bytes(1, 1, nx))


def _row_blocks(ny: int, block_rows: int | None) -> Iterator[int]:
    """Rows per task to try, largest first.

    A Zarr input's row chunking, then halvings of it. Otherwise whole frames (one contiguous
    read per block), then blocks of fewer than ``1 / _SPAN_FACTOR`` of the rows, split
    evenly: a lazy FITS array reads a box spanning at most that many times its size as one
    contiguous buffer cut afterwards, which a task of a quarter to all of the rows would hold
    on top of its estimate (~4x the block it reads); thinner boxes are read run by run into
    the block itself.
    """
    if block_rows is not None:
        rows = max(1, min(ny, int(block_rows)))
        while rows > 1:
            yield rows
            rows = max(1, rows // 2)
        yield 1
        return
    yield ny
    k = _SPAN_FACTOR + 1
    while True:
        rows = -(-ny // k)
        if rows == 1:
            break
        if _SPAN_FACTOR * rows < ny:
            yield rows
        k *= 2
    yield 1


#: Bytes of one storage chunk of the new DQ (a task's block is a shard of such chunks): the
#: product writer reads the store a chunk at a time, so this bounds what it decodes at once.
DQ_CHUNK_BYTES = 4 * 2**20


def dq_chunk_integrations(nt: int, rows: int, nx: int) -> int:
    """Integrations per storage chunk of the new DQ: the largest divisor of ``nt`` (chunks
    tile a task's shard exactly) whose chunk holds at most :data:`DQ_CHUNK_BYTES`."""
    most = max(1, DQ_CHUNK_BYTES // (4 * rows * nx))
    return max(d for d in range(1, min(nt, most) + 1) if nt % d == 0)


def plan_cube_chunks(shape: tuple[int, int, int], window: int, budget_bytes: int, *,
                     block_rows: int | None = None) -> tuple[int, int, int]:
    """Work units of the cube modes: ``(integrations, rows)`` per flag task, rows per median task.

    Each task's peak (:func:`rolling_task_bytes`, :func:`flag_task_bytes`,
    :func:`median_task_bytes`) stays within ``budget_bytes``: rows follow the input's
    chunking when it has one (so no chunk is read twice) and shrink (:func:`_row_blocks`)
    until a task holds at least four windows of integrations (the halo then costs at most a
    quarter more reads).
    """
    nints, ny, nx = shape
    halo = max(window, 1) - 1
    per_px = ROLLING_BYTES_PER_SPAN_PIXEL + ROLLING_BYTES_PER_OUTPUT_PIXEL
    free = budget_bytes - SLAB_TEMPORARY_BYTES
    for rows in _row_blocks(ny, block_rows):
        nt = int((free / (rows * nx) - ROLLING_BYTES_PER_SPAN_PIXEL * halo) // per_px)
        if nt >= min(nints, 4 * max(halo, 1)):
            break
    nt = max(1, min(nints, nt))
    median_rows = int(free // (MEDIAN_BYTES_PER_PIXEL * nints * nx))
    median_rows = max(1, min(ny, median_rows))
    if block_rows is None and median_rows < ny:
        median_rows = next(r for r in _row_blocks(ny, None) if r <= median_rows)
    most = max(1, DQ_CHUNK_BYTES // (4 * rows * nx))
    if nt > most:  # a whole number of DQ storage chunks per task
        nt = nt // most * most
    return nt, rows, median_rows


def uses_rolling_median(mode: str, window: int, nints: int) -> bool:
    """Time series with a window shorter than the cube (else the median over all
    integrations, as the reference)."""
    return mode == "tso" and 1 < window < nints


def cube_task_budget(shape: tuple[int, int, int], window: int, *, mode: str,
                     memory_limit: Any, facts: dict[str, Any]) -> Any:
    """The budget of a cube run (:func:`~daskod.engine._budget.task_budget` with the cube's
    smallest task as its floor); the run and :func:`daskod.estimate_memory` both use it."""
    rolling = uses_rolling_median(mode, window, shape[0])
    least = smallest_cube_task(shape, window, rolling=rolling)
    what = (f"one row of {min(window, shape[0])} integrations (the rolling window)" if rolling
            else f"one row of all {shape[0]} integrations (their median)")
    return task_budget(memory_limit=memory_limit, least=least, what=what, **facts)


@dataclass
class CubePlan:
    """A validated cube: everything the TSO/coronagraphic graph needs, before any pixel."""

    cube: Any
    params: CubeParams
    mode: str
    time_chunk: int | None = None
    save_median: bool = False
    verify_inputs: bool = False

    def __post_init__(self) -> None:
        self.cube = validate_cube(self.cube, mode=self.mode)
        nints = self.cube.shape[0]
        self.window = int(self.params.rolling_window_width)
        self.rolling = uses_rolling_median(self.mode, self.window, nints)

    @property
    def items(self) -> list[Cube]:
        return [self.cube]

    skip_reason = None

    def budget(self, sched: Any, memory_limit: Any, tile_size: int | None) -> Any:
        budget = cube_task_budget(self.cube.shape, self.window, mode=self.mode,
                                  memory_limit=memory_limit, facts=scheduler_facts(sched))
        if sched.client is None:
            sched.num_workers = budget.num_workers
        return budget

    def fingerprints(self) -> tuple[dict[str, str], dict[str, Any]]:
        cube = self.cube
        return ({cube.name: container_token(cube, cube.shape, content=self.verify_inputs)},
                {"mode": self.mode, **asdict(self.params)})

    def store_bytes(self, sched: Any) -> int:
        plane = math.prod(self.cube.shape[1:])
        return store_bytes([self.cube], shares_memory=sched.shares_memory,
                           median_pixels=math.prod(self.cube.shape) if self.save_median
                           else plane)

    def layout(self, budget: Any) -> dict[str, int]:
        cube = self.cube
        input_chunks = getattr(cube.sci, "chunks", None)
        block_rows = None
        if is_zarr_array(cube.sci) and input_chunks is not None:
            block_rows = int(input_chunks[1])
        nt, rows, median_rows_ = plan_cube_chunks(
            cube.shape, self.window if self.rolling else 1, budget.per_task_bytes,
            block_rows=block_rows)
        if self.time_chunk is not None:
            nt = max(1, min(cube.shape[0], int(self.time_chunk)))
        return {"integrations": nt, "rows": rows, "median_rows": median_rows_}

    def build(self, ctx: Context) -> Any:
        cube, p = self.cube, self.params
        nints, ny, nx = cube.shape
        nt, rows = int(ctx.layout["integrations"]), int(ctx.layout["rows"])
        mrows = int(ctx.layout["median_rows"])
        log.info("%s: cube %s, %s, %d integrations x %d rows per task", self.mode, cube.shape,
                 f"rolling median of {self.window}" if self.rolling
                 else "median over all integrations", nt, rows)
        inputs_fp = fingerprint(self.fingerprints()[0])
        src = ctx.sources(cube, "inputs", (nt, rows, nx), inputs_fp)
        full = (slice(0, nints), slice(0, ny), slice(0, nx))
        thr = ctx.graph.task("threshold", (), cube_threshold, src["dq"].reads(full),
                             p.bad_mask, p.maskpt)
        base_fp = fingerprint(inputs_fp, self.mode, p.maskpt, p.bad_mask, self.window,
                              p.rolling_nan_policy, nt, rows)
        flag_fp = fingerprint(base_fp, p.snr1)
        grid = (-(-nints // nt), -(-ny // rows))
        dq = ctx.stored("outputs/dq", cube.shape, np.uint32, (nt, rows, nx), 0,
                        fingerprint=flag_fp,
                        chunks=(dq_chunk_integrations(nt, rows, nx), rows, nx))
        count = ctx.stored("outputs/count", (*grid, 1), np.int64, (1, 1, 1), 0,
                           fingerprint=flag_fp)
        targets, median, median_refs = (dq, count), None, {}
        if self.rolling and self.save_median:
            median = ctx.stored("median", cube.shape, np.float32, (nt, rows, nx), np.nan,
                                fingerprint=base_fp, attributes={"kind": "rolling median"})
            targets = (dq, count, median)
        elif not self.rolling:
            median = ctx.stored("median", (ny, nx), np.float32, (mrows, nx), np.nan,
                                fingerprint=fingerprint(base_fp, mrows),
                                attributes={"kind": "median over integrations"})
            for i, y0 in enumerate(range(0, ny, mrows)):
                y1 = min(y0 + mrows, ny)
                region = (slice(0, nints), slice(y0, y1), slice(0, nx))
                median_refs[(i, 0)] = ctx.fill(
                    "median", (i, 0), (median,), median_rows,
                    {name: s.reads(region) for name, s in src.items()}, thr, y0, y1,
                    use_mask=self.mode == "coron", bad_mask=p.bad_mask)
        refs = {}
        for i, t0 in enumerate(range(0, nints, nt)):
            for j, y0 in enumerate(range(0, ny, rows)):
                t1, y1 = min(t0 + nt, nints), min(y0 + rows, ny)
                if self.rolling:
                    a, b = rolling_window_span(t0, t1, self.window, nints,
                                               parity=p.rolling_nan_policy == "propagate")
                    region = (slice(min(a, t0), max(b, t1)), slice(y0, y1), slice(0, nx))
                    refs[(i, j, 0)] = ctx.fill(
                        "flag", (i, j, 0), targets, rolling_flag_chunk,
                        {name: s.reads(region) for name, s in src.items()}, thr, t0, t1, y0,
                        y1, nints=nints, window=self.window, bad_mask=p.bad_mask,
                        snr1=p.snr1, nan_policy=p.rolling_nan_policy,
                        save_median=median is not None, block=(i, j, 0))
                else:
                    region = (slice(t0, t1), slice(y0, y1), slice(0, nx))
                    deps = [median_refs[(m, 0)]
                            for m in range(y0 // mrows, (y1 - 1) // mrows + 1)]
                    refs[(i, j, 0)] = ctx.fill(
                        "flag", (i, j, 0), targets, flag_against_median,
                        {name: s.reads(region) for name, s in src.items()}, deps, t0, t1,
                        y0, y1, snr1=p.snr1, block=(i, j, 0))
        out = flag_outputs(ctx, [refs], [(dq, count)])
        if median is not None:
            out.median = (ctx.output("medianframe", median_refs, median) if not self.rolling
                          else ctx.output("medianframe", refs, median, which=2))
        return out
