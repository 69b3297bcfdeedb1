"""Imaging options beyond the reference (issue 16): each changes what it should on a scene
with known truth, the defaults are untouched, every scheduler and tile size gives the same
flags with the options on, and the lazy contract holds with them."""

from __future__ import annotations

import hashlib

import dask
import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod.flag._dq import OUTLIER
from daskod.flag._kernels import local_error, median_3x3, with_source_noise
from daskod.median._kernels import minmed_stack
from daskod.modes._improved import PRESETS, ImprovedOptions, resolve_options

SIGMA = 0.02
CR = (12, 12)


def _new(result, k):
    return (np.asarray(result.dq[k]) & OUTLIER) != 0


def _flat_scene(n, *, cr_value, cr_err=None):
    """Identical noise-free flat exposures (the median equals every exposure exactly: residuals
    are the cosmic ray alone) with a read-noise variance below ERR, and one hit at ``CR`` in
    exposure 0 whose ERR the ramp fit inflated to ``cr_err``."""
    out = []
    # No source: the reference's output frame sits half a pixel from these detectors, so a
    # one-pixel source is spread over 2x2 in the median and flagged in every exposure.
    for k, exp in enumerate(datasets.make_simple_exposures(n, shape=(24, 24), sigma=0.0,
                                                           source_value=0.0)):
        err = np.full(exp.shape, SIGMA, dtype=np.float32)
        sci = np.array(exp.sci, dtype=np.float32)
        if k == 0:
            sci[CR] += cr_value
            if cr_err is not None:
                err[CR] = cr_err
        out.append(exp.copy_with(sci=sci, err=err,
                                 var_rnoise=np.full(exp.shape, (0.5 * SIGMA) ** 2, np.float32)))
    return out


# -- each option changes what it should ---------------------------------------------------

@pytest.mark.parametrize("noise_model", ["median", "local"])
def test_a_hit_that_inflated_its_own_err_is_found_by_the_noise_models(noise_model):
    """8 sigma above the sky, with its own ERR inflated 3x (as a ramp fit that missed the
    jump reports it): the reference's threshold (5 x own ERR = 15 sigma) misses it, the
    median error and the local error (both sigma there) find it, and nothing else."""
    exps = _flat_scene(3, cr_value=8 * SIGMA, cr_err=3 * SIGMA)
    default = daskod.detect_outliers(exps, scheduler="synchronous")
    assert not _new(default, 0)[CR] and sum(default.n_flagged) == 0
    better = daskod.detect_outliers(exps, scheduler="synchronous", noise_model=noise_model)
    flags = _new(better, 0)
    assert flags[CR] and flags.sum() == 1
    assert better.n_flagged == [1, 0, 0]


def test_the_median_error_model_judges_noisy_pixels_by_the_median_error():
    """A pixel whose own read noise is 10x (its ERR says so) deviating by 8 sigma: the
    reference and the local model (floored by the read noise) keep it, the median error
    (which does not know that pixel's noise) flags it."""
    exps = _flat_scene(3, cr_value=8 * SIGMA)
    var = np.array(exps[0].var_rnoise)
    err = np.array(exps[0].err)
    var[CR], err[CR] = (10 * SIGMA) ** 2, 10 * SIGMA
    exps[0] = exps[0].copy_with(var_rnoise=var, err=err)
    for noise_model, flagged in (("exposure", False), ("local", False), ("median", True)):
        result = daskod.detect_outliers(exps, scheduler="synchronous", noise_model=noise_model)
        assert _new(result, 0)[CR] == flagged, noise_model


def test_source_noise_spares_undersampled_star_cores():
    """A scene without cosmic rays (every flag is false) with PSF sigma 0.8 px: the reference
    flags star cores (jwst#9989), ``source_noise=0.06`` none, and nothing else either."""
    sim = datasets.make_dithered_imaging(n_exposures=5, shape=(160, 160), seed=1, n_stars=60,
                                         cosmic_rays=False)
    kinds = [sim.pixel_kinds(k) for k in range(5)]
    core = datasets.PIXEL_KINDS.index("star_core")
    default = daskod.detect_outliers(sim.exposures, scheduler="synchronous")
    assert sum(int((_new(default, k) & (kinds[k] == core)).sum()) for k in range(5)) >= 3
    spared = daskod.detect_outliers(sim.exposures, scheduler="synchronous", source_noise=0.06)
    assert sum(spared.n_flagged) == 0


def test_source_noise_keeps_hits_on_blank_sky():
    """The term grows with the blotted signal only: a hit on blank sky is judged as before."""
    exps = _flat_scene(3, cr_value=8 * SIGMA)
    for kwargs in ({}, {"source_noise": 0.5}):
        result = daskod.detect_outliers(exps, scheduler="synchronous", **kwargs)
        assert _new(result, 0)[CR] and sum(result.n_flagged) == 1


