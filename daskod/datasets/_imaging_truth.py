"""Ground-truth maps of a simulated imaging observation: what each detector pixel shows.

Used to sort false positives by kind (star core, star wing, galaxy, low coverage, noisy
pixel, other) and to know how many exposures see each pixel's sky position.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PIXEL_KINDS", "coverage_map", "galaxy_model", "pixel_kinds", "sky_noise",
           "star_model"]

#: Label values of :func:`pixel_kinds`, in order of precedence (a pixel takes the first
#: that applies).
PIXEL_KINDS = ("other", "star_core", "star_wing", "galaxy", "noisy_pixel", "low_coverage")


def star_model(sim: Any, k: int) -> np.ndarray:
    """Noise-free stars (e/s per pixel) as exposure ``k`` sees them."""
    from daskod.datasets._imaging import _render_stars

    image = np.zeros(sim.exposures[k].shape, dtype=np.float32)
    x, y = sim.star_pixels(k)
    _render_stars(image, x, y, sim.stars["flux"], sim.psf_sigma)
    return image


def galaxy_model(sim: Any, k: int) -> np.ndarray:
    """Noise-free galaxies (e/s per pixel) as exposure ``k`` sees them."""
    from daskod.datasets._imaging import _render_galaxies

    image = np.zeros(sim.exposures[k].shape, dtype=np.float32)
    if sim.galaxies is not None and len(sim.galaxies):
        _render_galaxies(image, sim.exposures[k].wcs, sim.galaxies)
    return image


def sky_noise(sim: Any, k: int) -> float:
    """Noise (e/s) of one blank-sky pixel of exposure ``k``: read noise and sky Poisson."""
    texp = float(sim.exposures[k].exposure_time)
    return float(np.sqrt((sim.read_noise / texp) ** 2 + sim.sky_levels[k] / texp))


def coverage_map(sim: Any, k: int, *, step: int = 4) -> np.ndarray:
    """How many exposures (``k`` included) see the sky position of each pixel of exposure
    ``k``, evaluated every ``step`` pixels and spread over the ``step x step`` cells (the
    footprint edges are straight to a fraction of a pixel per ``step``)."""
    ny, nx = sim.exposures[k].shape
    ys, xs = np.mgrid[0:ny:step, 0:nx:step]
    ra, dec = sim.exposures[k].wcs.forward_transform(xs.astype(float), ys.astype(float))
    cover = np.zeros(xs.shape, dtype=np.int16)
    for other in sim.exposures:
        oy, ox = other.shape
        x, y = other.wcs.invert(ra, dec, with_bounding_box=False)
        cover += ((x >= -0.5) & (x < ox - 0.5) & (y >= -0.5) & (y < oy - 0.5))
    full = np.repeat(np.repeat(cover, step, axis=0), step, axis=1)
    return full[:ny, :nx]


def pixel_kinds(sim: Any, k: int, *, wing_sigma: float = 0.5, low_coverage: int = 3,
                coverage: np.ndarray | None = None) -> np.ndarray:
    """Label image (indices into :data:`PIXEL_KINDS`) of exposure ``k``.

    - ``star_core``: the 3x3 pixels around a star's centre;
    - ``star_wing``: elsewhere where the stars add more than ``wing_sigma`` times the sky
      noise;
    - ``galaxy``: where the galaxies do;
    - ``noisy_pixel``: pixels whose read-noise variance is inflated (the simulator's noisy
      pixels, whose SCI is that much noisier);
    - ``low_coverage``: sky positions seen by at most ``low_coverage`` exposures;
    - ``other``: the rest (blank sky).
    """
    shape = sim.exposures[k].shape
    noise = sky_noise(sim, k)
    labels = np.zeros(shape, dtype=np.int8)
    texp = float(sim.exposures[k].exposure_time)
    var_rn = np.asarray(sim.exposures[k].var_rnoise[...])
    cover = coverage_map(sim, k) if coverage is None else coverage
    labels[cover <= low_coverage] = 5
    with np.errstate(invalid="ignore"):
        labels[var_rn > 10.0 * (sim.read_noise / texp) ** 2] = 4
    labels[galaxy_model(sim, k) > wing_sigma * noise] = 3
    labels[star_model(sim, k) > wing_sigma * noise] = 2
    x, y = sim.star_pixels(k)
    ny, nx = shape
    for xc, yc in zip(np.round(x).astype(int), np.round(y).astype(int), strict=True):
        y0, y1, x0, x1 = max(yc - 1, 0), min(yc + 2, ny), max(xc - 1, 0), min(xc + 2, nx)
        if y0 < y1 and x0 < x1:
            labels[y0:y1, x0:x1] = 1
    return labels
