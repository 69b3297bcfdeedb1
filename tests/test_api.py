"""Public API: the reference's unit scenarios, skips, bad input, options."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import daskod
from daskod import datasets


@pytest.mark.parametrize("resample_data", [True, False])
def test_no_outliers_leave_data_unchanged(resample_data):
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[0].var_rnoise[10, 10] = 1e9  # a pixel with almost no ivm weight
    result = daskod.detect_outliers(exps, resample_data=resample_data, scheduler="synchronous")
    assert result.status == "COMPLETE"
    for exp, dq in zip(exps, result.dq, strict=True):
        np.testing.assert_array_equal(dq, exp.dq)
    assert sum(result.n_flagged) == 0


@pytest.mark.parametrize("resample_data", [True, False])
def test_weak_cr_flagged_source_kept(resample_data):
    """A +1 (50 sigma) CR at (12, 12) in the first exposure gets DQ 17; the source does not."""
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    result = daskod.detect_outliers(exps, resample_data=resample_data, scheduler="synchronous")
    assert result.dq[0][12, 12] == 17
    assert result.dq[0][7, 7] == 0
    assert int(np.count_nonzero(result.dq[0])) == 1
    assert not result.dq[1].any()
    assert not result.dq[2].any()
    new = result.updated_exposures()
    assert np.isnan(new[0].sci[12, 12])
    assert np.count_nonzero(np.isnan(new[0].sci)) == 1


def test_identical_images_with_spikes():
    """romancal test_identical_images: identical inputs with 1e5 spikes. Without resampling
    nothing is flagged. With resampling, jwst 3.0.0's output frame starts half a pixel off the
    detector grid (pixel 0 on the footprint edge), so the drizzled median smears each spike
    and the reference flags 18 pixels per exposure around the two spikes (measured with
    jwst 3.0.0 on these files, 2026-11-30); daskod does the same."""
    exps = datasets.make_simple_exposures(n_exposures=3)
    for e in exps:
        e.sci[3, 4] += 1e5
        e.sci[15, 2] += 1e5
    direct = daskod.detect_outliers(exps, resample_data=False, scheduler="synchronous")
    assert sum(direct.n_flagged) == 0
    result = daskod.detect_outliers(exps, scheduler="synchronous")
    assert result.n_flagged == [18, 18, 18]
    near = np.zeros(exps[0].shape, bool)
    near[2:5, 3:6] = near[14:17, 1:4] = True
    for dq in result.dq:
        flagged = (dq & 16) != 0
        assert not (flagged & ~near).any()
        np.testing.assert_array_equal(flagged, (result.dq[0] & 16) != 0)


def test_low_weight_pixel_is_nan_in_median_without_resampling():
    """jwst test_same_median_on_disk: var_rnoise 2 at (4, 9) falls below maskpt * mean."""
    exps = datasets.make_simple_exposures(n_exposures=3)
    for e in exps:
        e.var_rnoise[4, 9] = 2.0
    result = daskod.detect_outliers(exps, resample_data=False, scheduler="synchronous")
    assert np.isnan(result.median[4, 9])
    assert np.isfinite(result.median).sum() == result.median.size - 1


def test_exptime_weights_without_resampling_do_not_crash():
    """jwst#10649: resample_data=False with weight_type='exptime'."""
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    result = daskod.detect_outliers(exps, resample_data=False, weight_type="exptime",
                                    scheduler="synchronous")
    assert result.dq[0][12, 12] == 17


def test_fewer_than_two_groups_is_skipped():
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    for e in exps:
        e.group_id = "one-group"
    with pytest.warns(daskod.SkippedWarning, match="at least 2 groups"):
        result = daskod.detect_outliers(exps)
    assert result.status == "SKIPPED"
    assert result.skipped
    assert "groups" in result.reason
    for exp, dq in zip(exps, result.dq, strict=True):
        np.testing.assert_array_equal(dq, exp.dq)
    with pytest.warns(daskod.SkippedWarning):
        single = daskod.detect_outliers(exps[:1], resample_data=False)
    assert single.status == "SKIPPED"


