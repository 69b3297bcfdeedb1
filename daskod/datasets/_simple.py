"""The reference unit tests' tiny exposures (docs/algorithm.md section 7, ``helpers.py``)."""

from __future__ import annotations

import numpy as np

from daskod.datasets._wcs import make_simple_wcs
from daskod.exposure import Exposure

__all__ = ["make_simple_exposures"]


def make_simple_exposures(
    n_exposures: int = 3,
    *,
    shape: tuple[int, int] = (21, 20),
    background: float = 1.5,
    sigma: float = 0.02,
    source_value: float = 7.0,
    source_pixel: tuple[int, int] = (7, 7),
    cr_value: float | None = None,
    cr_pixel: tuple[int, int] = (12, 12),
    cr_exposure: int = 0,
    seed: int = 99,
) -> list[Exposure]:
    """Small identical-WCS exposures as the reference's tests build them.

    Background 1.5 (not subtracted, recorded as ``background_level``), Gaussian noise
    ``sigma`` re-seeded for every exposure (so all exposures share the same noise, as in the
    reference), ``err = sigma`` (``sqrt(sigma**2 + source)`` on the source), ``var_rnoise = 1``,
    a source of ``source_value`` at ``source_pixel``, and optionally a cosmic ray of
    ``cr_value`` at ``cr_pixel`` in exposure ``cr_exposure``.
    """
    out = []
    for k in range(n_exposures):
        rng = np.random.default_rng(seed)
        sci = (rng.normal(background, sigma, size=shape)).astype(np.float32)
        err = np.full(shape, sigma, dtype=np.float32)
        sci[source_pixel] += source_value
        err[source_pixel] = np.sqrt(sigma**2 + source_value)
        if cr_value is not None and k == cr_exposure:
            sci[cr_pixel] += cr_value
        out.append(Exposure(
            sci=sci, err=err, dq=np.zeros(shape, dtype=np.uint32), wcs=make_simple_wcs(shape=shape),
            var_rnoise=np.ones(shape, dtype=np.float32), group_id=f"group{k}",
            exposure_time=1.0, background_level=background, background_subtracted=False,
            name=f"test{k}"))
    return out
