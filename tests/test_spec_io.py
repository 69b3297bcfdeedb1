"""Reading slit spectroscopy products into per-slit exposures and writing them back."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from daskod import datasets
from daskod._exceptions import InputError
from daskod.io._jwst import FitsArray, gather_members

pytest.importorskip("stdatamodels")

from daskod.io._jwst_spec import (
    read_spec_members,
    spec_sources,
    write_spec_product,
)


@pytest.fixture(scope="module")
def mos_files(tmp_path_factory):
    sim = datasets.make_nirspec_slits("mos", n_nods=2, n_detectors=2, n_slits=3,
                                      n_columns=80, seed=7)
    out = datasets.write_spec_cal_files(sim, tmp_path_factory.mktemp("mos"))
    return sim, out


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_multislit_files_become_one_exposure_per_slit(mos_files):
    sim, out = mos_files
    files = read_spec_members(gather_members(out["asn"]))
    assert [len(f) for f in files] == [len(p.items) for p in sim.products]
    for slits, product in zip(files, sim.products, strict=True):
        for exp, truth in zip(slits, product.items, strict=True):
            assert exp.name == truth.name
            assert isinstance(exp.sci, FitsArray)
            np.testing.assert_array_equal(exp.sci[...], truth.sci)
            np.testing.assert_array_equal(exp.dq[3:9, 10:40], truth.dq[3:9, 10:40])
            np.testing.assert_array_equal(exp.var_rnoise[...], truth.var_rnoise)
            for key in ("slit_name", "source_id", "source_name", "xstart", "ystart"):
                assert exp.meta[key] == truth.meta[key]
            assert exp.meta["exp_type"] == "NRS_MSASPEC"
            assert exp.meta["dispersion_direction"] == 1
            assert exp.group_id == truth.group_id
            assert exp.instrument == "NIRSPEC" and exp.detector == product.detector
            y, x = np.mgrid[0:exp.shape[0], 0:exp.shape[1]].astype(float)
            np.testing.assert_array_equal(np.array(exp.wcs(x, y)), np.array(truth.wcs(x, y)))
    sources = spec_sources(files)
    expected = sim.by_source()
    assert list(sources) == list(expected)
    for key in sources:
        assert [e.name for e in sources[key]] == [e.name for e in expected[key]]


def test_lrs_image_is_one_source(tmp_path):
    sim = datasets.make_lrs_exposures(2, shape=(120, 64), seed=1)
    out = datasets.write_spec_cal_files(sim, tmp_path)
    files = read_spec_members(gather_members(out["files"]))
    sources = spec_sources(files)
    assert list(sources) == ["all"] and len(sources["all"]) == 2
    exp = sources["all"][0]
    assert exp.meta["model_type"] == "ImageModel" and exp.meta["dispersion_direction"] == 2
    np.testing.assert_array_equal(exp.err[...], sim.exposures[0].err)
    # The WCS's wavelength tables were loaded before the product was closed: it evaluates
    # and pickles (for workers) on its own.
    import pickle

    wcs = pickle.loads(pickle.dumps(exp.wcs))
    y, x = np.mgrid[0:120, 0:64].astype(float)
    np.testing.assert_array_equal(np.array(wcs(x, y)), np.array(sim.exposures[0].wcs(x, y)))


def test_imaging_products_are_refused_by_name(tmp_path):
    exps = datasets.make_simple_exposures(2)
    out = datasets.write_cal_files(exps, tmp_path, asn_name=None)
    with pytest.raises(InputError, match=r"_cal\.fits: exposure type 'NRC_IMAGE' is not a slit"):
        read_spec_members(gather_members(out["files"]))


def test_crf_keeps_the_slits_and_matches_nans(mos_files, tmp_path):
    _, out = mos_files
    src = out["files"][0]
    before = _sha(src)
    files = read_spec_members(gather_members([src]))
    exp = files[0][1]
    new = np.asarray(exp.dq[...]).copy()
    new[5, 20] |= 17
    new[6, 30] |= 1
    dst = str(tmp_path / "x_crf.fits")
    write_spec_product(src, dst, {1: new})
    assert _sha(src) == before
    stdatamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    with stdatamodels.open(dst) as model, stdatamodels.open(src) as orig:
        assert type(model).__name__ == "MultiSlitModel"
        assert len(model.slits) == len(orig.slits)
        assert model.meta.cal_step.outlier_detection == "COMPLETE"
        np.testing.assert_array_equal(model.slits[1].dq, new)
        bad = (new & 1) != 0
        for name in ("data", "err", "var_rnoise", "var_poisson", "var_flat"):
            assert np.isnan(getattr(model.slits[1], name)[bad]).all()
        np.testing.assert_array_equal(model.slits[1].data[~bad], orig.slits[1].data[~bad])
        np.testing.assert_array_equal(model.slits[0].dq, orig.slits[0].dq)
        assert model.slits[1].name == orig.slits[1].name
    with pytest.raises(InputError, match="does not match"):
        write_spec_product(src, str(tmp_path / "y_crf.fits"), {0: new[:-1]})
    assert not (tmp_path / "y_crf.fits").exists()


def test_worker_processes_read_the_same_slits(mos_files):
    """Large MOS files are opened by several processes: the slits that come back (lazy
    arrays, detached WCSs, metadata) are the ones this process reads."""
    _, out = mos_files
    members = gather_members(out["asn"])
    here = read_spec_members(members)
    there = read_spec_members(members, workers=2)
    assert [[e.name for e in f] for f in there] == [[e.name for e in f] for f in here]
    for a, b in zip((e for f in here for e in f), (e for f in there for e in f), strict=True):
        assert a.meta == b.meta and a.group_id == b.group_id
        np.testing.assert_array_equal(a.sci[...], b.sci[...])
        y, x = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(float)
        np.testing.assert_array_equal(np.array(a.wcs(x, y)), np.array(b.wcs(x, y)))


def test_daskod_run_writes_one_product_per_file_with_the_engine_flags(mos_files, tmp_path):
    """``daskod run`` on slit products: every slit's DQ in its file's crf equals the engine's
    answer on the same slits, the intermediates carry the reference's names, inputs stay."""
    import glob
    import os

    import daskod
    from daskod._run_files import run_files
    from daskod.io._jwst import read_members
    from daskod.io._jwst_spec import spec_intermediate_name

    _, out = mos_files
    before = {p: _sha(p) for p in out["files"]}
    lines: list[str] = []
    run_files([out["asn"]], str(tmp_path), params={}, tile_size=24, progress=False,
              save_intermediate_results=True, scheduler="synchronous", echo=lines.append)
    assert {p: _sha(p) for p in out["files"]} == before
    items, _, mode = read_members(gather_members(out["asn"]))
    assert mode == "spec"
    result = daskod.detect_outliers(items, tile_size=64)
    stdatamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    for k, exp in enumerate(items):
        crf = os.path.join(tmp_path, exp.meta["filename"].replace("_cal", "_crf"))
        with stdatamodels.open(crf) as model:
            np.testing.assert_array_equal(model.slits[exp.meta["slit_index"]].dq,
                                          result.dq[k])
            assert model.meta.cal_step.outlier_detection == "COMPLETE"
    names = {os.path.basename(p) for p in glob.glob(str(tmp_path / "*.fits"))
             if not p.endswith("_crf.fits")}
    expected = set()
    for info in result.spec.values():
        first = items[info["indices"][0]]
        expected.add(spec_intermediate_name(first, "median"))
        expected |= {spec_intermediate_name(items[g[0]], "outlier_s2d") for g in info["groups"]}
        expected |= {spec_intermediate_name(items[k], "blot") for k in info["indices"]}
    assert names == expected
    assert any("slit(s)" in line for line in lines)