def test_inplace_updates_inputs_only_when_asked():
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    sci0 = exps[0].sci.copy()
    daskod.detect_outliers(exps, scheduler="synchronous")
    np.testing.assert_array_equal(exps[0].sci, sci0)
    assert exps[0].dq[12, 12] == 0
    daskod.detect_outliers(exps, scheduler="synchronous", inplace=True)
    assert exps[0].dq[12, 12] == 17
    assert np.isnan(exps[0].sci[12, 12])


def test_mismatched_shapes_name_the_exposure():
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[1].err = exps[1].err[:-1]
    with pytest.raises(daskod.InputError, match=r"'test1'.*err has shape \(20, 20\)") as info:
        daskod.detect_outliers(exps)
    assert info.value.exposure == "test1"


def test_missing_wcs_names_the_exposure():
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[2].wcs = None
    with pytest.raises(daskod.WCSError, match="'test2' has no WCS"):
        daskod.detect_outliers(exps)
    # Not needed without resampling.
    daskod.detect_outliers(exps, resample_data=False, scheduler="synchronous")


def test_wcs_that_cannot_map_pixels():
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[1].wcs = object()
    with pytest.raises(daskod.WCSError, match=r"'test1'.*cannot map pixels"):
        daskod.detect_outliers(exps)


def test_degenerate_wcs_is_refused():
    exps = datasets.make_simple_exposures(n_exposures=3)
    # A zero pixel scale puts every pixel on one sky position: not invertible.
    exps[0].wcs = datasets.make_detector_wcs(ra=5.0, dec=5.0, shape=(21, 20),
                                             pixel_scale_arcsec=0.0, distortion=False)
    with pytest.raises(daskod.WCSError, match="singular"):
        daskod.detect_outliers(exps)


def test_all_nan_and_zero_weight_exposures_are_refused():
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[1].sci[:] = np.nan
    with pytest.raises(daskod.InputError, match=r"\['test1'\] have no usable pixel"):
        daskod.detect_outliers(exps, scheduler="synchronous")
    exps = datasets.make_simple_exposures(n_exposures=3)
    exps[2].var_rnoise[:] = np.inf
    with pytest.raises(daskod.InputError, match=r"\['test2'\] have no usable pixel"), \
            pytest.warns(daskod.InputWarning, match="'test2': var_rnoise"):
        daskod.detect_outliers(exps, scheduler="synchronous")


@pytest.mark.parametrize(("param", "value"), [
    ("maskpt", float("nan")), ("pixfrac", 0.0), ("pixfrac", 1.5), ("backg", float("inf")),
    ("snr", "5 nan"), ("scale", "1.2"), ("kernel", "sinc"), ("weight_type", "err"),
    ("fillval", "zero"), ("pixmap_order", 2)])
def test_bad_parameters_raise_before_work(param, value, tmp_path):
    exps = datasets.make_simple_exposures(n_exposures=3)
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=param):
        daskod.detect_outliers(exps, store=str(store), **{param: value})
    assert not store.exists()


def test_absurd_output_frame_raises_before_writing(tmp_path):
    exps = datasets.make_simple_exposures(n_exposures=2)
    exps[1].wcs = datasets.make_detector_wcs(ra=60.0, dec=-30.0, shape=(21, 20),
                                             pixel_scale_arcsec=0.0108, distortion=False)
    store = tmp_path / "work"
    with pytest.raises(daskod.OutputTooLargeError, match="GiB per float32 frame"):
        daskod.detect_outliers(exps, store=str(store))
    assert not any(store.rglob("*.json")) if store.exists() else True


def test_optional_parameters_are_keyword_only():
    sig = inspect.signature(daskod.detect_outliers)
    params = list(sig.parameters.values())
    assert params[0].name == "exposures"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    with pytest.raises(TypeError):
        daskod.detect_outliers(datasets.make_simple_exposures(), "imaging")


