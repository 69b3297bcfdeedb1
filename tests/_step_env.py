"""An interpreter with jwst 3.0.0 AND daskod, for the stpipe-step tests (tests/test_jwst_step.py).

``$DASKOD_STEP_PYTHON`` if set, else a cached virtual environment at ``$DASKOD_STEP_VENV``
(default ``~/.cache/daskod/step-jwst-3.0.0``) built on first use: ``python -m venv``, ``pip
install jwst==3.0.0``, then this repository (editable, with daskod's dependencies). The tests
run it with ``PYTHONPATH`` set to this checkout, so the code under test is always this one. A
marker holds daskod's dependency list: when pyproject.toml's dependencies change, the
environment is rebuilt. It never touches any other environment (the parity suite's reference
stays a pure jwst install).

``python tests/_step_env.py`` builds (or checks) it and prints the interpreter: ``.ci/run``
does that before the test suite (about 1-2 minutes the first time, cached afterwards).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JWST = "jwst==3.0.0"
_MARKER = ".daskod-step-env"


class StepEnvironmentError(RuntimeError):
    """No interpreter with jwst and daskod could be found or built."""


def _fingerprint() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    text = "\n".join([JWST, *project["dependencies"]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check(python: str) -> str | None:
    """None when ``python`` imports jwst 3.0.0 and this checkout's daskod step, else why not."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            [python, "-c", "import jwst, daskod.jwst_step, daskod; "
                           "print(jwst.__version__); print(daskod.__file__)"],
            capture_output=True, text=True, timeout=600, check=False, env=env)
    except OSError as err:
        return str(err)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["no output"])[-1]
    version, where = proc.stdout.split()[:2]
    if version != JWST.split("==")[1]:
        return f"it has jwst {version}, not {JWST}"
    if not Path(where).resolve().is_relative_to(ROOT):
        return f"it imports daskod from {where}, not from {ROOT}"
    if not Path(python).with_name("strun").exists():
        return f"there is no strun beside {python}"
    return None


def _venv() -> Path:
    return Path(os.environ.get("DASKOD_STEP_VENV")
                or Path.home() / ".cache" / "daskod" / "step-jwst-3.0.0")


def _build(venv: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [str(python), "-m", "pip", "install", "--quiet", JWST],
             [str(python), "-m", "pip", "install", "--quiet", "-e", str(ROOT)]]
    try:
        for cmd in steps:
            print("step environment:", " ".join(cmd), file=sys.stderr)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                  check=False)
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                msg = (f"Building the step environment failed ({' '.join(cmd)} exited "
                       f"{proc.returncode}): {tail}. Set DASKOD_STEP_PYTHON to a Python with "
                       f"{JWST} and daskod instead.")
                raise StepEnvironmentError(msg)
        (venv / _MARKER).write_text(_fingerprint() + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise


def step_python() -> str:
    """The interpreter for the step tests (checked; built if needed). Raises
    StepEnvironmentError, never skips."""
    given = os.environ.get("DASKOD_STEP_PYTHON")
    if given:
        problem = _check(given)
        if problem:
            msg = (f"DASKOD_STEP_PYTHON={given} cannot run the step tests: {problem}. "
                   f"It needs {JWST}, daskod's dependencies and stpipe's strun.")
            raise StepEnvironmentError(msg)
        return given
    venv = _venv()
    python = str(venv / "bin" / "python")
    marker = venv / _MARKER
    fresh = marker.exists() and marker.read_text(encoding="utf-8").strip() == _fingerprint()
    if not fresh or _check(python) is not None:
        _build(venv)
        problem = _check(python)
        if problem:
            msg = f"The step environment at {venv} was built but {problem}."
            raise StepEnvironmentError(msg)
    return python


if __name__ == "__main__":
    print(step_python())
