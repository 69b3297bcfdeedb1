"""IFU mode through daskod.detect_outliers: the simulator, grouping, skips, bad input, laziness."""

from __future__ import annotations

import os

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod._exceptions import DaskodWarning, InputError, SkippedWarning, WCSError
from daskod.ifu._difference_kernels import difference_reference


@pytest.fixture(scope="module")
def miri_sim():
    return datasets.make_ifu_exposures(3, shape=(96, 96), instrument="MIRI", seed=2)


def _flat_exposures(n=2, shape=(40, 36), *, detector="NRS1", instrument="NIRSPEC", seed=0):
    rng = np.random.default_rng(seed)
    return [daskod.Exposure(sci=rng.normal(10, 1, shape).astype(np.float32),
                            err=np.ones(shape, np.float32), dq=np.zeros(shape, np.uint32),
                            detector=detector, instrument=instrument, name=f"{detector}_{k}")
            for k in range(n)]


@pytest.mark.parametrize("instrument", ["MIRI", "NIRSPEC"])
def test_simulator_bad_pixels_found_same_pixels_in_every_exposure(instrument):
    sim = datasets.make_ifu_exposures(3, shape=(96, 96), instrument=instrument, seed=4)
    result = daskod.detect_outliers(sim.exposures, tile_size=40)
    assert result.params["mode"] == "ifu"  # guessed from exp_type / the 3-axis WCS
    assert result.params["diffaxis"] == sim.diffaxis
    flagged = [(np.asarray(d) & 17) == 17 for d in result.dq]
    assert np.all(flagged[0][sim.bad_pixels])  # the persistently bad pixels
    for f in flagged[1:]:
        np.testing.assert_array_equal(f, flagged[0])
    assert result.status == "COMPLETE" and result.median is None
    det = sim.exposures[0].detector.lower()
    assert result.ifu[det]["exposures"] == [e.name for e in sim.exposures]


def test_detectors_run_independently():
    short = _flat_exposures(2, detector="MIRIFUSHORT", instrument="MIRI", seed=1)
    long_ = _flat_exposures(3, shape=(30, 44), detector="MIRIFULONG", instrument="MIRI", seed=2)
    mixed = [long_[0], short[0], long_[1], short[1], long_[2]]
    together = daskod.detect_outliers(mixed, mode="ifu", scheduler="synchronous")
    assert sorted(together.ifu) == ["mirifulong", "mirifushort"]
    alone_s = daskod.detect_outliers(short, mode="ifu", scheduler="synchronous")
    alone_l = daskod.detect_outliers(long_, mode="ifu", scheduler="synchronous")
    expected = [alone_l.dq[0], alone_s.dq[0], alone_l.dq[1], alone_s.dq[1], alone_l.dq[2]]
    for got, want in zip(together.dq, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    ref = difference_reference([e.sci for e in long_], [e.dq for e in long_], diffaxis=1,
                               kernel=(7, 7), threshold_percent=99.8)
    np.testing.assert_array_equal((together.dq[0] & 16) != 0, ref.outliers)


def test_even_kernel_size_behaves_as_odd_with_a_warning():
    exps = _flat_exposures(2, seed=3)
    odd = daskod.detect_outliers(exps, mode="ifu", kernel_size="7 5")
    with pytest.warns(DaskodWarning, match="7 5 is used"):
        even = daskod.detect_outliers(exps, mode="ifu", kernel_size="6 4")
    for a, b in zip(odd.dq, even.dq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert even.params["kernel_used"] == "7 5"
    np.testing.assert_array_equal(odd.ifu["nrs1"]["minnorm"], even.ifu["nrs1"]["minnorm"])


def test_single_exposure_is_skipped():
    (exp,) = _flat_exposures(1)
    exp.dq[3, 3] = 4
    with pytest.warns(SkippedWarning, match="at least 2 exposures"):
        result = daskod.detect_outliers([exp], mode="ifu")
    assert result.status == "SKIPPED" and result.skipped
    np.testing.assert_array_equal(result.dq[0], exp.dq)
    assert result.dq[0] is not exp.dq


@pytest.mark.parametrize("kernel_size", ["7", "a b", "0 3", "-1 7"])
def test_bad_kernel_size_refused_before_work(kernel_size, tmp_path):
    store = tmp_path / "store"
    with pytest.raises(ValueError, match="kernel_size must be two positive integers"):
        daskod.detect_outliers(_flat_exposures(2), mode="ifu", kernel_size=kernel_size,
                               store=str(store))
    assert not store.exists()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"threshold_percent": 101}, "threshold_percent"),
    ({"diffaxis": 2}, "diffaxis"),
    ({"ifu_method": "median"}, "ifu_method"),
    ({"cube_weighting": "drizzle"}, "cube_weighting"),
    ({"cube_roi": (1.0,)}, "cube_roi"),
    ({"cube_spatial_scale": -0.1}, "cube_spatial_scale"),
])
def test_bad_ifu_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        daskod.detect_outliers(_flat_exposures(2), mode="ifu", **kwargs)


