"""Time-series and coronagraphic modes (docs/algorithm.md section 3 and its unit scenarios)."""

from __future__ import annotations

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod.median._kernels import rolling_median, rolling_median_reference, rolling_window_span

BKG, SIGMA, SIGNAL = 1.5, 0.02, 7.0


def _reference_like_cube(nints=50, variability=True, exp_type=None, tso=True):
    """The reference tests' cube: identical noise in every integration (re-seeded), a +7
    source at (7, 7), err = sigma (sqrt(sigma^2 + data) on the source), a weak +10 sigma CR at
    (5, 12, 12)."""
    planes = []
    for _ in range(nints):
        rng = np.random.default_rng(99)
        planes.append(rng.normal(BKG, SIGMA, (21, 20)).astype(np.float32))
    sci = np.stack(planes)
    sci[:, 7, 7] += SIGNAL
    err = np.full_like(sci, SIGMA)
    if variability:
        sci[:, 7, 7] += (SIGNAL * np.cos(np.linspace(0, np.pi, nints))).astype(np.float32)
    err[:, 7, 7] = np.sqrt(SIGMA**2 + sci[:, 7, 7])
    sci[5 if nints > 5 else 0, 12, 12] = BKG + 10 * SIGMA
    return daskod.Cube(sci=sci, err=err, dq=np.zeros(sci.shape, np.uint32),
                       var_rnoise=np.ones(sci.shape, np.float32), tso_visit=tso,
                       exp_type=exp_type, name="cube")


