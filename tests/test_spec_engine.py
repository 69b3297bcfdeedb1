"""Spec mode on the Dask engine (``detect_outliers(mode="spec")``) against the whole-frame
numpy oracle (:func:`daskod.spec.detect_spec_outliers_dense`, itself identical to jwst 3.0 on
the parity scenes): every scheduler and tile size gives its flags, medians and median
errors bit for bit; the lazy contract; skipped sources; resumed stores; bad input."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from dask.callbacks import Callback

import daskod
from daskod import datasets
from daskod._exceptions import InputError, SkippedWarning, WCSError
from daskod.spec import detect_spec_outliers_dense

SCENES = {
    "mos": lambda: datasets.make_nirspec_slits("mos", n_detectors=2, n_slits=3, n_columns=96,
                                               seed=2),
    "fixed_slit": lambda: datasets.make_nirspec_slits("fixed_slit", n_columns=96, seed=1),
    "lrs": lambda: datasets.make_lrs_exposures(3, shape=(120, 60), seed=3),
}


def _sources(exposures):
    out: dict[str, list[int]] = {}
    for k, e in enumerate(exposures):
        key = e.meta.get("source_name") or e.meta.get("source_id")
        out.setdefault("all" if key is None else str(key), []).append(k)
    return out


@pytest.fixture(scope="module")
def oracle():
    """Per scene and resample_data: the simulation and the oracle's answer per source."""
    cache = {}

    def get(name, resample):
        if (name, resample) not in cache:
            sim = cache.setdefault(name, SCENES[name]())
            answers = {key: (idx, detect_spec_outliers_dense(
                [sim.exposures[k] for k in idx], resample_data=resample))
                for key, idx in _sources(sim.exposures).items()}
            cache[(name, resample)] = (sim, answers)
        return cache[(name, resample)]

    return get


def _assert_equal(result, answers):
    assert result.status == "COMPLETE"
    assert list(result.spec) == list(answers)
    total = 0
    for key, (idx, dense) in answers.items():
        info = result.spec[key]
        assert info["indices"] == idx and info["status"] == "COMPLETE"
        np.testing.assert_array_equal(np.asarray(info["median"]), dense.median)
        np.testing.assert_array_equal(np.asarray(info["median_err"]), dense.median_err)
        for k, dq, n in zip(idx, dense.dq, dense.n_flagged, strict=True):
            np.testing.assert_array_equal(np.asarray(result.dq[k]), dq)
            assert result.n_flagged[k] == n
            total += n
    assert total > 0


@pytest.mark.parametrize(("scene", "resample", "tile", "scheduler"), [
    ("mos", True, 24, "synchronous"),
    ("mos", True, 40, "threads"),
    ("mos", False, 16, "threads"),
    ("fixed_slit", True, 64, "threads"),
    ("fixed_slit", False, 24, "synchronous"),
    ("lrs", True, 32, "threads"),
    ("lrs", False, 48, "synchronous"),
    ("lrs", True, None, "threads"),
])
def test_engine_equals_the_whole_frame_oracle(oracle, scene, resample, tile, scheduler):
    sim, answers = oracle(scene, resample)
    result = daskod.detect_outliers(sim.exposures, tile_size=tile, scheduler=scheduler,
                                    resample_data=resample)
    assert result.params["mode"] == "spec"  # guessed from meta["exp_type"]
    _assert_equal(result, answers)
    if len(answers) == 1:  # one source: its median is result.median too
        (key,) = answers
        np.testing.assert_array_equal(result.median, result.spec[key]["median"])
        assert (result.median_wcs is not None) == resample


def test_processes_scheduler(oracle):
    sim, answers = oracle("mos", True)
    _assert_equal(daskod.detect_outliers(sim.exposures, tile_size=48, scheduler="processes",
                                         memory_limit="2GiB"), answers)