def test_mixed_instruments_refused():
    exps = _flat_exposures(2) + _flat_exposures(1, detector="MIRIFUSHORT", instrument="MIRI")
    with pytest.raises(InputError, match="one instrument"):
        daskod.detect_outliers(exps, mode="ifu")


def test_unknown_instrument_needs_diffaxis():
    exps = _flat_exposures(2, instrument=None)
    with pytest.raises(InputError, match="pass diffaxis"):
        daskod.detect_outliers(exps, mode="ifu")
    given = daskod.detect_outliers(exps, mode="ifu", diffaxis=0)
    nirspec = daskod.detect_outliers(_flat_exposures(2), mode="ifu")
    for a, b in zip(given.dq, nirspec.dq, strict=True):
        np.testing.assert_array_equal(a, b)
    miri_axis = daskod.detect_outliers(exps, mode="ifu", diffaxis=1)
    assert not all(np.array_equal(a, b) for a, b in zip(given.dq, miri_axis.dq, strict=True))


def test_different_shapes_on_one_detector_refused():
    exps = _flat_exposures(1) + _flat_exposures(1, shape=(40, 30))
    with pytest.raises(InputError, match="one detector grid"):
        daskod.detect_outliers(exps, mode="ifu")


def test_cube_method_needs_a_spectral_axis():
    exps = _flat_exposures(2)
    wcs = datasets.make_simple_wcs(shape=exps[0].shape)
    exps = [e.copy_with(wcs=wcs) for e in exps]
    with pytest.raises(WCSError, match="no spectral axis"):
        daskod.detect_outliers(exps, mode="ifu", ifu_method="cube")
    with pytest.raises(WCSError, match="no WCS"):
        daskod.detect_outliers(_flat_exposures(2), mode="ifu", ifu_method="cube")


def test_lazy_build_computes_nothing(miri_sim, raise_if_dask_computes):
    with raise_if_dask_computes():
        lazy = daskod.detect_outliers(miri_sim.exposures, compute=False, tile_size=48)
    eager = daskod.detect_outliers(miri_sim.exposures, tile_size=48)
    for a, b in zip(lazy.dq, eager.dq, strict=True):
        assert hasattr(a, "dask")
        np.testing.assert_array_equal(a.compute(), b)
    assert [int(n.compute()) for n in lazy.n_flagged] == eager.n_flagged


def test_inputs_untouched_and_nan_matching(miri_sim):
    before = [(np.array(e.sci), np.array(e.dq)) for e in miri_sim.exposures]
    result = daskod.detect_outliers(miri_sim.exposures, in_memory=False, tile_size=32)
    for (sci, dq), exp, new in zip(before, miri_sim.exposures, result.dq, strict=True):
        np.testing.assert_array_equal(exp.sci, sci)
        np.testing.assert_array_equal(exp.dq, dq)
        new = np.asarray(new)
        assert hasattr(result.dq[0], "dask")
        # DO_NOT_USE wherever SCI is NaN (the gaps) or already flagged; only bits 1|16 added.
        assert np.all((new[np.isnan(sci)] & 1) == 1)
        assert set(np.unique(new & ~dq)) <= {0, 1, 16, 17}


