"""The cube modes' per-task memory estimates against what their kernels really hold.

The planner sizes time-series / coronagraphic tasks with ``rolling_task_bytes``,
``median_task_bytes`` and ``flag_task_bytes``; if a kernel held more than its estimate, a run
would exceed ``memory_limit``, and if it held far less, the budget would waste tasks. The
sources here return a new array per read, as the lazy FITS arrays (and zarr) do.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import daskod
from daskod.flag._cube import flag_against_median, median_rows, rolling_flag_chunk
from daskod.flag._graph import update_dq_block
from daskod.median._kernels import rolling_median, rolling_window_span
from daskod.modes.cube import (
    DQ_CHUNK_BYTES,
    dq_chunk_integrations,
    flag_task_bytes,
    median_task_bytes,
    plan_cube_chunks,
    rolling_task_bytes,
    smallest_cube_task,
)

#: The estimates may exceed the measured peak by at most this factor on blocks of MiBs.
SLACK = 2.0


class _FreshReads:
    """A lazy array: every read is a new array (as FitsArray and zarr)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.ndim = values.ndim

    def __getitem__(self, key):
        return np.array(self.values[key])


def _sources(shape, *, variances=False, seed=0):
    rng = np.random.default_rng(seed)
    sci = rng.normal(100.0, 3.0, shape).astype(np.float32)
    hits = rng.random(shape) < 1e-3
    sci[hits] += 500.0
    sci[rng.random(shape) < 1e-4] = np.nan
    dq = np.zeros(shape, np.uint32)
    dq[rng.random(shape) < 0.01] = 1
    dq[rng.random(shape) < 0.01] = 4
    arrays = {"sci": sci, "err": np.full(shape, 3.0, np.float32), "dq": dq}
    if variances:
        for k in ("var_rnoise", "var_poisson", "var_flat"):
            arrays[k] = np.full(shape, 9.0, np.float32)
        arrays["var_flat"][rng.random(shape) < 1e-4] = np.nan
    return arrays, {k: _FreshReads(v) for k, v in arrays.items()}


def _peak(func, *args, **kwargs):
    tracemalloc.start()
    try:
        out = func(*args, **kwargs)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("nints", "rows", "nx", "nt", "variances"),
                         [(300, 16, 512, 150, False), (300, 16, 512, 150, True),
                          (200, 64, 256, 40, True), (400, 4, 2048, 300, False)])
def test_rolling_task_estimate_bounds_the_kernel(nints, rows, nx, nt, variances):
    window = 25
    _, src = _sources((nints, rows, nx), variances=variances)
    t0 = (nints - nt) // 2
    a, b = rolling_window_span(t0, t0 + nt, window, nints)
    _, peak = _peak(rolling_flag_chunk, src, 0.7, t0, t0 + nt, 0, rows, nints=nints,
                    window=window, bad_mask=1, snr1=5.0, nan_policy="propagate",
                    save_median=True)
    estimate = rolling_task_bytes(nt, b - a, rows, nx)
    assert peak <= estimate, (peak, estimate)
    assert estimate <= SLACK * peak, (peak, estimate)


@pytest.mark.parametrize("use_mask", [False, True])
def test_median_and_flag_task_estimates_bound_the_kernels(use_mask):
    nints, rows, nx = 300, 16, 512
    _, src = _sources((nints, rows, nx), variances=True)
    median, peak = _peak(median_rows, src, 0.7, 0, rows, use_mask=use_mask, bad_mask=1)
    estimate = median_task_bytes(nints, rows, nx)
    assert peak <= estimate, (peak, estimate)
    if use_mask:  # the unmasked median holds one array less than the masked one
        assert estimate <= SLACK * peak, (peak, estimate)
    _, peak = _peak(flag_against_median, src, median, 20, 220, 0, rows, snr1=5.0)
    estimate = flag_task_bytes(200, rows, nx)
    assert peak <= estimate <= SLACK * peak, (peak, estimate)


def test_planned_tasks_fit_the_budget():
    for shape, budget in [((4000, 256, 1024), 259 * 2**20), ((4000, 64, 1024), 14 * 2**20),
                          ((1500, 256, 256), 99 * 2**20), ((50, 2048, 2048), 40 * 2**20)]:
        for window in (1, 25, 101):
            nt, rows, mrows = plan_cube_chunks(shape, window, budget)
            nints, _, nx = shape
            if window > 1:
                t0 = nints // 2
                a, b = rolling_window_span(t0, min(nints, t0 + nt), window, nints)
                assert rolling_task_bytes(nt, b - a, rows, nx) <= budget
            else:
                assert flag_task_bytes(nt, rows, nx) <= budget
                if median_task_bytes(nints, 1, nx) <= budget:
                    assert median_task_bytes(nints, mrows, nx) <= budget