@pytest.mark.parametrize("amplitude", [40, 100])
def test_minmed_takes_a_hit_out_of_a_two_exposure_median(amplitude):
    """Two exposures: the median is their mean, so a hit pulls it by half. The reference's
    frame sits half a pixel off these detectors: the hit lands in 4 output pixels, a quarter
    each, and their mean carries an eighth of it. With ``combine="minmed"`` the clean
    exposure's value replaces the median there (the pull removed, nothing else changed);
    the hit is found and nothing is flagged in the other exposure, as with the median."""
    exps = _flat_scene(2, cr_value=amplitude * SIGMA)
    default = daskod.detect_outliers(exps, scheduler="synchronous")
    minmed = daskod.detect_outliers(exps, scheduler="synchronous", combine="minmed")
    for result in (default, minmed):
        assert _new(result, 0)[CR] and result.n_flagged == [1, 0]
    lowered = np.nan_to_num(np.asarray(default.median) - np.asarray(minmed.median))
    assert np.count_nonzero(lowered) == 4
    np.testing.assert_allclose(lowered[lowered != 0], amplitude * SIGMA / 8, rtol=1e-5)


def test_minmed_keeps_the_median_where_many_groups_cover():
    """With 4 groups the median is robust: minmed changes nothing."""
    exps = _flat_scene(4, cr_value=40 * SIGMA)
    default = daskod.detect_outliers(exps, scheduler="synchronous")
    minmed = daskod.detect_outliers(exps, scheduler="synchronous", combine="minmed")
    np.testing.assert_array_equal(np.asarray(default.median), np.asarray(minmed.median))
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(default.dq[k]), np.asarray(minmed.dq[k]))


# -- kernels --------------------------------------------------------------------------------

def test_minmed_stack_rule():
    data = np.full((3, 1, 4), np.nan, dtype=np.float32)
    err = np.ones_like(data)
    data[:2, 0, 0] = [0.0, 10.0]          # 2 groups, minimum 5 below the mean: taken
    data[:2, 0, 1] = [0.0, 3.0]           # 1.5 below, noise 3/sqrt(2) = 2.1: median kept
    data[:, 0, 2] = [0.0, 1.0, 20.0]      # 3 groups, median 1, minimum 1 below: kept
    data[0, 0, 3] = 4.0                   # 1 group: itself
    combined, median_err = minmed_stack(data, err)
    np.testing.assert_array_equal(combined[0], [0.0, 1.5, 1.0, 4.0])
    np.testing.assert_array_equal(median_err[0], [1.0, 1.0, 1.0, 1.0])


def test_local_error_is_a_nan_median_floored_by_read_noise():
    err = np.full((5, 5), 2.0, dtype=np.float32)
    err[2, 2] = 50.0                       # one inflated pixel: its neighbours outvote it
    err[0, 0] = np.nan                     # NaN is left out, not counted as 0
    out = local_error(err)
    np.testing.assert_array_equal(out, np.full((5, 5), 2.0, dtype=np.float32))
    var = np.full((5, 5), 9.0, dtype=np.float32)
    np.testing.assert_array_equal(local_error(err, var), np.full((5, 5), 3.0, np.float32))


def test_median_3x3_equals_a_sorted_median():
    rng = np.random.default_rng(3)
    for shape, rows in (((7, 9), 2), ((40, 33), 64), ((5, 5), 1)):
        for values in (rng.random(shape), rng.integers(0, 4, shape)):
            values = values.astype(np.float32)
            padded = np.pad(values, 1, mode="edge")
            windows = np.stack([padded[dy:dy + shape[0], dx:dx + shape[1]]
                                for dy in range(3) for dx in range(3)])
            expected = np.sort(windows, axis=0)[4]
            np.testing.assert_array_equal(median_3x3(values, rows=rows), expected)


def test_local_error_keeps_own_err_where_most_neighbours_are_nan():
    err = np.full((5, 5), np.nan, dtype=np.float32)
    err[2, 2], err[2, 3], err[3, 3] = 4.0, 1.0, 1.0
    out = local_error(err)
    assert out[2, 2] == 4.0  # 6 of its 9 neighbours are NaN: its own ERR
    assert np.isnan(out[0, 0])


def test_the_noise_models_keep_the_reference_median():
    """``noise_model="median"`` drizzles ERR beside the data: the median frame is the
    reference's, bit for bit (the drizzled data and weights are the same)."""
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    default = daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=48)
    for kwargs in ({"noise_model": "median"}, {"noise_model": "local"}):
        other = daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=48,
                                       **kwargs)
        np.testing.assert_array_equal(np.asarray(default.median), np.asarray(other.median))


