"""Scenes, cases and comparisons of the parity suite (tests/test_parity*.py).

Every scene is simulated by :mod:`daskod.datasets` and written as JWST products; the
reference-side metadata (``S_REGION``) is then recomputed IN the reference environment with
the reference's own function (``update_s_region_imaging``), so neither tool reads a value
daskod computed. The reference runs in one subprocess for the whole session (jwst imports
once); daskod runs through ``daskod run`` (the command users type), one process per case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from daskod import datasets
from daskod.datasets._jwst_files import write_cube_file, write_ifu_files
from daskod.datasets._reference import compare_new_outliers as compare_flags

__all__ = ["CASES", "FRAME_SCENES", "SCENES", "compare_flags", "reference_jobs", "run_daskod"]


@dataclass(frozen=True)
class Scene:
    """A set of input products: ``kind`` imaging | cube | ifu."""

    name: str
    kind: str
    make: Any


@dataclass(frozen=True)
class Case:
    """One reference run compared with one ``daskod run`` on a scene."""

    name: str
    scene: str
    params: dict = field(default_factory=dict)
    intermediates: bool = False


def _imaging(**kw):
    def make(folder):
        sim = datasets.make_dithered_imaging(**kw)
        return datasets.write_cal_files(sim.exposures, folder)
    return make


def _tso(folder):
    sim = datasets.make_tso_cube(nints=60, shape=(12, 20), seed=8, cr_per_frame=1.0,
                                 n_bad_samples=24)
    path = os.path.join(folder, "jw01234004001_02101_00001_nrca3_calints.fits")
    os.makedirs(folder, exist_ok=True)
    return {"files": [write_cube_file(sim.cube, path)], "asn": None}


def _coron(folder):
    sim = datasets.make_coron_cube(nints=6, shape=(40, 40), seed=3)
    path = os.path.join(folder, "jw01234004001_02101_00001_nrca2_calints.fits")
    os.makedirs(folder, exist_ok=True)
    return {"files": [write_cube_file(sim.cube, path, detector="NRCA2")], "asn": None}


def _ifu(instrument):
    def make(folder):
        sim = datasets.make_ifu_exposures(3, shape=(80, 80), instrument=instrument, seed=6)
        return write_ifu_files(sim.exposures, folder)
    return make


# Small scenes that still take every branch: dithered 4 x 96 x 112 (non-square) with sky
# levels not subtracted; the same with the sky subtracted; two detectors per group; a
# telescope-like WCS rolled 200 deg with dithers of a third of the detector.
SCENES = {s.name: s for s in (
    Scene("imaging", "imaging", _imaging(n_exposures=4, shape=(96, 112), seed=21,
                                         dither_px=20)),
    Scene("subtracted", "imaging", _imaging(n_exposures=3, shape=(80, 96), seed=22,
                                            background_subtracted=True)),
    Scene("two_detectors", "imaging", _imaging(n_exposures=3, shape=(64, 80), seed=23,
                                               wcs_model="telescope", n_detectors=2,
                                               dither_px=15)),
    Scene("rotated", "imaging", _imaging(n_exposures=4, shape=(72, 100), seed=24,
                                         wcs_model="telescope", roll_deg=200.0, dither_px=30)),
    Scene("large_dithers", "imaging", _imaging(n_exposures=3, shape=(48, 48), seed=25,
                                               dither_px=150.0, max_roll_deg=3.0)),
    Scene("rotated_square", "imaging", _imaging(n_exposures=2, shape=(56, 56), seed=26,
                                                wcs_model="telescope", roll_deg=-71.0)),
    Scene("tso", "cube", _tso),
    Scene("coron", "cube", _coron),
    Scene("ifu_miri", "ifu", _ifu("MIRI")),
    Scene("ifu_nirspec", "ifu", _ifu("NIRSPEC")),
)}

CASES = [
    Case("imaging_defaults", "imaging", intermediates=True),
    Case("resample_data_false", "imaging", {"resample_data": False}),
    Case("weight_type_exptime", "imaging", {"weight_type": "exptime"}),
    Case("pixfrac_0.5", "imaging", {"pixfrac": 0.5}),
    Case("two_detectors_per_group", "two_detectors"),
    Case("background_subtracted", "subtracted"),
    Case("rotated_telescope_wcs", "rotated", intermediates=True),
    Case("tso_window_7", "tso", {"rolling_window_width": 7}, intermediates=True),
    Case("tso_window_25", "tso", {"rolling_window_width": 25}),
    Case("coronagraphy", "coron"),
    Case("ifu_difference_miri", "ifu_miri"),
    Case("ifu_difference_nirspec", "ifu_nirspec"),
]
#: Scenes whose output frame is compared with the reference's (test_parity_frame.py).
FRAME_SCENES = ("imaging", "two_detectors", "rotated", "large_dithers", "rotated_square")


def scene_input(written: dict) -> str:
    """What both tools are given: the association, or the one product."""
    return written["asn"] or written["files"][0]


def reference_jobs(root: str, written: dict[str, dict]) -> tuple[list[dict], dict[str, int]]:
    """The session's reference jobs: S_REGION of every imaging scene first, then frames,
    then one step run per case. Returns the jobs and the index of each named job."""
    jobs, index = [], {}
    for name, w in written.items():
        if SCENES[name].kind == "imaging":
            index[f"s_region:{name}"] = len(jobs)
            jobs.append({"kind": "s_region", "files": w["files"]})
    for name in FRAME_SCENES:
        index[f"frame:{name}"] = len(jobs)
        jobs.append({"kind": "frame", "input": written[name]["asn"]})
    for case in CASES:
        index[f"run:{case.name}"] = len(jobs)
        jobs.append({"kind": "run", "input": scene_input(written[case.scene]),
                     "output_dir": os.path.join(root, "reference", case.name),
                     "params": case.params, "save_intermediate_results": case.intermediates})
    return jobs, index


def _cli_args(params: dict) -> list[str]:
    args = []
    for key, value in params.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def run_daskod(case: Case, written: dict, outdir: str) -> subprocess.CompletedProcess:
    """``daskod run`` on the case's input, in its own process."""
    cmd = [sys.executable, "-m", "daskod.cli", "run", scene_input(written), "-o", outdir,
           "--no-progress", *_cli_args(case.params)]
    if case.intermediates:
        cmd.append("--save-intermediate-results")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