def test_lean_flag_step_equals_the_shared_dq_update():
    """The cube's flag step (one input array held at a time) sets exactly the DQ of the
    shared ``update_dq_block`` (outliers, then NaN matching over SCI, ERR and variances)."""
    nints, rows, nx, window = 120, 8, 64, 25
    arrays, src = _sources((nints, rows, nx), variances=True, seed=3)
    sci = arrays["sci"].copy()
    sci[(arrays["dq"] & 1) != 0] = np.nan
    median = rolling_median(sci, window, 0, nints, nints)
    dq, count = rolling_flag_chunk(src, 0.7, 0, nints, 0, rows, nints=nints, window=window,
                                   bad_mask=1, snr1=5.0, nan_policy="propagate",
                                   save_median=False)
    with np.errstate(invalid="ignore"):
        cr = np.abs(arrays["sci"] - median) > 5.0 * np.nan_to_num(arrays["err"])
    region = (slice(0, nints), slice(0, rows))
    expected, n = update_dq_block(src, region, cr, {"sci": arrays["sci"], "err": arrays["err"]})
    assert int(count[0]) == int(n[0]) > 0
    np.testing.assert_array_equal(dq, expected)
    assert np.count_nonzero(np.isnan(arrays["var_flat"]) & ((dq & 1) == 0)) == 0


def test_smallest_task_sets_the_refusal_floor():
    """A budget too small for one row of the median over all integrations is refused before
    any work, naming a limit that then runs."""
    cube = daskod.datasets.make_tso_cube(nints=3000, shape=(4, 2048), seed=0,
                                         with_variance=False).cube
    least = smallest_cube_task(cube.shape, 1, rolling=False)
    assert least > 64 * 2**20  # 3000 integrations x 2048 columns x 12 B
    with pytest.raises(daskod.MemoryBudgetError, match="give at least") as info:
        daskod.detect_outliers(cube, mode="coron", memory_limit="160MiB", scheduler="threads")
    assert "3000 integrations" in str(info.value)
    floor = int(re.search(r"give at least (\d+) MiB", str(info.value)).group(1))
    # The process may have grown a little since: a few MiB above the floor plans the run.
    result = daskod.detect_outliers(cube, mode="coron", memory_limit=f"{floor + 16}MiB",
                                    scheduler="threads", compute=False)
    assert result is not None
    # The dry-run estimate budgets through the same floor: refused alike, then planned.
    with pytest.raises(daskod.MemoryBudgetError, match="3000 integrations") as info:
        daskod.estimate_memory(cube, mode="coron", memory_limit="160MiB", scheduler="threads")
    floor = int(re.search(r"give at least (\d+) MiB", str(info.value)).group(1))
    est = daskod.estimate_memory(cube, mode="coron", memory_limit=f"{floor + 64}MiB",
                                 scheduler="threads")
    assert est["budget_per_task"] >= least


def test_planned_blocks_read_from_a_calints_file_stay_within_the_estimate(tmp_path):
    """Blocks read from a ``*_calints.fits`` (positioned reads): a block of a quarter of the
    rows or more would be read through a buffer of the whole frames it spans (measured:
    45 MiB against an estimate of 38 for 16 of 64 rows here), which the planner avoids
    (whole frames, or blocks thin enough to be read row run by row run)."""
    from daskod.io._jwst import _fits_arrays

    nints, ny, nx, window = 160, 64, 1024, 25
    sim = daskod.datasets.make_tso_cube(nints=nints, shape=(ny, nx), seed=1,
                                        with_variance=False)
    path = daskod.datasets.write_cube_file(sim.cube, tmp_path / "jw00001001001_01101_00001"
                                           "_nrca3_calints.fits")
    src = _fits_arrays(str(path))
    for budget in (40 * 2**20, 20 * 2**20):
        nt, rows, _ = plan_cube_chunks((nints, ny, nx), window, budget)
        assert rows < ny
        t0 = 40
        t1 = min(nints, t0 + nt)
        a, b = rolling_window_span(t0, t1, window, nints)
        _, peak = _peak(rolling_flag_chunk, src, 0.7, t0, t1, 0, rows, nints=nints,
                        window=window, bad_mask=1, snr1=5.0, nan_policy="propagate",
                        save_median=False)
        estimate = rolling_task_bytes(t1 - t0, b - a, rows, nx)
        assert peak <= estimate <= budget, (rows, peak, estimate)


def test_new_dq_is_stored_in_small_chunks_that_tile_each_task():
    """The product writer reads the stored DQ a chunk at a time: chunks stay small and tile
    each task's block exactly (one task writes one whole shard)."""
    for shape, budget in [((4000, 256, 1024), 259 * 2**20), ((1500, 256, 256), 99 * 2**20),
                          ((4000, 64, 1024), 14 * 2**20), ((30, 2048, 2048), 300 * 2**20)]:
        nt, rows, _ = plan_cube_chunks(shape, 25, budget)
        ct = dq_chunk_integrations(nt, rows, shape[2])
        assert nt % ct == 0
        assert ct == 1 or 4 * ct * rows * shape[2] <= DQ_CHUNK_BYTES
        if nt >= DQ_CHUNK_BYTES // (4 * rows * shape[2]) > 1:
            assert 2 * 4 * ct * rows * shape[2] > DQ_CHUNK_BYTES  # not needlessly tiny
