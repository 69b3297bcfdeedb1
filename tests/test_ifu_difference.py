"""IFU difference method (docs/algorithm.md section 4.1): each formula step by hand, the
whole-frame kernel against a literal transcription of the reference, and the tiled engine
against the kernel."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import daskod
from daskod.ifu._difference_kernels import (
    central_percentile,
    difference_reference,
    masked_science,
    medfilt,
    median_in_place,
    neighbour_difference,
    normalise,
    outlier_mask,
    parse_kernel_size,
    percentile_in_place,
)

NAN = np.nan


def _transcribed(scis, dqs, diffaxis, kern, q, second_check=False):
    """The reference's steps written out with the numpy calls it uses (np.diff with prepend,
    flips, a float64 stack, nanmin, np.pad + nanmedian over windows, nanpercentile)."""
    ny, nx = scis[0].shape
    diffarr = np.zeros([len(scis), ny, nx])
    for j, (sci, dq) in enumerate(zip(scis, dqs, strict=True)):
        sci = sci.copy()
        sci[(dq & 1).astype(bool)] = np.nan
        left = np.diff(sci, axis=diffaxis, prepend=0)
        right = np.flip(np.diff(np.flip(sci, axis=diffaxis), axis=diffaxis, prepend=0),
                        axis=diffaxis)
        comb = np.zeros([2, ny, nx])
        comb[0], comb[1] = np.abs(left), np.abs(right)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            diffarr[j] = np.nanmin(comb, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        minarr = np.nanmin(diffarr, axis=0)
        padded = np.pad(minarr, [[k // 2] for k in kern])
        windows = np.lib.stride_tricks.sliding_window_view(padded, tuple(kern))
        normarr = np.nanmedian(windows, axis=(-2, -1))
        nfloor = np.nanmedian(minarr) / 3
        normarr[normarr < nfloor] = nfloor
        with np.errstate(divide="ignore", invalid="ignore"):
            minnorm = minarr / normarr
        pct = np.nanpercentile(minnorm[4:ny - 4, 4:nx - 4], q)
    mask = minnorm > pct
    if second_check:
        mask = mask | np.isnan(minarr)
    return minarr, normarr, minnorm, pct, mask


def test_neighbour_difference_by_hand():
    # L = S[k] - S[k-1] (0 before the edge), R = S[k] - S[k+1] (0 after), min of |L|, |R|.
    row = np.array([[1.0, 4.0, 6.0, 10.0]])
    padded = np.pad(row, ((0, 0), (1, 1)))
    np.testing.assert_array_equal(neighbour_difference(padded, 1), [[1, 2, 2, 4]])
    # A NaN neighbour leaves the other side; a NaN pixel gives NaN.
    row = np.array([[1.0, NAN, 6.0, 10.0]])
    got = neighbour_difference(np.pad(row, ((0, 0), (1, 1))), 1)
    np.testing.assert_array_equal(got, [[1, NAN, 4, 4]])
    # diffaxis 0 compares up/down: the transpose.
    got0 = neighbour_difference(np.pad(row.T, ((1, 1), (0, 0))), 0)
    np.testing.assert_array_equal(got0, got.T)
    assert got.dtype == np.float64


def test_masked_science_only_do_not_use_and_input_untouched():
    sci = np.array([[1, 2, 3]], dtype=np.float32)
    dq = np.array([[1, 4, 513]], dtype=np.uint32)
    out = masked_science(sci, dq)
    np.testing.assert_array_equal(out, [[NAN, 2, NAN]])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(sci, [[1, 2, 3]])


def test_minimum_over_exposures_ignores_nan():
    a = np.array([[0, 1, 3, 6, 10, 15, 21, 28, 36, 45]], dtype=np.float32).repeat(9, axis=0)
    b = a * 2
    dq_a = np.zeros(a.shape, np.uint32)
    dq_b = dq_a.copy()
    dq_a[4, 5] = 1  # masked in one exposure: the other one's differences are used
    res = difference_reference([a, b], [dq_a, dq_b], diffaxis=1, kernel=(3, 3),
                               threshold_percent=50)
    np.testing.assert_array_equal(res.minarr, np.fmin(res.diffarr[0], res.diffarr[1]))
    # Row 4 of b: 0 2 6 12 20 30 42 56 72 90 -> min(|L|, |R|) at x=5 is min(10, 12) = 10.
    assert res.minarr[4, 5] == 10
    assert np.isnan(res.diffarr[0, 4, 5])
    # Without the mask, x=5 of a has min(5, 6) = 5.
    assert res.minarr[3, 5] == 5


def test_medfilt_stcal_semantics():
    np.testing.assert_array_equal(medfilt(np.array([[2.0, NAN, 0.0]]), (1, 3)), [[1, 1, 0]])
    np.testing.assert_array_equal(medfilt(np.array([[NAN, NAN, NAN]]), (1, 3)), [[0, NAN, 0]])
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(4)
    arr = rng.normal(size=(23, 31))
    np.testing.assert_array_equal(medfilt(arr, (5, 3)), scipy_signal.medfilt(arr, (5, 3)))
    # With NaN: the NaN-median of each zero-padded window, kernel[0] along rows.
    arr[rng.random(arr.shape) < 0.3] = NAN
    arr[:6, :6] = NAN
    padded = np.pad(arr, ((3, 3), (1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, (7, 3)),
                            axis=(-2, -1))
    np.testing.assert_array_equal(medfilt(arr, (7, 3)), want)


def test_floor_ratio_and_percentile_by_hand():
    minarr = np.array([0.3, 2.0, 4.0, NAN])
    norm, ratio = normalise(minarr, np.array([0.1, 2.0, 0.5, 1.0]), 0.5)
    np.testing.assert_array_equal(norm, [0.5, 2.0, 0.5, 1.0])
    np.testing.assert_array_equal(ratio, [0.6, 1.0, 8.0, NAN])
    assert central_percentile(np.array([1.0, 2.0, 3.0, 4.0, NAN]), 50) == 2.5
    assert np.isnan(central_percentile(np.array([NAN, NAN]), 50))
    mask = outlier_mask(np.array([1.0, 3.0, NAN]), 2.5, minarr=np.array([1.0, 1.0, NAN]))
    np.testing.assert_array_equal(mask, [False, True, True])


def test_percentile_ignores_the_4_pixel_border():
    rng = np.random.default_rng(1)
    scis = [rng.normal(size=(40, 40)).astype(np.float32) for _ in range(2)]
    dqs = [np.zeros((40, 40), np.uint32)] * 2
    for s in scis:
        s[:3, :] += 1e6 * rng.random((3, 40)).astype(np.float32)  # wild detector edge
    wild = difference_reference(scis, dqs, diffaxis=1, kernel=(7, 7), threshold_percent=99)
    c = (slice(4, 36), slice(4, 36))
    assert wild.pct == np.percentile(wild.minnorm[c], 99)
    assert wild.pct < np.percentile(wild.minnorm, 99)  # the edge would have raised it
    np.testing.assert_array_equal(wild.outliers, wild.minnorm > wild.pct)
    assert np.count_nonzero(wild.outliers[:3]) > 0  # the border is still flagged


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 1001])
def test_in_place_selection_equals_numpy(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=n) * 10.0 ** rng.integers(-3, 3, n)
    if n > 2:
        values[1] = np.inf
    with_nan = np.concatenate([values, [NAN] * 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_median = np.nanmedian(with_nan)
        want_pct = [np.nanpercentile(with_nan, q) if n else NAN for q in (0, 37.3, 99.8, 100)]
    np.testing.assert_array_equal(median_in_place(values.copy()), want_median)
    np.testing.assert_array_equal([percentile_in_place(values.copy(), q)
                                   for q in (0, 37.3, 99.8, 100)], want_pct)


@pytest.mark.parametrize("kernel_size", ["7", "a b", "0 3", "-1 7", "7 7 7", "7.5 7", ""])
def test_parse_kernel_size_refuses(kernel_size):
    with pytest.raises(ValueError, match="two positive integers"):
        parse_kernel_size(kernel_size)


def test_parse_kernel_size_bumps_even():
    assert parse_kernel_size("6 6") == ((6, 6), (7, 7))
    assert parse_kernel_size("7 4") == ((7, 4), (7, 5))
    assert parse_kernel_size((3, 5)) == ((3, 5), (3, 5))


@pytest.mark.parametrize("diffaxis", [0, 1])
def test_kernel_equals_literal_transcription(diffaxis):
    rng = np.random.default_rng(diffaxis)
    scis = [rng.normal(10, 2, size=(37, 29)).astype(np.float32) for _ in range(3)]
    dqs = [(rng.random((37, 29)) < 0.05).astype(np.uint32) * rng.choice([1, 4, 513], (37, 29))
           for _ in range(3)]
    scis[1][5:8, :] = np.nan  # a NaN band (gap) in one exposure
    minarr, normarr, minnorm, pct, mask = _transcribed(scis, dqs, diffaxis, (5, 7), 98.0,
                                                       second_check=True)
    res = difference_reference(scis, dqs, diffaxis=diffaxis, kernel=(5, 7),
                               threshold_percent=98.0, second_check=True)
    np.testing.assert_array_equal(res.minarr, minarr)
    np.testing.assert_array_equal(res.normarr, normarr)
    np.testing.assert_array_equal(res.minnorm, minnorm)
    assert res.pct == pct
    np.testing.assert_array_equal(res.outliers | res.nan_mask, mask)


def test_reference_arange_scenario_20_outliers_per_image():
    """jwst test_ifu: two identical MIRI 100x100 arange frames -> exactly 20 outliers each."""
    sci = np.arange(10000, dtype=np.float32).reshape(100, 100)
    dq = np.zeros(sci.shape, np.uint32)
    *_, mask = _transcribed([sci, sci], [dq, dq], 1, (7, 7), 99.8)
    assert np.count_nonzero(mask) == 20
    exps = [daskod.Exposure(sci=sci.copy(), err=np.ones_like(sci), dq=dq.copy(),
                            instrument="MIRI", detector="MIRIFUSHORT", name=f"e{k}")
            for k in range(2)]
    for second in (False, True):
        result = daskod.detect_outliers(exps, mode="ifu", ifu_second_check=second,
                                        scheduler="synchronous", tile_size=32)
        assert result.n_flagged == [20, 20]  # the second check adds 0, as the reference
        for d in result.dq:
            np.testing.assert_array_equal((d & 17) == 17, mask)
        new = result.updated_exposures()
        assert all(np.count_nonzero(np.isnan(e.sci)) == 20 for e in new)
        assert all(np.count_nonzero(np.isnan(e.err)) == 20 for e in new)


@pytest.mark.parametrize("q", [99.8, 99.0])
def test_noise_only_flags_the_threshold_fraction(q):
    rng = np.random.default_rng(7)
    shape = (200, 200)
    exps = [daskod.Exposure(sci=rng.normal(100, 5, shape).astype(np.float32),
                            err=np.full(shape, 5, np.float32), dq=np.zeros(shape, np.uint32),
                            instrument="NIRSPEC", detector="NRS1") for _ in range(3)]
    result = daskod.detect_outliers(exps, mode="ifu", threshold_percent=q, tile_size=64)
    central = (slice(4, 196), slice(4, 196))
    n_central = 192 * 192
    flagged = [(d & 17) == 17 for d in result.dq]
    count = np.count_nonzero(flagged[0][central])
    assert abs(count - n_central * (100 - q) / 100) <= 1
    for f in flagged[1:]:
        np.testing.assert_array_equal(f, flagged[0])


def _engine_case(diffaxis, seed=3, shape=(41, 35), n=3):
    rng = np.random.default_rng(seed)
    scis, dqs = [], []
    for _ in range(n):
        sci = rng.normal(50, 3, shape).astype(np.float32)
        sci[:, 20:22] = np.nan if diffaxis == 1 else sci[:, 20:22]  # slice gap
        sci[30, 10] += 400  # persistent hot pixel
        dq = np.zeros(shape, np.uint32)
        dq[rng.random(shape) < 0.02] = 1
        dq[rng.random(shape) < 0.02] |= 4
        scis.append(sci)
        dqs.append(dq)
    return scis, dqs


@pytest.mark.parametrize("diffaxis", [0, 1])
@pytest.mark.parametrize(("tile", "scheduler"), [(3, "synchronous"), (16, "threads"),
                                                 (37, "threads"), (1000, "synchronous")])
def test_tiled_engine_equals_whole_frame(diffaxis, tile, scheduler):
    scis, dqs = _engine_case(diffaxis)
    ref = difference_reference(scis, dqs, diffaxis=diffaxis, kernel=(7, 5),
                               threshold_percent=99.0, second_check=True)
    exps = [daskod.Exposure(sci=s, err=np.ones_like(s), dq=d, detector="NRS1",
                            instrument="NIRSPEC") for s, d in zip(scis, dqs, strict=True)]
    result = daskod.detect_outliers(exps, mode="ifu", diffaxis=diffaxis, kernel_size="7 5",
                                    threshold_percent=99.0, ifu_second_check=True,
                                    tile_size=tile, scheduler=scheduler)
    info = result.ifu["nrs1"]
    np.testing.assert_array_equal(info["minarr"], ref.minarr)
    np.testing.assert_array_equal(info["minnorm"], ref.minnorm)
    assert info["pct"] == ref.pct and info["nfloor"] == ref.nfloor
    for sci, dq, new in zip(scis, dqs, result.dq, strict=True):
        outlier = ref.outliers | ref.nan_mask
        np.testing.assert_array_equal((new & 16) != 0, outlier | ((dq & 16) != 0))
        np.testing.assert_array_equal(new & ~np.uint32(17), dq & ~np.uint32(17))
        # DO_NOT_USE exactly where it was, an outlier, or SCI is NaN.
        np.testing.assert_array_equal((new & 1) != 0, ((dq & 1) != 0) | outlier | np.isnan(sci))
    assert bool(ref.outliers[30, 10])