def test_source_noise_adds_in_quadrature():
    out = with_source_noise(np.array([3.0, np.nan]), np.array([40.0, 10.0]), 0.1)
    np.testing.assert_allclose(out, [5.0, 1.0])


# -- options, presets, validation ----------------------------------------------------------

def test_presets_and_explicit_arguments():
    assert resolve_options(None) == ImprovedOptions() == resolve_options("parity")
    assert resolve_options("improved") == ImprovedOptions(**PRESETS["improved"])
    mixed = resolve_options("improved", combine="median", source_noise=0.0)
    assert mixed == ImprovedOptions(noise_model="local")
    assert resolve_options(None, noise_model="median").extra_planes == ("error",)
    assert resolve_options("improved").extra_planes == ("variance",)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"preset": "best"}, "preset must be one of"),
    ({"noise_model": "own"}, "noise_model must be one of"),
    ({"combine": "mean"}, "combine must be one of"),
    ({"source_noise": -0.1}, "source_noise must be a number in [0, 1]"),
    ({"source_noise": float("nan")}, "source_noise must be"),
])
def test_bad_option_values_are_refused_by_name(kwargs, words):
    exps = _flat_scene(2, cr_value=0.0)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        daskod.detect_outliers(exps, **kwargs)


def test_options_outside_resampled_imaging_are_refused():
    exps = _flat_scene(3, cr_value=0.0)
    with pytest.raises(ValueError, match="resample_data=False"):
        daskod.detect_outliers(exps, resample_data=False, preset="improved")
    cube = datasets.make_tso_cube(nints=6, shape=(8, 8), seed=1).cube
    with pytest.raises(ValueError, match="mode='tso'"):
        daskod.detect_outliers(cube, mode="tso", combine="minmed")
    daskod.detect_outliers(exps, resample_data=False, preset="parity")  # the reference: fine


# -- the defaults are untouched ------------------------------------------------------------

def _rich_scene():
    """Identity-WCS exposures with per-exposure noise, a source and several hits (its flags
    do not depend on the output-frame code, so the stored hash below stays valid)."""
    rng = np.random.default_rng(42)
    out = []
    for exp in datasets.make_simple_exposures(5, shape=(64, 64), seed=7):
        sci = np.array(exp.sci) + rng.normal(0, SIGMA, exp.shape).astype(np.float32)
        ys, xs = rng.integers(2, 62, 8), rng.integers(2, 62, 8)
        sci[ys, xs] += rng.uniform(2 * SIGMA, 50 * SIGMA, 8).astype(np.float32)
        out.append(exp.copy_with(sci=sci))
    return out


def _sha(result):
    return hashlib.sha256(np.stack([np.asarray(d, dtype=np.uint32)
                                    for d in result.dq]).tobytes()).hexdigest()


def test_default_flags_equal_the_explicit_parity_options():
    """The defaults and every option set to the reference's value give the same flags (the
    defaults themselves are the reference's: tests/test_parity.py runs jwst against them)."""
    exps = _rich_scene()
    default = daskod.detect_outliers(exps, scheduler="synchronous", tile_size=16)
    assert sum(default.n_flagged) > 10
    parity = daskod.detect_outliers(exps, scheduler="synchronous", tile_size=32,
                                    preset="parity", noise_model="exposure", source_noise=0.0,
                                    combine="median")
    assert _sha(parity) == _sha(default)
    assert "noise_model" not in default.params and "noise_model" not in parity.params


def test_the_default_graph_has_no_option_task():
    import daskod.modes._imaging_options as options_mode

    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    called = []
    for name in ("resampled_median_with_error", "flag_resampled_with_options"):
        original = getattr(options_mode, name)
        setattr(options_mode, name, lambda *a, _o=original, _n=name, **k: (
            called.append(_n), _o(*a, **k))[1])
    try:
        daskod.detect_outliers(sim.exposures, compute=False)
        assert called == []
        daskod.detect_outliers(sim.exposures, compute=False, preset="improved")
        assert called == ["resampled_median_with_error", "flag_resampled_with_options"]
    finally:
        import importlib

        importlib.reload(options_mode)


# -- same answer everywhere ----------------------------------------------------------------

@pytest.fixture(scope="module")
def dithered():
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(160, 160), seed=6,
                                         err_from_data=True)
    return sim, daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=64,
                                       preset="improved")


@pytest.mark.parametrize("kwargs", [{"preset": "improved"},
                                    {"noise_model": "median", "source_noise": 0.06}])
