"""JWST files in and out through ``daskod run`` (real stdatamodels products)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from daskod import datasets

dm = pytest.importorskip("stdatamodels.jwst.datamodels")


@pytest.fixture(scope="module")
def cal_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cal")
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(128, 128), seed=3)
    out = datasets.write_cal_files(sim.exposures, folder / "in")
    return sim, out


def _run(*args, cwd=None):
    if args and args[0] != "run":
        args = ("run", *args)
    return subprocess.run([sys.executable, "-m", "daskod.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600, check=False)


def test_run_association_writes_one_crf_per_member(cal_files, tmp_path):
    sim, files = cal_files
    before = {p: os.stat(p).st_mtime_ns for p in files["files"]}
    proc = _run(files["asn"], "-o", str(tmp_path / "out"), "--no-progress",
                "--scheduler", "synchronous", "-v")
    assert proc.returncode == 0, proc.stderr
    outs = sorted(os.listdir(tmp_path / "out"))
    assert outs == [os.path.basename(p).replace("_cal", "_crf") for p in files["files"]]
    assert "daskod 0.1.0" in proc.stderr and "stdatamodels" in proc.stderr
    recalled = bright = 0
    for k, src in enumerate(files["files"]):
        assert os.stat(src).st_mtime_ns == before[src]  # inputs untouched
        out = tmp_path / "out" / os.path.basename(src).replace("_cal", "_crf")
        with dm.open(src) as a, dm.open(str(out)) as b:
            b.validate()
            assert b.meta.cal_step.outlier_detection == "COMPLETE"
            added = b.dq & ~a.dq
            assert set(np.unique(added)) <= {0, 1, 16, 17}
            new = (b.dq & 16) != 0
            # SCI NaN exactly where DO_NOT_USE; elsewhere unchanged.
            np.testing.assert_array_equal(np.isnan(b.data), (b.dq & 1) != 0)
            keep = (b.dq & 1) == 0
            np.testing.assert_array_equal(b.data[keep], a.data[keep])
            np.testing.assert_array_equal(b.err[keep], a.err[keep])
            np.testing.assert_array_equal(b.area, a.area)
            assert b.meta.exposure.type == a.meta.exposure.type
            assert b.meta.background.level == a.meta.background.level
            assert b.meta.observation.exposure_number == a.meta.observation.exposure_number
            x, y = np.meshgrid(np.arange(5.0), np.arange(5.0))
            np.testing.assert_allclose(b.meta.wcs(x, y), a.meta.wcs(x, y))
        crs = sim.cr_pixels[k]
        sel = (crs["snr"] > 10) & (crs["coverage"] >= 3)
        bright += int(sel.sum())
        recalled += int(new[crs["y"][sel], crs["x"][sel]].sum())
        assert np.all(b_dq_17(out)[crs["y"][sel][new[crs["y"][sel], crs["x"][sel]]],
                                   crs["x"][sel][new[crs["y"][sel], crs["x"][sel]]]] & 17 == 17)
    assert bright > 20
    assert recalled / bright >= 0.99


def b_dq_17(path):
    with dm.open(str(path)) as m:
        return np.array(m.dq)


def test_run_files_and_intermediates(cal_files, tmp_path):
    _, files = cal_files
    proc = _run(*files["files"], "-o", str(tmp_path / "out"), "--no-progress",
                "--save-intermediate-results", "--snr", "5.0 4.0", "--maskpt", "0.7")
    assert proc.returncode == 0, proc.stderr
    names = set(os.listdir(tmp_path / "out"))
    stem = os.path.basename(files["files"][0])[:-len("_cal.fits")]
    assert f"{stem}_median.fits" in names
    assert sum(n.endswith("_blot.fits") for n in names) == 4
    assert sum(n.endswith("_outlier_i2d.fits") for n in names) == 4
    with dm.open(str(tmp_path / "out" / f"{stem}_median.fits")) as med:
        assert med.meta.wcs is not None
        assert np.isfinite(med.data).mean() > 0.5
    import xarray as xr

    ds = xr.open_zarr(str(tmp_path / "out" / f"{stem}_intermediates.zarr"), group=None,
                      consolidated=False)
    assert "median" in ds


def test_run_resumes_from_its_store_and_reuses_it_for_other_flag_parameters(cal_files,
                                                                           tmp_path):
    _, files = cal_files
    store = str(tmp_path / "work.zarr")
    args = [files["asn"], "--no-progress", "--store", store]
    first = _run(*args, "-o", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    again = _run(*args, "-o", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    assert "Resumed the run" in again.stdout and "Resumed" not in first.stdout
    for name in os.listdir(tmp_path / "a"):
        np.testing.assert_array_equal(b_dq_17(tmp_path / "a" / name),
                                      b_dq_17(tmp_path / "b" / name))
    # Other flagging parameters: the drizzled groups and the median are reused.
    other = _run(*args, "-o", str(tmp_path / "c"), "--snr", "6.0 4.0")
    assert other.returncode == 0, other.stderr
    assert "Resumed the run" in other.stdout
    fresh = _run(files["asn"], "--no-progress", "-o", str(tmp_path / "d"), "--snr", "6.0 4.0")
    assert fresh.returncode == 0, fresh.stderr
    for name in os.listdir(tmp_path / "c"):
        np.testing.assert_array_equal(b_dq_17(tmp_path / "c" / name),
                                      b_dq_17(tmp_path / "d" / name))


def _bad(tmp_path, cal_files, mutate):
    _, files = cal_files
    folder = tmp_path / "bad"
    shutil.copytree(os.path.dirname(files["asn"]), folder)
    asn = folder / "test_asn.json"
    target = mutate(folder, asn)
    proc = _run(str(target or asn), "-o", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode != 0
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    line = proc.stderr.strip().splitlines()[-1]
    return line


def test_missing_member(tmp_path, cal_files):
    def mutate(folder, asn):
        os.remove(next(folder.glob("*_00002_*_cal.fits")))
    line = _bad(tmp_path, cal_files, mutate)
    assert "no such file" in line and "00002" in line


def test_member_escaping_the_folder(tmp_path, cal_files):
    def mutate(folder, asn):
        data = json.loads(asn.read_text())
        data["products"][0]["members"][1]["expname"] = "../elsewhere_cal.fits"
        asn.write_text(json.dumps(data))
    line = _bad(tmp_path, cal_files, mutate)
    assert "outside the association's folder" in line


def test_not_a_jwst_product_and_corrupt_file(tmp_path, cal_files):
    from astropy.io import fits

    def not_jwst(folder, asn):
        path = next(folder.glob("*_00003_*_cal.fits"))
        fits.PrimaryHDU(np.zeros((4, 4))).writeto(path, overwrite=True)
    line = _bad(tmp_path, cal_files, not_jwst)
    assert "not a JWST product" in line and "00003" in line

    def corrupt(folder, asn):
        path = next(folder.glob("*_00001_*_cal.fits"))
        path.write_bytes(path.read_bytes()[:5000])
    line = _bad(tmp_path / "c", cal_files, corrupt)
    assert "00001" in line


def test_no_wcs_and_unknown_exposure_type(tmp_path, cal_files):
    def no_wcs(folder, asn):
        path = next(folder.glob("*_00004_*_cal.fits"))
        with dm.open(str(path)) as m:
            m.meta.wcs = None
            m.save(str(path))
    line = _bad(tmp_path, cal_files, no_wcs)
    assert "has no WCS" in line and "00004" in line

    def odd_type(folder, asn):
        path = next(folder.glob("*_00004_*_cal.fits"))
        with dm.open(str(path)) as m:
            m.meta.exposure.type = "NRS_IFU"
            m.save(str(path))
    line = _bad(tmp_path / "t", cal_files, odd_type)
    assert "NRS_IFU" in line


def test_output_folder_that_would_overwrite_inputs(tmp_path, cal_files):
    _, files = cal_files
    folder = tmp_path / "same"
    shutil.copytree(os.path.dirname(files["asn"]), folder)
    for p in folder.glob("*_cal.fits"):
        p.rename(str(p).replace("_cal.fits", "_crf.fits"))
    asn = folder / "test_asn.json"
    data = json.loads(asn.read_text())
    for m in data["products"][0]["members"]:
        m["expname"] = m["expname"].replace("_cal", "_crf")
    asn.write_text(json.dumps(data))
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*.fits")}
    proc = _run(str(asn), "-o", str(folder), "--no-progress")
    assert proc.returncode != 0
    assert "would overwrite an input" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.fits")} == mtimes


def test_single_group_is_skipped_and_recorded(cal_files, tmp_path):
    _, files = cal_files
    proc = _run(files["files"][0], "-o", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout.lower()
    out = tmp_path / "out" / os.path.basename(files["files"][0]).replace("_cal", "_crf")
    with dm.open(str(out)) as b, dm.open(files["files"][0]) as a:
        assert b.meta.cal_step.outlier_detection == "SKIPPED"
        np.testing.assert_array_equal(b.dq, a.dq)


def test_help_documents_the_options():
    proc = _run("run", "--help")
    assert proc.returncode == 0
    for option in ("--snr", "--scale", "--maskpt", "--memory-limit", "--scheduler",
                   "--tile-size", "--save-intermediate-results", "--no-progress",
                   "--weight-type", "--rolling-window-width"):
        assert option in proc.stdout


def test_run_calints_time_series(tmp_path):
    """A TSO *_calints.fits (CubeModel) in, a *_crfints.fits out."""
    sim = datasets.make_tso_cube(nints=40, shape=(10, 16), seed=5)
    c = sim.cube
    model = dm.CubeModel(data=c.sci, err=c.err, dq=c.dq, var_rnoise=c.var_rnoise)
    model.meta.telescope = "JWST"
    model.meta.exposure.type = "NRC_TSIMAGE"
    model.meta.exposure.nints = 40
    model.meta.visit.tsovisit = True
    src = tmp_path / "jw01234001001_04101_00001_nrca3_calints.fits"
    model.save(str(src))
    proc = _run(str(src), "-o", str(tmp_path / "out"), "--no-progress",
                "--rolling-window-width", "7")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "jw01234001001_04101_00001_nrca3_crfints.fits"
    with dm.open(str(out)) as b:
        b.validate()
        assert b.meta.cal_step.outlier_detection == "COMPLETE"
        new = (b.dq & 16) != 0
        crs = sim.cr_pixels
        bright = crs["snr"] > 10
        assert new[crs["t"][bright], crs["y"][bright], crs["x"][bright]].mean() >= 0.95
        np.testing.assert_array_equal(np.isnan(b.data), (b.dq & 1) != 0)


def test_worker_server_starts_early_only_for_default_imaging_runs(cal_files, tmp_path,
                                                                  monkeypatch):
    """``daskod run`` starts the processes scheduler's worker server before reading the
    metadata only when the run will use it: default scheduler and budget, imaging with
    resampling (from the first input's EXP_TYPE); never for time series or a given budget."""
    from daskod._run_files import _warm_up_workers
    from daskod.engine._scheduler import Scheduler

    started = []
    monkeypatch.setattr(Scheduler, "warm_up", lambda self, **kw: started.append(
        (self.name, kw.get("writes_products"))))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    _sim, files = cal_files

    def guess(inputs, **kwargs):
        from daskod.io._jwst import Member, gather_members
        from daskod.io._location import is_url

        started.clear()
        options = {"params": {}, "scheduler": None, "memory_limit": None, **kwargs}
        members = ([Member(path=p) for p in inputs] if any(map(is_url, inputs))
                   else gather_members(inputs))
        _warm_up_workers(members, options.pop("params"), **options)
        return started == [("processes", True)]

    assert guess([files["asn"]])
    assert guess(files["files"][:2])
    assert not guess([files["asn"]], memory_limit="1GiB")
    assert not guess([files["asn"]], scheduler="threads")
    assert not guess([files["asn"]], params={"resample_data": False})
    model = dm.CubeModel(data=np.zeros((4, 8, 8), np.float32))
    model.meta.exposure.type = "NRC_TSIMAGE"
    model.meta.exposure.nints = 4
    model.meta.visit.tsovisit = True
    model.save(str(tmp_path / "x_calints.fits"))
    assert not guess([str(tmp_path / "x_calints.fits")])
    assert not guess([str(tmp_path / "missing_cal.fits")])
    assert not guess(["s3://bucket/jw01234-o001_image3_asn.json"])  # not even read


@pytest.mark.parametrize("writes_products", [False, True])
def test_worker_server_preloads_the_product_writer_only_when_asked(writes_products):
    """Workers of runs that write products start with the writer's modules (each worker
    imported them, ~0.5 s); workers of other runs do not wait for them. Either way the
    server froze what its imports made (the workers' collections skip it) and, on glibc,
    set the allocator to keep freed memory."""
    code = f"""
from concurrent.futures import ProcessPoolExecutor
from daskod.engine._scheduler import Scheduler, _worker_server

LOADED = ("[m in __import__('sys').modules"
          " for m in ('daskod.io._products', 'daskod.median._graph')]"
          " + [__import__('gc').get_freeze_count() > 100000]"
          " + [__import__('sys').modules['daskod._worker_memory'].APPLIED]")

if __name__ == "__main__":
    Scheduler("processes", 1).warm_up(writes_products={writes_products})
    with ProcessPoolExecutor(1, mp_context=_worker_server()) as pool:
        print(pool.submit(eval, LOADED).result())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == [f"[{writes_products},", "True,", "True,", f"{glibc}]"]


def test_command_line_run_never_imports_dask_array(cal_files, tmp_path):
    """``daskod run`` computes its graph's outputs as they are (GraphArray): the main
    process does not import dask.array (and the xarray it loads, ~0.8 s of every run's
    start-up), and the products it writes are those of a run whose outputs are Dask arrays."""
    _, files = cal_files
    code = f"""
import sys
from daskod.cli import main

code = main(["run", {files["asn"]!r}, "-o", {str(tmp_path / "out")!r}, "--no-progress"])
print(code, "dask.array" in sys.modules, "xarray" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stderr
    proc = _run(files["asn"], "-o", str(tmp_path / "again"), "--no-progress",
                "--save-intermediate-results")  # converts the outputs it stages
    assert proc.returncode == 0, proc.stderr
    for path in files["files"]:
        name = os.path.basename(path).replace("_cal", "_crf")
        np.testing.assert_array_equal(b_dq_17(tmp_path / "out" / name),
                                      b_dq_17(tmp_path / "again" / name))