def test_rolling_median_ramp_values():
    ramp = np.arange(10, dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(rolling_median(ramp, 3, 0, 10, 10)[:, 0, 0],
                                  [1, 1, 2, 3, 4, 5, 6, 7, 8, 8])
    np.testing.assert_array_equal(rolling_median(ramp, 4, 0, 10, 10)[:, 0, 0],
                                  [1.5, 1.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 7.5])


@pytest.mark.parametrize("window", [2, 3, 4, 7, 8, 25, 56, 57])
def test_rolling_median_chunks_equal_the_reference_loop(window):
    rng = np.random.default_rng(window)
    cube = rng.normal(size=(57, 3, 4)).astype(np.float32)
    cube[rng.random(cube.shape) < 0.03] = np.nan
    ref = rolling_median_reference(cube, window).astype(np.float32)
    for t0, t1 in [(0, 57), (0, 1), (0, 6), (6, 19), (19, 20), (50, 57), (56, 57)]:
        a, b = rolling_window_span(t0, t1, window, 57)
        got = rolling_median(cube[a:b], window, t0, t1, 57, origin=a)
        np.testing.assert_array_equal(got, ref[t0:t1])


def test_tso_rolling_window_keeps_varying_source_and_flags_cr():
    result = daskod.detect_outliers(_reference_like_cube(), rolling_window_width=7,
                                    scheduler="synchronous")
    dq = result.dq[0]
    assert dq[5, 12, 12] == 17
    assert not dq[:, 7, 7].any()
    assert result.n_flagged == [1]
    assert np.isnan(result.updated_exposures()[0].sci[5, 12, 12])


def test_tso_plain_median_flags_the_varying_source():
    """Window 0 falls back to the plain median, which the transit-like variation fools."""
    result = daskod.detect_outliers(_reference_like_cube(), rolling_window_width=0,
                                    scheduler="synchronous")
    assert result.dq[0][5, 12, 12] == 17
    assert result.dq[0][:, 7, 7].any()


@pytest.mark.parametrize("window", [0, 1, 50, 80])
def test_windows_outside_range_use_the_unmasked_plain_median(window):
    cube = _reference_like_cube(variability=False)
    cube.dq[3, 2, 2] = 1  # masked by DQ, but the plain-median branch does not mask
    result = daskod.detect_outliers(cube, rolling_window_width=window, scheduler="synchronous")
    expected = np.median(cube.sci, axis=0)
    np.testing.assert_array_equal(result.median, expected.astype(np.float32))


@pytest.mark.parametrize("chunk", [1, 3, 7, 13, 50])
def test_tso_chunked_equals_unchunked(chunk):
    sim = datasets.make_tso_cube(nints=50, shape=(8, 16), seed=2)
    whole = daskod.detect_outliers(sim.cube, rolling_window_width=7, tile_size=50,
                                   scheduler="synchronous")
    part = daskod.detect_outliers(sim.cube, rolling_window_width=7, tile_size=chunk,
                                  scheduler="threads")
    np.testing.assert_array_equal(part.dq[0], whole.dq[0])
    assert whole.n_flagged[0] > 0


def test_tso_zarr_row_blocks_equal_numpy(tmp_path):
    sim = datasets.make_tso_cube(nints=40, shape=(12, 16), seed=6, store=tmp_path / "c.zarr",
                                 time_chunk=8, chunk_rows=5)
    assert hasattr(sim.cube.sci, "chunks")
    lazy_rows = daskod.detect_outliers(sim.cube, rolling_window_width=7, tile_size=6,
                                       scheduler="threads")
    in_memory = daskod.Cube(sci=sim.cube.sci[:], err=sim.cube.err[:], dq=sim.cube.dq[:],
                            var_rnoise=sim.cube.var_rnoise[:], tso_visit=True)
    whole = daskod.detect_outliers(in_memory, rolling_window_width=7, scheduler="synchronous")
    np.testing.assert_array_equal(lazy_rows.dq[0], whole.dq[0])
    assert whole.n_flagged[0] > 0


def test_tso_recall_on_simulated_transit():
    sim = datasets.make_tso_cube(nints=120, shape=(24, 64), seed=4)
    result = daskod.detect_outliers(sim.cube, scheduler="threads")
    new = (result.dq[0] & 16) != 0
    c = sim.cr_pixels
    bright = c["snr"] > 10
    assert bright.sum() > 20
    assert new[c["t"][bright], c["y"][bright], c["x"][bright]].mean() >= 0.95
    # The transiting star itself is never flagged.
    y, x = (int(v) for v in sim.star_yx)
    truth = sim.cr_mask()
    assert not (new[:, y - 1:y + 2, x - 1:x + 2] & ~truth[:, y - 1:y + 2, x - 1:x + 2]).any()


def test_nan_propagation_quirk_and_robust_option():
    """One DQ-masked sample makes every window containing it NaN: a CR next to it in time is
    not flagged by the reference rule; ``rolling_nan_policy='omit'`` flags it."""
    cube = _reference_like_cube(variability=False)
    cube.dq[8, 12, 12] = 1
    parity = daskod.detect_outliers(cube, rolling_window_width=7, scheduler="synchronous")
    assert parity.dq[0][5, 12, 12] == 0
    robust = daskod.detect_outliers(cube, rolling_window_width=7, rolling_nan_policy="omit",
                                    scheduler="synchronous")
    assert robust.dq[0][5, 12, 12] == 17


def test_coron_median_flags_cr_not_source():
    cube = _reference_like_cube(nints=3, variability=False, exp_type="MIR_LYOT", tso=False)
    cube.sci[:, 12, 12] = cube.sci[1, 12, 12]
    cube.sci[0, 12, 12] = BKG + 10 * SIGMA
    result = daskod.detect_outliers(cube, scheduler="synchronous")  # mode guessed: coron
    assert result.params["mode"] == "coron"
    assert result.dq[0][0, 12, 12] == 17
    assert not result.dq[0][:, 7, 7].any()
    assert result.median.shape == (21, 20)


def test_coron_simulated():
    sim = datasets.make_coron_cube(seed=3)
    result = daskod.detect_outliers(sim.cube, mode="coron", scheduler="synchronous",
                                    tile_size=3)
    new = (result.dq[0] & 16) != 0
    c = sim.cr_pixels
    bright = c["snr"] > 10
    assert new[c["t"][bright], c["y"][bright], c["x"][bright]].mean() >= 0.95
    assert (new & ~sim.cr_mask()).sum() <= 2


def test_cube_graph_is_lazy(raise_if_dask_computes):
    sim = datasets.make_tso_cube(nints=40, shape=(8, 16), seed=1)
    with raise_if_dask_computes(0):
        lazy = daskod.detect_outliers(sim.cube, compute=False, tile_size=9)
    eager = daskod.detect_outliers(sim.cube, tile_size=9, scheduler="synchronous")
    np.testing.assert_array_equal(np.asarray(lazy.dq[0]), eager.dq[0])


def test_cube_modes_bad_input():
    image = datasets.make_simple_exposures(n_exposures=1)[0]
    with pytest.raises(TypeError, match=r"takes one daskod\.Cube"):
        daskod.detect_outliers([image], mode="tso")
    flat = daskod.Cube(sci=np.zeros((4, 5)), err=np.zeros((4, 5)),
                       dq=np.zeros((4, 5), np.uint32), name="flat")
    with pytest.raises(daskod.InputError, match="'flat': sci must be 3-D"):
        daskod.detect_outliers(flat, mode="coron")
    one = daskod.Cube(sci=np.zeros((1, 4, 5)), err=np.zeros((1, 4, 5)),
                      dq=np.zeros((1, 4, 5), np.uint32), name="one")
    with pytest.raises(daskod.InputError, match="needs at least 2"):
        daskod.detect_outliers(one, mode="tso")
    bad = daskod.Cube(sci=np.zeros((3, 4, 5)), err=np.zeros((3, 4, 6)),
                      dq=np.zeros((3, 4, 5), np.uint32), name="bad")
    with pytest.raises(daskod.InputError, match="err has shape"):
        daskod.detect_outliers(bad, mode="tso")
    cube = _reference_like_cube(nints=10)
    with pytest.raises(ValueError, match="rolling_window_width"):
        daskod.detect_outliers(cube, mode="tso", rolling_window_width=-3)
    with pytest.raises(ValueError, match="rolling_nan_policy"):
        daskod.detect_outliers(cube, mode="tso", rolling_nan_policy="ignore")
    unknown = daskod.Cube(sci=cube.sci, err=cube.err, dq=cube.dq, name="plain")
    with pytest.raises(ValueError, match="Cannot tell the mode"):
        daskod.detect_outliers(unknown)
    with pytest.raises(TypeError, match="mode='imaging' takes a list"):
        daskod.detect_outliers(cube, mode="imaging")
