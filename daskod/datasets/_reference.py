"""The real reference (jwst 3.0.0's ``OutlierDetectionStep``), run in its own environment.

daskod never depends on ``jwst``: the parity tests and ``benchmarks/bench_vs_reference.py``
run it in a separate virtual environment through a subprocess, offline (no CRDS parameter
files; a CRDS server address where nothing listens, so a stray call fails at once).

The interpreter is ``$DASKOD_REFERENCE_PYTHON`` if set, else the cached environment
``$DASKOD_REFERENCE_VENV`` (default ``~/.cache/daskod/jwst-3.0.0``), created on first use with
``python -m venv`` and ``pip install`` of :data:`REFERENCE_REQUIREMENTS` (about 1-2 minutes).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REFERENCE_REQUIREMENTS", "ReferenceError", "reference_python", "run_reference_jobs",
           "reference_environment", "compare_new_outliers"]

log = logging.getLogger(__name__)

REFERENCE_VERSION = "3.0.0"
#: The reference and the numerics packages the parity results were established with.
REFERENCE_REQUIREMENTS = ("jwst==3.0.0", "stcal==1.20.0", "drizzle==2.2.0", "gwcs==1.0.3",
                          "stdatamodels==6.0.0", "stpipe==1.1.0")
_WORKER = Path(__file__).with_name("_reference_worker.py")
_MARKER = ".daskod-reference-complete"


class ReferenceError(RuntimeError):
    """The reference environment is missing, cannot be created, or a reference job failed."""


def _default_venv() -> Path:
    return Path(os.environ.get("DASKOD_REFERENCE_VENV")
                or Path.home() / ".cache" / "daskod" / f"jwst-{REFERENCE_VERSION}")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _version_of(python: str) -> str | None:
    try:
        proc = subprocess.run([python, "-c", "import jwst; print(jwst.__version__)"],
                              capture_output=True, text=True, timeout=300, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def reference_python(*, create: bool = True) -> str:
    """Path of an interpreter that has jwst 3.0.0, creating the cached environment if needed.

    Raises
    ------
    ReferenceError
        When ``$DASKOD_REFERENCE_PYTHON`` is not a jwst 3.0.0 interpreter, or the cached
        environment is missing (``create=False``) or cannot be created; the message says
        which command failed and how to provide one.
    """
    given = os.environ.get("DASKOD_REFERENCE_PYTHON")
    if given:
        version = _version_of(given)
        if version != REFERENCE_VERSION:
            msg = (f"DASKOD_REFERENCE_PYTHON={given} does not import jwst {REFERENCE_VERSION} "
                   f"(found {version!r}); point it at a Python with "
                   f"'pip install {' '.join(REFERENCE_REQUIREMENTS)}'.")
            raise ReferenceError(msg)
        return given
    venv = _default_venv()
    python = _venv_python(venv)
    if (venv / _MARKER).exists() and _version_of(str(python)) == REFERENCE_VERSION:
        return str(python)
    if not create:
        msg = (f"No reference environment at {venv}; create it with: python -m venv {venv} && "
               f"{python} -m pip install {' '.join(REFERENCE_REQUIREMENTS)}")
        raise ReferenceError(msg)
    create_reference_venv(venv)
    return str(python)


def create_reference_venv(venv: Path) -> None:
    """``python -m venv`` + ``pip install`` of the reference at ``venv``. A marker file is
    written last; a folder without it (an interrupted build) is removed and rebuilt."""
    venv = Path(venv)
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(_venv_python(venv)), "-m", "pip", "install", "--quiet",
              *REFERENCE_REQUIREMENTS]]
    try:
        for cmd in steps:
            log.warning("Creating the reference environment: %s", " ".join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                  check=False)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                msg = (f"Could not create the reference environment ({' '.join(cmd)} exited "
                       f"{proc.returncode}): {' | '.join(tail)}. Set DASKOD_REFERENCE_PYTHON "
                       "to an interpreter with jwst 3.0.0 instead.")
                raise ReferenceError(msg)
        version = _version_of(str(_venv_python(venv)))
        if version != REFERENCE_VERSION:
            msg = f"The reference environment at {venv} was built but imports jwst {version!r}."
            raise ReferenceError(msg)
        (venv / _MARKER).write_text(" ".join(REFERENCE_REQUIREMENTS) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise


def reference_environment(crds_path: str | os.PathLike) -> dict[str, str]:
    """Environment of a reference process: offline, no CRDS parameter files."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # daskod's own path must not leak into the reference
    env.update(STPIPE_DISABLE_CRDS_STEPPARS="True", CRDS_PATH=os.fspath(crds_path),
               CRDS_SERVER_URL="https://127.0.0.1:9", CRDS_OBSERVATORY="jwst")
    return env


def run_reference_jobs(jobs: list[dict[str, Any]], *, python: str | None = None,
                       workdir: str | os.PathLike | None = None,
                       timeout: float = 1800) -> list[dict[str, Any]]:
    """Run reference jobs in ONE reference process (jwst imports once); see the worker's
    docstring (``daskod/datasets/_reference_worker.py``) for the job kinds.

    Returns
    -------
    list of dict
        One result per job, with ``ok`` and, on failure, ``error`` (the traceback).
    """
    python = python or reference_python()
    with tempfile.TemporaryDirectory(prefix="daskod-reference-",
                                     dir=None if workdir is None else os.fspath(workdir)) as tmp:
        crds = os.path.join(tmp, "crds")
        os.makedirs(crds)
        jobs_path = os.path.join(tmp, "jobs.json")
        results_path = os.path.join(tmp, "results.json")
        with open(jobs_path, "w", encoding="utf-8") as f:
            json.dump(jobs, f)
        proc = subprocess.run([python, str(_WORKER), jobs_path, results_path],
                              env=reference_environment(crds), capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=tmp)
        if proc.returncode != 0 or not os.path.exists(results_path):
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
            msg = f"The reference process failed (exit {proc.returncode}):\n{tail}"
            raise ReferenceError(msg)
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)


def _dq(path: str) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return np.asarray(hdul["DQ"].data)


def _product(folder: str, stem: str) -> str:
    found = sorted(glob.glob(os.path.join(folder, f"{stem}*_crf*.fits")))
    if len(found) != 1:
        msg = f"expected one product for {stem} in {folder}, found {found}"
        raise AssertionError(msg)
    return found[0]


def compare_new_outliers(inputs: list[str], ref_dir: str, dk_dir: str) -> dict[str, Any]:
    """New-outlier masks ((DQ & 16) set, not set in the input) of the reference's products in
    ``ref_dir`` and daskod's in ``dk_dir``, per input: Jaccard index over all inputs, shared
    and union counts, per-input counts and (up to 20) pixels found by only one tool."""
    rows = []
    shared = union = 0
    for path in inputs:
        stem = os.path.basename(path).rsplit("_", 1)[0]
        before = (_dq(path) & 16) != 0
        ref = ((_dq(_product(ref_dir, stem)) & 16) != 0) & ~before
        dk = ((_dq(_product(dk_dir, stem)) & 16) != 0) & ~before
        both = int((ref & dk).sum())
        either = int((ref | dk).sum())
        shared += both
        union += either
        rows.append({"input": stem, "reference": int(ref.sum()), "daskod": int(dk.sum()),
                     "only_reference": np.argwhere(ref & ~dk).tolist()[:20],
                     "only_daskod": np.argwhere(dk & ~ref).tolist()[:20]})
    return {"jaccard": shared / union if union else 1.0, "shared": shared, "union": union,
            "rows": rows}
