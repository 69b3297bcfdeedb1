"""The command line pauses the cyclic garbage collector for a run's start-up (imports and
metadata: many long-lived objects, no garbage) and resumes it, with the start-up's objects
frozen, when the graph starts or the command returns (daskod/_heap.py)."""

from __future__ import annotations

import gc

import dask
import pytest

import daskod._run_plan
from daskod import datasets
from daskod._heap import pause_collector, resume_collector
from daskod.cli import main


@pytest.fixture
def collector():
    """Leave the collector as the test found it (on, nothing frozen)."""
    was = gc.isenabled()
    yield
    resume_collector()
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_resume_turns_on_only_what_pause_turned_off(collector):
    gc.enable()
    pause_collector()
    assert not gc.isenabled()
    frozen = gc.get_freeze_count()
    resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() > frozen  # the start-up's objects are frozen

    gc.disable()  # the user's choice stays
    pause_collector()
    resume_collector()
    assert not gc.isenabled()


def test_cli_run_pauses_for_start_up_and_resumes_for_the_graph(collector, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(64, 64), seed=5)
    files = datasets.write_cal_files(sim.exposures, tmp_path / "in")["files"]
    seen = {}
    plan_run, compute = daskod._run_plan.plan_run, dask.compute

    def spy_plan(*args, **kwargs):
        seen["planning"] = gc.isenabled()
        return plan_run(*args, **kwargs)

    def spy_compute(*args, **kwargs):
        seen.setdefault("graph", gc.isenabled())
        return compute(*args, **kwargs)

    monkeypatch.setattr(daskod._run_plan, "plan_run", spy_plan)
    monkeypatch.setattr(dask, "compute", spy_compute)
    gc.enable()
    code = main(["run", *files, "-o", str(tmp_path / "out"), "--scheduler", "threads", "-q"])
    assert code == 0
    assert seen == {"planning": False, "graph": True}
    assert gc.isenabled()


def test_cli_failure_leaves_the_collector_on(collector, tmp_path):
    gc.enable()
    code = main(["run", str(tmp_path / "missing_cal.fits"), "-o", str(tmp_path / "out"), "-q"])
    assert code != 0
    assert gc.isenabled()
