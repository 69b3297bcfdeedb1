"""stpipe parameter files (ASDF): files written by the real reference (tests/data, made by
tests/data/make_reference_pars.py with jwst 3.0.0), files written by daskod, the older
layout, pipeline files, and ``daskod run --config``."""

from __future__ import annotations

from pathlib import Path

import asdf
import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod._exceptions import InputError
from daskod._parameters import DASKOD_STEP_CLASS, REFERENCE_STEP_CLASS

DATA = Path(__file__).parent / "data"


def test_reads_the_reference_step_export():
    pars = daskod.read_parameter_file(DATA / "reference-pars-outlierdetectionstep.asdf")
    assert pars["snr"] == "4.0 3.0" and pars["scale"] == "1.8 0.7"
    assert pars["maskpt"] == 0.5 and pars["backg"] == 0.25
    assert pars["weight_type"] == "exptime"
    assert pars["pixmap_stepsize"] == 10.0 and pars["pixmap_order"] == 3
    assert pars["kernel_size"] == "7 7" and pars["rolling_window_width"] == 25
    # stpipe's own parameters are not outlier detection's
    for key in ("output_dir", "suffix", "pre_hooks", "skip", "search_output_file", "input_dir"):
        assert key not in pars
    assert set(pars) <= set(daskod._parameters.known_parameters())


def test_reads_the_step_out_of_a_pipeline_file():
    pars = daskod.read_parameter_file(DATA / "reference-pars-image3pipeline.asdf")
    assert pars["snr"] == "6.0 5.0" and pars["kernel"] == "point"
    assert pars["resample_data"] is False


def test_daskod_writes_what_it_reads(tmp_path):
    path = tmp_path / "pars.asdf"
    params = {"snr": (4.5, 3.5), "scale": "1.8 0.7", "maskpt": 0.6, "memory_limit": "1GiB",
              "tile_size": 64, "cube_roi": (0.5, 1.0)}
    daskod.write_parameter_file(path, params)
    back = daskod.read_parameter_file(path)
    assert back == {"snr": "4.5 3.5", "scale": "1.8 0.7", "maskpt": 0.6,
                    "memory_limit": "1GiB", "tile_size": 64, "cube_roi": [0.5, 1.0]}
    with asdf.open(path) as af:  # the layout stpipe validates (step_config-1.0.0)
        assert af.tree["class"] == DASKOD_STEP_CLASS
        assert set(af.tree) >= {"class", "name", "parameters"}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        daskod.write_parameter_file(path, {"snr": "5 4"})
    daskod.write_parameter_file(path, {"snr": "5 4"}, overwrite=True)
    with asdf.open(path) as af:
        assert af.tree["class"] == REFERENCE_STEP_CLASS  # only reference parameters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pars.asdf"]  # no temp left


def test_write_refuses_what_a_file_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="Unknown parameter"):
        daskod.write_parameter_file(tmp_path / "a.asdf", {"snrr": "5 4"})
    with pytest.raises(ValueError, match="no parameter"):
        daskod.write_parameter_file(tmp_path / "b.asdf", {"memory_limit": "1GiB"},
                                    step_class=REFERENCE_STEP_CLASS)
    with pytest.raises(TypeError, match="cannot go into a parameter file"):
        daskod.write_parameter_file(tmp_path / "c.asdf", {"scheduler": object()})
    assert not list(tmp_path.iterdir())


def test_older_layout_unknown_parameters_and_skip(tmp_path):
    path = tmp_path / "legacy.asdf"
    asdf.AsdfFile({"parameters": {"class": REFERENCE_STEP_CLASS, "name": "outlier_detection",
                                  "snr": "3.0 2.0", "future_option": 1, "skip": True}}
                  ).write_to(path)
    with pytest.warns(daskod.DaskodWarning) as record:
        pars = daskod.read_parameter_file(path)
    assert pars == {"snr": "3.0 2.0"}
    messages = " ".join(str(w.message) for w in record)
    assert "future_option" in messages and "skip: true" in messages


def test_bad_files_are_refused_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        daskod.read_parameter_file(tmp_path / "missing.asdf")
    cfg = tmp_path / "old.cfg"
    cfg.write_text("name = outlier_detection\nsnr = 5.0 4.0\n")
    with pytest.raises(InputError, match=r"old\.cfg.*ASDF"):
        daskod.read_parameter_file(cfg)
    other = tmp_path / "other.asdf"
    asdf.AsdfFile({"class": "jwst.resample.ResampleStep", "name": "resample",
                   "parameters": {"pixfrac": 1.0}}).write_to(other)
    with pytest.raises(InputError, match="no outlier-detection step"):
        daskod.read_parameter_file(other)


def test_file_values_reach_the_run_and_explicit_arguments_win(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(64, 64), seed=2)
    path = daskod.write_parameter_file(tmp_path / "p.asdf", {"snr": "3.0 2.5",
                                                             "tile_size": 32})
    from_file = daskod.detect_outliers(sim.exposures, **daskod.read_parameter_file(path))
    explicit = daskod.detect_outliers(sim.exposures, snr="3.0 2.5", tile_size=32)
    default = daskod.detect_outliers(sim.exposures, tile_size=32)
    assert from_file.params["snr"] == "3.0 2.5"
    assert all(np.array_equal(a, b) for a, b in zip(from_file.dq, explicit.dq, strict=True))
    assert sum(from_file.n_flagged) > sum(default.n_flagged)  # a lower threshold flags more
    step = daskod.OutlierDetection(**daskod.read_parameter_file(path))
    assert step.run(sim.exposures, snr="5.0 4.0").params["snr"] == "5.0 4.0"


def test_command_line_config_and_explicit_options_win(tmp_path, monkeypatch):
    import daskod._run_files
    from daskod.cli import main

    seen = {}

    def fake_run_files(inputs, output_dir, *, params, **engine):
        seen.update(params=params, engine=engine)

    monkeypatch.setattr(daskod._run_files, "run_files", fake_run_files)
    path = daskod.write_parameter_file(tmp_path / "p.asdf", {
        "snr": "4.0 3.0", "maskpt": 0.5, "resample_data": False, "memory_limit": "768MiB"})
    assert main(["run", "asn.json", "-o", str(tmp_path), "--config", str(path),
                 "--maskpt", "0.9"]) == 0
    assert seen["params"]["snr"] == "4.0 3.0"        # from the file
    assert seen["params"]["maskpt"] == 0.9           # given on the command line: wins
    assert seen["params"]["resample_data"] is False  # from the file
    assert seen["engine"]["memory_limit"] == 768 * 2**20  # the CLI checks and parses it
    assert seen["params"]["scale"] == "1.2 0.7"      # neither: the default
    assert main(["run", "asn.json", "-o", str(tmp_path), "--config", str(path),
                 "--resample-data"]) == 0
    assert seen["params"]["resample_data"] is True
    with pytest.raises(SystemExit) as info:  # a usage error, before anything is imported
        main(["run", "asn.json", "-o", str(tmp_path), "--config",
              str(tmp_path / "missing.asdf")])
    assert info.value.code == 2