def test_distributed_cluster(oracle):
    distributed = pytest.importorskip("distributed")
    sim, answers = oracle("mos", True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit="1GiB", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = daskod.detect_outliers(sim.exposures, tile_size=32, scheduler=client,
                                        memory_limit="2GiB")
    _assert_equal(result, answers)


class _Counter(Callback):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _pretask(self, key, dask, state):
        self.n += 1


@pytest.fixture(scope="module")
def eager_mos(oracle):
    sim, _ = oracle("mos", True)
    return sim, daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous")


@pytest.mark.parametrize("order", ["medians-first", "dq-reversed", "together"])
def test_lazy_results_in_any_order_equal_the_eager_run(eager_mos, order):
    sim, eager = eager_mos
    with _Counter() as counter:
        lazy = daskod.detect_outliers(sim.exposures, tile_size=32, compute=False,
                                      scheduler="synchronous")
    assert counter.n == 0
    assert all(hasattr(d, "dask") for d in lazy.dq)
    keys = list(lazy.spec)
    assert all(hasattr(lazy.spec[k]["median_err"], "dask") for k in keys)
    if order == "medians-first":
        for key in reversed(keys):
            np.testing.assert_array_equal(np.asarray(lazy.spec[key]["median_err"]),
                                          eager.spec[key]["median_err"])
            np.testing.assert_array_equal(np.asarray(lazy.spec[key]["median"]),
                                          eager.spec[key]["median"])
        dq = [np.asarray(d) for d in lazy.dq]
    elif order == "dq-reversed":
        dq = [np.asarray(d) for d in reversed(lazy.dq)][::-1]
    else:
        *dq, medians, counts = dask.compute(*lazy.dq, [lazy.spec[k]["median"] for k in keys],
                                            lazy.n_flagged)
        for key, median in zip(keys, medians, strict=True):
            np.testing.assert_array_equal(median, eager.spec[key]["median"])
        assert list(counts) == list(eager.n_flagged)
    for a, b in zip(eager.dq, dq, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [int(n) for n in dask.compute(*lazy.n_flagged)] == list(eager.n_flagged)


def test_a_source_with_one_input_is_skipped_and_the_others_run(oracle):
    sim, answers = oracle("mos", True)
    idx = _sources(sim.exposures)
    lone_key = list(idx)[1]
    drop = set(idx[lone_key][1:])
    exposures = [e for k, e in enumerate(sim.exposures) if k not in drop]
    with pytest.warns(SkippedWarning, match=lone_key):
        result = daskod.detect_outliers(exposures, tile_size=40)
    assert result.status == "COMPLETE"
    info = result.spec[lone_key]
    assert info["status"] == "SKIPPED" and "median" not in info
    (k,) = info["indices"]
    np.testing.assert_array_equal(result.dq[k], exposures[k].dq)
    assert result.n_flagged[k] == 0
    for key in answers:
        if key == lone_key:
            continue
        _, dense = answers[key]
        for k, dq in zip(result.spec[key]["indices"], dense.dq, strict=True):
            np.testing.assert_array_equal(result.dq[k], dq)


def test_every_source_with_one_input_skips_the_step():
    sim = datasets.make_nirspec_slits("mos", n_nods=1, n_slits=2, n_columns=64, seed=0)
    with pytest.warns(SkippedWarning, match="at least 2 inputs per source"):
        result = daskod.detect_outliers(sim.exposures)
    assert result.skipped
    for dq, exp in zip(result.dq, sim.exposures, strict=True):
        np.testing.assert_array_equal(dq, exp.dq)


def test_a_resumed_store_reuses_the_drizzle_and_median_when_only_flagging_changes(
        oracle, tmp_path):
    sim, answers = oracle("fixed_slit", True)
    store = str(tmp_path / "work.zarr")
    first = daskod.detect_outliers(sim.exposures, tile_size=48, store=store)
    _assert_equal(first, answers)
    again = daskod.detect_outliers(sim.exposures, tile_size=48, store=store)
    assert again.checkpoints["spec/resampled"]["reused"] == \
        again.checkpoints["spec/resampled"]["total"] > 0
    assert again.checkpoints["outputs/dq"]["reused"] > 0
    _assert_equal(again, answers)
    other = daskod.detect_outliers(sim.exposures, tile_size=48, store=store, snr="4.0 3.0")
    assert "spec/median" in other.checkpoints and "pixmaps" in other.checkpoints
    assert "outputs/dq" not in other.checkpoints  # the flags were recomputed
    for idx, _ in answers.values():
        dense = detect_spec_outliers_dense([sim.exposures[k] for k in idx], snr="4.0 3.0")
        for k, dq in zip(idx, dense.dq, strict=True):
            np.testing.assert_array_equal(other.dq[k], dq)


def test_intermediate_results_are_kept_when_asked(oracle):
    sim, answers = oracle("lrs", True)
    result = daskod.detect_outliers(sim.exposures, tile_size=40,
                                    save_intermediate_results=True)
    (key,) = answers
    info, dense = result.spec[key], answers[key][1]
    assert info["drizzled"].shape == (len(dense.groups), 3, *dense.median.shape)
    for g, (data, err, wht) in enumerate(zip(dense.drizzled, dense.drizzled_err,
                                             dense.weights, strict=True)):
        planes = info["drizzled"][g]
        # The oracle keeps data and errors after the threshold, the store before it.
        low = wht < dense.thresholds[g]
        np.testing.assert_array_equal(planes[1], wht)
        np.testing.assert_array_equal(np.where(low, np.nan, planes[0]), data)
        np.testing.assert_array_equal(np.where(low, np.nan, planes[2]), err)
    for n, k in enumerate(info["indices"]):
        np.testing.assert_array_equal(info["blots"][k][0], dense.blots[n])
        np.testing.assert_array_equal(info["blots"][k][1], dense.blot_errs[n])


def test_bad_inputs_are_refused_by_name_before_any_work():
    a = datasets.make_nirspec_slits("mos", n_nods=2, n_slits=2, n_columns=64, seed=0)
    mixed = [a.exposures[0], a.exposures[0].copy_with(
        name="other", sci=a.exposures[0].sci[:-1], err=a.exposures[0].err[:-1],
        dq=a.exposures[0].dq[:-1], var_rnoise=None, var_poisson=None, var_flat=None)]
    with pytest.raises(InputError, match="'other' has shape"):
        daskod.detect_outliers(mixed, resample_data=False)
    with pytest.raises(WCSError, match="has no WCS"):
        daskod.detect_outliers([e.copy_with(wcs=None) for e in a.exposures], mode="spec")
    lrs = datasets.make_lrs_exposures(2, shape=(80, 60), seed=0).exposures
    with pytest.raises(WCSError, match="dispersion_direction"):
        daskod.detect_outliers([e.copy_with(meta={"exp_type": "MIR_LRS-FIXEDSLIT"})
                                for e in lrs])


def test_outlier_detection_class_runs_spec(oracle):
    sim, answers = oracle("fixed_slit", False)
    step = daskod.OutlierDetection(resample_data=False, tile_size=32)
    _assert_equal(step.run(sim.exposures), answers)
