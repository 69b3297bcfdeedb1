"""Ground-truth maps of a simulated imaging observation: what each detector pixel shows.

Used to sort false positives by kind (star core, star wing, galaxy, low coverage, noisy
pixel, other) and to know how many exposures see each pixel's sky position.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PIXEL_KINDS", "SNR_BINS", "coverage_map", "galaxy_model", "pixel_kinds",
           "score_by_kind", "sky_noise", "star_model"]

#: Label values of :func:`pixel_kinds`, in order of precedence (a pixel takes the first
#: that applies).
PIXEL_KINDS = ("other", "star_core", "star_wing", "galaxy", "noisy_pixel", "low_coverage")
#: Signal-to-noise bins of cosmic-ray pixels for recall (lower bound included).
SNR_BINS = ((3.0, 5.0), (5.0, 10.0), (10.0, float("inf")))


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


def score_by_kind(new: np.ndarray, crs: np.ndarray, kinds: np.ndarray, *,
                  min_coverage: int = 2) -> dict[str, Any]:
    """Found cosmic-ray pixels per signal-to-noise bin and false positives per kind of pixel,
    for one exposure (add them up over exposures and seeds).

    Parameters
    ----------
    new : ndarray of bool
        Pixels newly flagged as outliers.
    crs : structured ndarray
        The simulator's cosmic-ray pixels of the exposure (``y``, ``x``, ``snr``,
        ``coverage``).
    kinds : ndarray of int
        Its label image (:func:`pixel_kinds`).
    min_coverage : int
        Recall counts hits whose sky position at least this many exposures see (the median
        of one exposure is that exposure: no method can find a hit seen once).

    Returns
    -------
    dict
        ``cr_total`` and ``cr_found`` (one count per :data:`SNR_BINS` bin) and ``fp`` (one
        count per :data:`PIXEL_KINDS` kind).
    """
    new = np.asarray(new, dtype=bool)
    seen = crs["coverage"] >= min_coverage
    total, found = [], []
    for low, high in SNR_BINS:
        sel = seen & (crs["snr"] >= low) & (crs["snr"] < high)
        total.append(int(np.count_nonzero(sel)))
        found.append(int(np.count_nonzero(new[crs["y"][sel], crs["x"][sel]])))
    truth = np.zeros(new.shape, dtype=bool)
    truth[crs["y"], crs["x"]] = True
    fp = np.bincount(np.asarray(kinds)[new & ~truth].astype(np.int64),
                     minlength=len(PIXEL_KINDS))
    return {"cr_total": total, "cr_found": found, "fp": [int(v) for v in fp]}