@pytest.mark.parametrize(("scheduler", "tile"), [("synchronous", 48), ("threads", 96),
                                               ("threads", None), ("processes", 64)])
def test_same_flags_on_every_scheduler_and_tile(dithered, kwargs, scheduler, tile):
    sim, _ = dithered
    ref = daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=160,
                                 **kwargs)
    assert sum(ref.n_flagged) > 0
    other = daskod.detect_outliers(sim.exposures, scheduler=scheduler, tile_size=tile,
                                   **kwargs)
    # Drizzle's overlap areas round differently at other tile origins (1 ulp, as the
    # defaults: tests/test_imaging.py); the flags are identical.
    median, other_median = np.asarray(ref.median), np.asarray(other.median)
    np.testing.assert_array_equal(np.isfinite(median), np.isfinite(other_median))
    np.testing.assert_allclose(other_median, median, rtol=1e-6, atol=1e-7)
    for a, b in zip(ref.dq, other.dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_same_flags_on_a_distributed_cluster(dithered, tmp_path):
    distributed = pytest.importorskip("distributed")
    sim, _ = dithered
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        for kwargs in ({"preset": "improved"},
                       {"noise_model": "median", "combine": "minmed", "source_noise": 0.06}):
            ref = daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=64,
                                         **kwargs)
            run = daskod.detect_outliers(sim.exposures, scheduler=client, tile_size=64,
                                         store=str(tmp_path / str(len(kwargs))), **kwargs)
            for a, b in zip(ref.dq, run.dq, strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_options_change_the_answer(dithered):
    sim, improved = dithered
    default = daskod.detect_outliers(sim.exposures, scheduler="synchronous", tile_size=64)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(default.dq, improved.dq, strict=True))


# -- the lazy contract -----------------------------------------------------------------------

@pytest.mark.parametrize("order", ["median-first", "dq-one-by-one", "together"])
def test_lazy_results_equal_the_eager_run(dithered, order):
    sim, eager = dithered
    lazy = daskod.detect_outliers(sim.exposures, tile_size=64, compute=False,
                                  scheduler="synchronous", preset="improved")
    if order == "median-first":
        median = np.asarray(lazy.median)
        dq = [np.asarray(d) for d in lazy.dq]
    elif order == "dq-one-by-one":
        dq = [np.asarray(d) for d in lazy.dq]
        median = np.asarray(lazy.median)
    else:
        *dq, median = dask.compute(*lazy.dq, lazy.median, scheduler="synchronous")
    np.testing.assert_array_equal(np.asarray(eager.median), median)
    for a, b in zip(eager.dq, dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_a_store_is_resumed_with_the_options(dithered, tmp_path):
    """A named store: the second run with the same options reuses every phase; switching
    only the flag options reuses the drizzle and the median."""
    sim, eager = dithered
    store = str(tmp_path / "work")
    first = daskod.detect_outliers(sim.exposures, tile_size=64, store=store,
                                   scheduler="synchronous", preset="improved")
    again = daskod.detect_outliers(sim.exposures, tile_size=64, store=store,
                                   scheduler="synchronous", preset="improved")
    for a, b, c in zip(eager.dq, first.dq, again.dq, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert {"resampled", "thresholds", "median"} <= set(again.checkpoints)
    other = daskod.detect_outliers(sim.exposures, tile_size=64, store=store,
                                   scheduler="synchronous", preset="improved",
                                   noise_model="exposure")
    assert {"resampled", "median"} <= set(other.checkpoints)


# -- command line ----------------------------------------------------------------------------

def test_cli_options_reach_detect_outliers(tmp_path):
    """``daskod run --preset improved --source-noise 0.1`` writes the flags that
    ``detect_outliers(..., preset="improved", source_noise=0.1)`` gives."""
    import os
    import subprocess
    import sys

    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    files = datasets.write_cal_files(sim.exposures, tmp_path / "in")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "daskod.cli", "run", files["asn"], "-o",
                           str(out), "--no-progress", "--scheduler", "synchronous",
                           "--preset", "improved", "--source-noise", "0.1"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    api = daskod.detect_outliers(sim.exposures, scheduler="synchronous", preset="improved",
                                 source_noise=0.1)
    for k, src in enumerate(files["files"]):
        with dm.open(str(out / os.path.basename(src).replace("_cal", "_crf"))) as product:
            np.testing.assert_array_equal(np.asarray(product.dq) & OUTLIER,
                                          np.asarray(api.dq[k]) & OUTLIER)
    bad = subprocess.run([sys.executable, "-m", "daskod.cli", "run", files["asn"], "-o",
                          str(tmp_path / "bad"), "--combine", "mean"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert bad.returncode != 0 and "--combine" in bad.stderr