def test_outlier_detection_class_matches_function():
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    step = daskod.OutlierDetection(snr="5.0 4.0", scheduler="synchronous")
    assert "snr='5.0 4.0'" in repr(step)
    a = step.run(exps)
    b = daskod.detect_outliers(exps, snr="5.0 4.0", scheduler="synchronous")
    for x, y in zip(a.dq, b.dq, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(TypeError, match="Unknown parameter"):
        daskod.OutlierDetection(snr_typo=1)


def test_temporary_store_is_removed_and_lives_under_temp_dir(tmp_path):
    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    with daskod.set_options(temp_dir=str(tmp_path)):
        daskod.detect_outliers(exps, scheduler="synchronous")
        assert os.listdir(tmp_path) == []
        lazy = daskod.detect_outliers(exps, scheduler="synchronous", in_memory=False)
        assert len(os.listdir(tmp_path)) == 1
        assert lazy.dq[0].compute()[12, 12] == 17
        del lazy
        import gc

        gc.collect()
        assert os.listdir(tmp_path) == []


def test_store_kept_with_intermediates(tmp_path):
    import xarray as xr
    import zarr

    exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
    result = daskod.detect_outliers(exps, scheduler="synchronous",
                                    store=str(tmp_path / "work"), save_intermediate_results=True)
    assert result.store == str(tmp_path / "work")
    median = zarr.open_array(result.store, path="median")[:]
    np.testing.assert_array_equal(median, result.median)
    drizzled = zarr.open_array(result.store, path="resampled")
    assert drizzled.shape[:2] == (3, 2)
    ds = result.to_xarray()
    assert isinstance(ds, xr.Dataset)
    assert ds["dq"].dims == ("exposure", "y", "x")
    assert list(ds["exposure"].values) == ["test0", "test1", "test2"]
    assert int(ds["n_flagged"].sum()) == 1


class _Tripwire:
    """A lazy array that counts the pixels read from it."""

    def __init__(self, array):
        self._a = np.asarray(array)
        self.shape = self._a.shape
        self.dtype = self._a.dtype
        self.ndim = self._a.ndim
        self.read = 0

    def __getitem__(self, key):
        out = self._a[key]
        self.read += np.size(out)
        return np.array(out)

    def __array__(self, dtype=None, copy=None):
        self.read += self._a.size
        return self._a if dtype is None else self._a.astype(dtype)


@pytest.mark.parametrize("mode", ["imaging", "tso"])
def test_building_the_graph_reads_no_pixels(mode):
    if mode == "imaging":
        exps = datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)
        wires = []
        for e in exps:
            e.sci, e.dq = _Tripwire(e.sci), _Tripwire(e.dq)
            wires += [e.sci, e.dq]
        lazy = daskod.detect_outliers(exps, compute=False)
        expected = daskod.detect_outliers(datasets.make_simple_exposures(n_exposures=3,
                                                                         cr_value=1.0))
    else:
        sim = datasets.make_tso_cube(nints=30, shape=(6, 8), seed=1)
        cube = sim.cube
        cube.sci, cube.dq = _Tripwire(cube.sci), _Tripwire(cube.dq)
        wires = [cube.sci, cube.dq]
        lazy = daskod.detect_outliers(cube, compute=False, tile_size=7)
        expected = daskod.detect_outliers(
            daskod.Cube(sci=cube.sci._a, err=cube.err, dq=cube.dq._a,
                        var_rnoise=cube.var_rnoise, tso_visit=True), tile_size=7)
    # DQ planes may be peeked at for the cube-wide threshold; nothing else is read.
    assert wires[0].read == 0
    assert sum(w.read for w in wires) <= 6 * 8
    np.testing.assert_array_equal(np.asarray(lazy.dq[0]), expected.dq[0])


def test_estimate_memory_predicts_within_the_limit_and_refuses_impossible_budgets():
    sim = datasets.make_dithered_imaging(n_exposures=6, shape=(256, 256), seed=2)
    est = daskod.estimate_memory(sim.exposures, memory_limit="1GiB", scheduler="threads")
    assert est["predicted_peak"] <= est["memory_limit"] == 2**30
    assert est["tile"] >= 64
    # A budget a little above what this process already holds (the baseline varies with
    # what ran before in the same process).
    from daskod.engine._budget import process_rss

    tight = process_rss() + 160 * 2**20
    small = daskod.estimate_memory(sim.exposures, memory_limit=tight, scheduler="threads")
    assert small["tile"] <= est["tile"]
    with pytest.raises(daskod.MemoryBudgetError, match="give at least"):
        daskod.estimate_memory(sim.exposures, memory_limit="50MiB")
    cube = datasets.make_tso_cube(nints=20, shape=(8, 8), seed=1).cube
    est = daskod.estimate_memory(cube, memory_limit="1GiB")
    assert est["predicted_peak"] <= est["memory_limit"]
