"""Fixtures: thin wrappers around the seeded factories of :mod:`daskod.datasets`."""

from __future__ import annotations

import dask
import pytest

from daskod import datasets


@pytest.fixture(scope="session")
def small_observation():
    """4 dithered 160x160 exposures with stars, galaxies and cosmic rays (seeded)."""
    return datasets.make_dithered_imaging(n_exposures=4, shape=(160, 160), seed=11)


@pytest.fixture(scope="session")
def science_observation():
    """6 dithered 384x384 exposures: enough stars and cosmic rays to measure recall."""
    return datasets.make_dithered_imaging(n_exposures=6, shape=(384, 384), seed=5)


@pytest.fixture
def simple_exposures():
    """Three 21x20 exposures as the reference's unit tests build them, CR in the first."""
    return datasets.make_simple_exposures(n_exposures=3, cr_value=1.0)


class CountingScheduler:
    """A Dask scheduler that counts how often it is asked to compute (as xarray's tests)."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total += 1
        if self.total > self.max_computes:
            msg = f"Too many computes: {self.total} > {self.max_computes}"
            raise RuntimeError(msg)
        return dask.get(dsk, keys, **kwargs)


@pytest.fixture
def raise_if_dask_computes():
    def factory(max_computes: int = 0):
        return dask.config.set(scheduler=CountingScheduler(max_computes))
    return factory


# --- the real reference (jwst 3.0.0) in its own environment: parity suite --------------------

@pytest.fixture(scope="session")
def reference_python():
    """Interpreter of the reference environment: $DASKOD_REFERENCE_PYTHON, else the cached
    venv (created on first use). A missing environment FAILS the parity tests: never skips."""
    from daskod.datasets._reference import reference_python as find

    return find()


class ParitySession:
    """The parity scenes written once, and the reference's results for all of them."""

    def __init__(self, root, written, results, index):
        self.root = root
        self.written = written
        self.results = results
        self.index = index
        self._daskod = {}

    def reference(self, key):
        result = self.results[self.index[key]]
        assert result["ok"], f"the reference failed on {key}:\n{result['error']}"
        return result

    def daskod(self, case):
        """``daskod run`` of a case (run once per session): its output folder."""
        import os

        import _parity

        if case.name not in self._daskod:
            outdir = os.path.join(self.root, "daskod", case.name)
            proc = _parity.run_daskod(case, self.written[case.scene], outdir)
            self._daskod[case.name] = (proc, outdir)
        proc, outdir = self._daskod[case.name]
        assert proc.returncode == 0, proc.stderr[-3000:]
        return outdir


@pytest.fixture(scope="session")
def parity(reference_python, tmp_path_factory):
    """Every parity scene simulated and written, S_REGION recomputed by the reference, the
    reference's frames and step runs (one reference process for the session)."""
    import _parity

    from daskod.datasets._reference import run_reference_jobs

    root = str(tmp_path_factory.mktemp("parity"))
    written = {name: scene.make(f"{root}/inputs/{name}")
               for name, scene in _parity.SCENES.items()}
    jobs, index = _parity.reference_jobs(root, written)
    results = run_reference_jobs(jobs, python=reference_python, workdir=root)
    for key, k in index.items():  # every input file must carry the reference's S_REGION
        if key.startswith("s_region:"):
            assert results[k]["ok"], results[k]["error"]
    return ParitySession(root, written, results, index)
