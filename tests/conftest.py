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
