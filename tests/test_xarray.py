"""Labelled xarray views of results: the values are the result's, the median carries RA/Dec
from its WCS, lazy results stay lazy (nothing computed while building), odd cases work."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

import daskod
from daskod import datasets
from daskod._xarray import result_to_dataset, result_to_datatree
from daskod.flag._dq import OUTLIER

xr = pytest.importorskip("xarray")


class CountComputes(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _start(self, dsk):
        self.count += 1


@pytest.fixture(scope="module")
def sim():
    return datasets.make_dithered_imaging(n_exposures=4, shape=(96, 80), seed=4)


@pytest.fixture(scope="module")
def result(sim):
    return daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous")


def test_dataset_holds_the_result(sim, result):
    ds = result_to_dataset(result)
    assert ds.sci.dims == ("exposure", "y", "x") and ds.sci.shape == (4, 96, 80)
    assert ds.median_frame.dims == ("median_y", "median_x")
    assert list(ds.exposure.values) == [e.name for e in result.exposures]
    assert list(ds.group_id.values) == [e.group_id for e in result.exposures]
    for k, exp in enumerate(sim.exposures):
        np.testing.assert_array_equal(ds.sci[k].values, exp.sci)
        np.testing.assert_array_equal(ds.dq[k].values, result.dq[k])
        new = ((result.dq[k] & OUTLIER) != 0) & ((exp.dq & OUTLIER) == 0)
        np.testing.assert_array_equal(ds.outlier[k].values, new)
        assert int(ds.n_flagged[k]) == result.n_flagged[k] == int(new.sum())
    np.testing.assert_array_equal(ds.median_frame.values, result.median)
    assert ds.attrs["status"] == "COMPLETE" and ds.attrs["snr"] == "5.0 4.0"
    assert isinstance(ds.sci.data, np.ndarray)  # numpy in, numpy out


def test_median_world_coordinates_come_from_its_wcs(result):
    ds = result_to_dataset(result)
    assert ds.ra.dims == ("median_y", "median_x") and ds.ra.attrs["units"] == "deg"
    for y, x in [(0, 0), (17, 41), (ds.sizes["median_y"] - 1, ds.sizes["median_x"] - 1)]:
        ra, dec = result.median_wcs(float(x), float(y))
        assert float(ds.ra[y, x]) == pytest.approx(ra, abs=1e-12)
        assert float(ds.dec[y, x]) == pytest.approx(dec, abs=1e-12)
    # Selecting by world position finds the median pixel the WCS maps it to.
    ra0, dec0 = result.median_wcs(30.0, 20.0)
    dist = (ds.ra - ra0) ** 2 + (ds.dec - dec0) ** 2
    iy, ix = np.unravel_index(int(np.argmin(dist.values)), dist.shape)
    assert (iy, ix) == (20, 30)


def test_lazy_result_builds_without_computing_and_matches(sim, result):
    lazy = daskod.detect_outliers(sim.exposures, tile_size=32, compute=False,
                                  scheduler="synchronous")
    with CountComputes() as counter:
        ds = result_to_dataset(lazy)
        tree = result_to_datatree(lazy)
    assert counter.count == 0
    for name in ("dq", "outlier", "median_frame", "ra", "dec"):
        assert isinstance(ds[name].data, da.Array), name
    assert "n_flagged" not in ds  # not known before computing
    eager = result_to_dataset(result)
    computed = ds[["dq", "outlier", "ra", "dec"]].compute()
    for name in ("dq", "outlier", "ra", "dec"):
        np.testing.assert_array_equal(computed[name].values, eager[name].values)
    assert set(tree.children) == {"exposures", "median"}


def test_lazy_median_alone_is_the_median(sim, result):
    lazy = daskod.detect_outliers(sim.exposures, tile_size=32, compute=False,
                                  scheduler="synchronous")
    median = result_to_dataset(lazy).median_frame.compute(scheduler="synchronous")
    np.testing.assert_array_equal(median.values, result.median)


def test_inputs_in_zarr_stay_lazy(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(64, 64), seed=1,
                                         store=str(tmp_path / "sim.zarr"))
    result = daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous")
    ds = result_to_dataset(result)
    assert isinstance(ds.sci.data, da.Array)
    np.testing.assert_array_equal(ds.sci[2].values, np.asarray(sim.exposures[2].sci))
    out = tmp_path / "view.zarr"
    ds.drop_vars(["ra", "dec"]).to_zarr(out, consolidated=False)
    back = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(back.outlier.values, ds.outlier.values)


def test_detectors_of_several_shapes(sim):
    small = datasets.make_dithered_imaging(n_exposures=2, shape=(64, 64), seed=2)
    exposures = [sim.exposures[0], sim.exposures[1], small.exposures[0]]
    # Two simulations' scenes disagree: the run rightly warns of its many flags.
    with pytest.warns(daskod.ImplausibleFlagsWarning):
        result = daskod.detect_outliers(exposures, tile_size=32, scheduler="synchronous")
    ds = result_to_dataset(result)
    assert ds.sci_2.dims == ("y_2", "x_2") and ds.sci_2.shape == (64, 64)
    assert ds.dq_0.shape == (96, 80)
    tree = result_to_datatree(result)
    names = [e.name for e in result.exposures]
    assert set(tree["exposures"].children) == set(names)
    np.testing.assert_array_equal(tree[f"exposures/{names[2]}"].dataset.dq.values,
                                  result.dq[2])


def test_cube_result():
    sim = datasets.make_tso_cube(nints=30, shape=(16, 32), seed=0)
    result = daskod.detect_outliers(sim.cube, rolling_window_width=5,
                                    save_intermediate_results=True, scheduler="synchronous")
    ds = result_to_dataset(result)
    assert ds.dq.dims == ("integration", "y", "x") and ds.dq.shape == (30, 16, 32)
    assert int(ds.outlier.sum()) == result.n_flagged[0]


def test_a_kept_store_opens_with_xarray_without_warnings(sim, tmp_path):
    import warnings

    import xarray as xr

    result = daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous",
                                    store=str(tmp_path / "kept"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(str(tmp_path / "kept"))
    assert {"median", "resampled", "thresholds"} <= set(ds.data_vars)
    np.testing.assert_array_equal(ds["median"].values, result.median)
    assert ds["resampled"].dims == ("group", "plane", "y", "x")