def test_inplace_writes_back(miri_sim):
    exps = [e.copy_with(sci=np.array(e.sci), err=np.array(e.err), dq=np.array(e.dq))
            for e in miri_sim.exposures]
    result = daskod.detect_outliers(exps, inplace=True)
    for exp, dq in zip(exps, result.dq, strict=True):
        np.testing.assert_array_equal(exp.dq, dq)
        np.testing.assert_array_equal(np.isnan(exp.sci), (dq & 1) != 0)


def test_processes_scheduler_gives_the_same_flags(miri_sim):
    threads = daskod.detect_outliers(miri_sim.exposures, tile_size=40, scheduler="threads")
    procs = daskod.detect_outliers(miri_sim.exposures, tile_size=40, scheduler="processes")
    for a, b in zip(threads.dq, procs.dq, strict=True):
        np.testing.assert_array_equal(a, b)


def test_distributed_cluster_gives_the_same_flags(miri_sim):
    distributed = pytest.importorskip("distributed")
    local = daskod.detect_outliers(miri_sim.exposures, tile_size=40, scheduler="synchronous")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = daskod.detect_outliers(miri_sim.exposures, tile_size=40, scheduler=client,
                                        memory_limit="2GiB")
    for a, b in zip(local.dq, remote.dq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert remote.n_flagged == local.n_flagged


def test_save_intermediate_results_keeps_the_reference_arrays(miri_sim, tmp_path):
    store = tmp_path / "work.zarr"
    result = daskod.detect_outliers(miri_sim.exposures, save_intermediate_results=True,
                                    store=str(store), tile_size=40)
    det = miri_sim.exposures[0].detector.lower()
    ref = difference_reference([e.sci for e in miri_sim.exposures],
                               [e.dq for e in miri_sim.exposures], diffaxis=1, kernel=(7, 7),
                               threshold_percent=99.8)
    info = result.ifu[det]
    np.testing.assert_array_equal(np.asarray(info["diffarr"]), ref.diffarr)
    np.testing.assert_array_equal(np.asarray(info["normarr"]), ref.normarr)
    assert os.path.isdir(store / "ifu_difference" / det / "minnorm")
    import zarr

    stored = zarr.open_array(str(store), path=f"ifu_difference/{det}/minnorm", mode="r")
    np.testing.assert_array_equal(stored[...], ref.minnorm)


def test_second_check_flags_nan_minimum():
    exps = _flat_exposures(2, seed=5)
    for e in exps:
        e.sci[9, 6] = e.sci[11, 6] = np.nan  # (10, 6) is valid, both neighbours along y NaN
        e.sci[20:23, 15] = np.nan  # NaN pixels: minarr NaN, but not counted as additional
    plain = daskod.detect_outliers(exps, mode="ifu")
    second = daskod.detect_outliers(exps, mode="ifu", ifu_second_check=True)
    ref = difference_reference([e.sci for e in exps], [e.dq for e in exps], diffaxis=0,
                               kernel=(7, 7), threshold_percent=99.8, second_check=True)
    assert ref.nan_mask.any()
    for p, s in zip(plain.dq, second.dq, strict=True):
        np.testing.assert_array_equal((s & 16) != 0, ref.outliers | ref.nan_mask)
        np.testing.assert_array_equal((p & 16) != 0, ref.outliers)
    # Only pixels that were still valid count as additional (as the reference counts).
    extra = ref.nan_mask & ~ref.outliers & ~np.isnan(exps[0].sci)
    assert extra[10, 6] and np.count_nonzero(extra) == 1
    assert second.n_flagged == [n + 1 for n in plain.n_flagged]


def test_ifu_keywords_are_keyword_only():
    with pytest.raises(TypeError):
        daskod.detect_outliers(_flat_exposures(2), "ifu")  # type: ignore[misc]


def test_mode_guessed_from_exp_type_without_wcs():
    exps = [e.copy_with(meta={"exp_type": "NRS_IFU"}) for e in _flat_exposures(2)]
    assert daskod.detect_outliers(exps).params["mode"] == "ifu"
    with pytest.raises(WCSError, match="no WCS"):  # no IFU hint: imaging, which needs a WCS
        daskod.detect_outliers(_flat_exposures(2))
