"""Seeded simulator of a dithered imaging observation with ground truth.

Sources live on the sky; each exposure renders them through its own distorted WCS, adds its
sky level, Poisson and read noise, bad pixels, saturated star cores and cosmic rays. The
truth (cosmic-ray pixels with their signal-to-noise, star positions) comes with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import erf

from daskod.datasets._pointing import dither_pointings, field_box
from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE, SATURATED

__all__ = ["SimulatedImaging", "make_dithered_imaging"]

CR_DTYPE = np.dtype([("y", np.int32), ("x", np.int32), ("amplitude", np.float32),
                     ("snr", np.float32), ("coverage", np.int16)])


@dataclass
class SimulatedImaging:
    """A simulated observation and its ground truth.

    Attributes
    ----------
    exposures : list of Exposure
        Inputs for :func:`daskod.detect_outliers` (numpy arrays, or zarr arrays with ``store=``).
    stars : numpy structured array
        One row per star: ``ra``, ``dec`` (deg), ``flux`` (e/s, total), ``peak`` (e/s in the
        brightest pixel, undersampled PSF), ``saturated`` (its core saturates).
    cr_pixels : list of numpy structured arrays
        Per exposure, every pixel a cosmic ray hit: ``y``, ``x``, ``amplitude`` (e/s added to
        SCI), ``snr`` (amplitude / ERR there), ``coverage`` (how many exposures see that sky
        position; a median needs >= 3 to reject the hit).
    pointing : tuple of float
        (ra, dec) of the field centre.
    sky_levels : list of float
        Sky level (e/s) of each exposure, also in ``Exposure.background_level``.
    read_noise : float
        Read noise per exposure in e-.
    psf_sigma : float
        Gaussian PSF sigma in pixels.
    """

    exposures: list[Exposure]
    stars: np.ndarray
    cr_pixels: list[np.ndarray]
    pointing: tuple[float, float]
    sky_levels: list[float]
    read_noise: float
    psf_sigma: float
    galaxies: np.ndarray = field(repr=False, default=None)

    def star_pixels(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Detector ``(x, y)`` of every star in exposure ``k`` (through its WCS inverse)."""
        x, y = self.exposures[k].wcs.invert(self.stars["ra"], self.stars["dec"],
                                            with_bounding_box=False)
        return np.asarray(x), np.asarray(y)

    def cr_mask(self, k: int) -> np.ndarray:
        """Boolean image of the pixels cosmic rays hit in exposure ``k``."""
        mask = np.zeros(self.exposures[k].shape, dtype=bool)
        crs = self.cr_pixels[k]
        mask[crs["y"], crs["x"]] = True
        return mask

    def coverage_map(self, k: int) -> np.ndarray:
        """Exposures that see the sky position of each pixel of exposure ``k``."""
        from daskod.datasets._imaging_truth import coverage_map

        return coverage_map(self, k)

    def pixel_kinds(self, k: int, **kwargs: Any) -> np.ndarray:
        """What each pixel of exposure ``k`` shows, as indices into
        ``daskod.datasets.PIXEL_KINDS`` (see :func:`daskod.datasets._imaging_truth.pixel_kinds`):
        star core, star wing, galaxy, low coverage, noisy pixel or other."""
        from daskod.datasets._imaging_truth import pixel_kinds

        return pixel_kinds(self, k, **kwargs)


def _pixel_integrated_gaussian(dx: np.ndarray, sigma: float) -> np.ndarray:
    s = sigma * math.sqrt(2.0)
    return 0.5 * (erf((dx + 0.5) / s) - erf((dx - 0.5) / s))


def _render_stars(scene: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
                  sigma: float) -> None:
    ny, nx = scene.shape
    for xc, yc, f in zip(x, y, flux, strict=True):
        radius = int(math.ceil(sigma * math.sqrt(2.0 * math.log(max(f, 2.0) / 1e-3)))) + 1
        x0, x1 = max(int(xc) - radius, 0), min(int(xc) + radius + 2, nx)
        y0, y1 = max(int(yc) - radius, 0), min(int(yc) + radius + 2, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = _pixel_integrated_gaussian(np.arange(x0, x1) - xc, sigma)
        gy = _pixel_integrated_gaussian(np.arange(y0, y1) - yc, sigma)
        scene[y0:y1, x0:x1] += (f * gy[:, None] * gx[None, :]).astype(np.float32)


def _render_galaxies(scene: np.ndarray, wcs: Any, galaxies: np.ndarray) -> None:
    """Elliptical exponential discs, evaluated at pixel centres in sky offsets (arcsec)."""
    ny, nx = scene.shape
    x, y = wcs.invert(galaxies["ra"], galaxies["dec"], with_bounding_box=False)
    for g, xc, yc in zip(galaxies, x, y, strict=True):
        radius = int(math.ceil(8 * g["r_pix"]))
        x0, x1 = max(int(xc) - radius, 0), min(int(xc) + radius + 2, nx)
        y0, y1 = max(int(yc) - radius, 0), min(int(yc) + radius + 2, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=float), np.arange(y0, y1, dtype=float))
        ra, dec = wcs.forward_transform(gx, gy)
        dra = (ra - g["ra"]) * math.cos(math.radians(g["dec"])) * 3600.0
        ddec = (dec - g["dec"]) * 3600.0
        c, s = math.cos(g["pa"]), math.sin(g["pa"])
        u = (c * dra + s * ddec) / g["r_arcsec"]
        v = (-s * dra + c * ddec) / (g["r_arcsec"] * g["q"])
        scene[y0:y1, x0:x1] += (g["sb0"] * np.exp(-np.hypot(u, v))).astype(np.float32)


def _cosmic_rays(rng: np.random.Generator, shape: tuple[int, int], n_events: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (y, x) and per-pixel signal-to-noise of single hits, clusters and tracks."""
    ny, nx = shape
    ys, xs, snrs = [], [], []
    for _ in range(n_events):
        snr = float(np.exp(rng.uniform(math.log(3.0), math.log(1000.0))))
        yc, xc = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        kind = rng.random()
        if kind < 0.5:
            py, px = np.array([0]), np.array([0])
        elif kind < 0.8:
            shape_kind = int(rng.integers(0, 3))
            if shape_kind == 0:
                py, px = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
            elif shape_kind == 1:
                py, px = np.mgrid[-1:2, -1:2]
                py, px = py.ravel(), px.ravel()
            else:
                py, px = np.array([0, -1, 1, 0, 0]), np.array([0, 0, 0, -1, 1])
        else:
            length = int(rng.integers(3, 13))
            angle = rng.uniform(0, math.pi)
            t = np.arange(length)
            py = np.round(t * math.sin(angle)).astype(int)
            px = np.round(t * math.cos(angle)).astype(int)
        pix = {(int(a), int(b)) for a, b in zip(yc + py, xc + px, strict=True)
               if 0 <= a < ny and 0 <= b < nx}
        for a, b in sorted(pix):
            ys.append(a)
            xs.append(b)
            snrs.append(snr * rng.uniform(0.5, 1.0))
    # One pixel hit twice keeps the stronger hit.
    order = np.lexsort((-np.asarray(snrs), np.asarray(xs), np.asarray(ys)))
    yx = np.stack([np.asarray(ys)[order], np.asarray(xs)[order]], axis=1)
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.any(yx[1:] != yx[:-1], axis=1)
    return yx[keep, 0], yx[keep, 1], np.asarray(snrs)[order][keep]


def make_dithered_imaging(
    n_exposures: int = 8,
    shape: tuple[int, int] = (2048, 2048),
    *,
    seed: int = 0,
    dither_px: float = 40.0,
    max_roll_deg: float = 0.5,
    pixel_scale_arcsec: float = 0.031,
    n_stars: int | None = None,
    n_galaxies: int | None = None,
    n_cosmic_rays: int | None = None,
    exposure_time: float = 300.0,
    read_noise: float = 15.0,
    full_well: float = 60000.0,
    psf_sigma: float = 0.8,
    cosmic_rays: bool = True,
    err_from_data: bool = False,
    pointing: tuple[float, float] = (150.1, 2.2),
    store: str | os.PathLike | None = None,
    roll_deg: float = 0.0,
    wcs_model: str = "simple",
    n_detectors: int = 1,
    background_subtracted: bool = False,
) -> SimulatedImaging:
    """Simulate a dithered imaging observation (one group per dither position).

    Every detector is an :class:`~daskod.Exposure` carrying its WCS and the JWST pointing
    metadata that describe it (``Exposure.wcsinfo``: ``ra_ref, dec_ref, roll_ref, v2_ref,
    v3_ref, v3yangle, vparity``), which :func:`~daskod.datasets.write_cal_files` stores in
    ``meta.wcsinfo``.

    Parameters
    ----------
    n_exposures : int
        Exposures (dither positions).
    shape : tuple of int
        Detector ``(ny, nx)``.
    seed : int
        Seed of ``numpy.random.default_rng``: the same seed gives bitwise the same data.
    dither_px, max_roll_deg : float
        Dither offsets (uniform within +-dither_px) and rolls (within +-max_roll_deg).
    n_stars, n_galaxies, n_cosmic_rays : int, optional
        Default: 400, 8 and 700 per 2048^2 detector, scaled with the area (at least 10, 1, 10).
    exposure_time, read_noise, full_well : float
        Seconds, e- per exposure, e- at saturation.
    psf_sigma : float
        Gaussian PSF sigma in pixels (0.8: undersampled, as NIRCam short-wave).
    cosmic_rays : bool
        Inject cosmic rays (False gives the same data without them, for tests).
    err_from_data : bool
        VAR_POISSON (and ERR) from the measured signal, noise and cosmic rays included
        (``max(SCI, 0) / exposure_time``), as a ramp fit reports it: a cosmic ray, or an
        upward noise fluctuation, then inflates its own pixel's ERR. Default False: from the
        noise-free scene (the same data as before this option). The truth's ``snr`` is the
        hit's amplitude over the noise-free ERR either way.
    pointing : tuple of float
        Field centre (ra, dec) in degrees.
    store : path, optional
        Write each exposure's arrays into a Zarr v3 group there, one exposure at a time, and
        return zarr arrays instead of numpy (memory stays at about one exposure).
    roll_deg : float
        Roll of the whole pattern (added to each exposure's small roll).
    wcs_model : {"simple", "telescope"}
        ``"simple"``: :func:`~daskod.datasets.make_detector_wcs` (tangent plane at the
        detector centre); ``"telescope"``: :func:`~daskod.datasets.make_telescope_wcs`, built
        from the pointing metadata through V2V3 as the JWST pipeline does, with the
        reference point off the detector centre (so the orientation the metadata give and
        the WCS's own at the detector centre differ slightly, as on real data).
    n_detectors : int
        Detectors per exposure (``wcs_model="telescope"``), side by side along x; the
        detectors of one exposure share its group id and sky level.
    background_subtracted : bool
        Subtract each exposure's sky level from SCI (``background_level`` still records it).

    Returns
    -------
    SimulatedImaging
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    area = ny * nx / 2048.0**2
    n_stars = n_stars if n_stars is not None else max(10, int(round(400 * area)))
    n_galaxies = n_galaxies if n_galaxies is not None else max(1, int(round(8 * area)))
    n_cr = n_cosmic_rays if n_cosmic_rays is not None else max(10, int(round(700 * area)))
    ra0, dec0 = pointing
    scale_deg = pixel_scale_arcsec / 3600.0
    cosd = math.cos(math.radians(dec0))

    plan = {"wcs_model": wcs_model, "pointing": pointing, "roll_deg": roll_deg,
            "shape": shape, "pixel_scale_arcsec": pixel_scale_arcsec,
            "n_detectors": n_detectors}
    # Sources on the sky, inside the common field.
    half_x = (nx / 2.0 - 8) * scale_deg
    half_y = (ny / 2.0 - 8) * scale_deg
    if wcs_model == "simple" and roll_deg == 0.0:
        box = (ra0 - half_x / cosd, ra0 + half_x / cosd, dec0 - half_y, dec0 + half_y)
    else:  # the undithered detectors' footprints
        base = dither_pointings(np.zeros((1, 2)), np.zeros(1), **plan)
        box = field_box(base, shape, 8.0, pixel_scale_arcsec)
    n_stars *= n_detectors
    n_galaxies *= n_detectors
    stars = np.zeros(n_stars, dtype=[("ra", "f8"), ("dec", "f8"), ("flux", "f8"),
                                     ("peak", "f8"), ("saturated", "?")])
    stars["ra"] = _uniform(rng, box[0], box[1], n_stars)
    stars["dec"] = _uniform(rng, box[2], box[3], n_stars)
    # Power law in flux, from ~ the noise to far above saturation.
    stars["flux"] = 2.0 * (1.0 - rng.random(n_stars)) ** (-1.0 / 0.6)
    stars["flux"] = np.minimum(stars["flux"], 2e5)
    peak_frac = _pixel_integrated_gaussian(np.array([0.0]), psf_sigma)[0] ** 2
    stars["peak"] = stars["flux"] * peak_frac
    galaxies = np.zeros(n_galaxies, dtype=[("ra", "f8"), ("dec", "f8"), ("sb0", "f8"),
                                           ("r_arcsec", "f8"), ("r_pix", "f8"), ("q", "f8"),
                                           ("pa", "f8")])
    galaxies["ra"] = _uniform(rng, box[0], box[1], n_galaxies)
    galaxies["dec"] = _uniform(rng, box[2], box[3], n_galaxies)
    galaxies["r_pix"] = rng.uniform(3.0, 15.0, n_galaxies)
    galaxies["r_arcsec"] = galaxies["r_pix"] * pixel_scale_arcsec
    galaxies["sb0"] = np.exp(rng.uniform(math.log(0.5), math.log(20.0), n_galaxies))
    galaxies["q"] = rng.uniform(0.3, 1.0, n_galaxies)
    galaxies["pa"] = rng.uniform(0, math.pi, n_galaxies)

    # Pointings: dithers in detector pixels around the field centre, small rolls.
    offsets = rng.uniform(-dither_px, dither_px, size=(n_exposures, 2))
    rolls = rng.uniform(-max_roll_deg, max_roll_deg, n_exposures)
    group_sky = list(rng.uniform(0.5, 1.5, n_exposures))
    pointings = dither_pointings(offsets, rolls, **plan)
    wcs_list = [p.wcs for p in pointings]
    sky_levels = [group_sky[p.exposure] for p in pointings]
    exposures: list[Exposure] = []
    cr_truth: list[np.ndarray] = []
    var_rn = (read_noise / exposure_time) ** 2
    for k, (wcs, where) in enumerate(zip(wcs_list, pointings, strict=True)):
        exp_rng = np.random.default_rng(
            [seed, k] if n_detectors == 1 else [seed, where.exposure, where.detector])
        scene = np.zeros(shape, dtype=np.float32)
        sx, sy = wcs.invert(stars["ra"], stars["dec"], with_bounding_box=False)
        _render_stars(scene, np.asarray(sx), np.asarray(sy), stars["flux"], psf_sigma)
        _render_galaxies(scene, wcs, galaxies)
        model = scene + np.float32(sky_levels[k])
        electrons = model.astype(np.float64) * exposure_time
        counts = exp_rng.poisson(electrons).astype(np.float32)
        counts += exp_rng.normal(0.0, read_noise, size=shape).astype(np.float32)
        sci = counts / np.float32(exposure_time)
        var_poisson = (model / np.float32(exposure_time)).astype(np.float32)
        var_rnoise = np.full(shape, var_rn, dtype=np.float32)
        noisy = exp_rng.random(shape) < 2e-4
        var_rnoise[noisy] *= 100.0
        sci[noisy] += exp_rng.normal(0.0, 10 * math.sqrt(var_rn), int(noisy.sum())).astype(
            np.float32)
        err = np.sqrt(var_rnoise + var_poisson).astype(np.float32)
        dq = np.zeros(shape, dtype=np.uint32)
        dead = exp_rng.random(shape) < 1e-4
        dq[dead] = DO_NOT_USE
        saturated = electrons > full_well
        dq[saturated] |= DO_NOT_USE | SATURATED
        if k == 0:
            stars["saturated"] = stars["peak"] * exposure_time > full_well
        crs = np.zeros(0, dtype=CR_DTYPE)
        if cosmic_rays:
            cy, cx, snr = _cosmic_rays(exp_rng, shape, n_cr)
            usable = (dq[cy, cx] & DO_NOT_USE) == 0
            cy, cx, snr = cy[usable], cx[usable], snr[usable]
            amp = (snr * err[cy, cx]).astype(np.float32)
            sci[cy, cx] += amp
            crs = np.zeros(cy.size, dtype=CR_DTYPE)
            crs["y"], crs["x"], crs["amplitude"], crs["snr"] = cy, cx, amp, snr
            ra, dec = wcs.forward_transform(cx.astype(float), cy.astype(float))
            cover = np.zeros(cy.size, dtype=np.int16)
            for other in wcs_list:
                ox, oy = other.invert(ra, dec, with_bounding_box=False)
                cover += ((ox >= -0.5) & (ox < nx - 0.5) & (oy >= -0.5) & (oy < ny - 0.5))
            crs["coverage"] = cover
        if err_from_data:
            var_poisson = (np.maximum(sci, 0) / np.float32(exposure_time)).astype(np.float32)
            err = np.sqrt(var_rnoise + var_poisson).astype(np.float32)
        if background_subtracted:
            sci -= np.float32(sky_levels[k])
        bad = (dq & DO_NOT_USE) != 0
        for arr in (sci, err, var_rnoise, var_poisson):
            arr[bad] = np.nan
        arrays = {"sci": sci, "err": err, "dq": dq, "var_rnoise": var_rnoise,
                  "var_poisson": var_poisson}
        if store is not None:
            arrays = _write_zarr(os.fspath(store), k, arrays)
        g = where.exposure
        name = f"sim_{g + 1:05d}_nrcb{where.detector + 1}"
        exposures.append(Exposure(
            **arrays, wcs=wcs, group_id=f"jw01234001001_02101_{g + 1:05d}",
            exposure_time=exposure_time, background_level=float(sky_levels[k]),
            background_subtracted=background_subtracted, name=name,
            detector=f"NRCB{where.detector + 1}", instrument="NIRCAM",
            meta={"dither_px": tuple(offsets[g]), "roll_deg": float(roll_deg + rolls[g])},
            wcsinfo=dict(where.wcsinfo)))
        cr_truth.append(crs)
    return SimulatedImaging(exposures=exposures, stars=stars, cr_pixels=cr_truth,
                            pointing=(ra0, dec0), sky_levels=[float(s) for s in sky_levels],
                            read_noise=read_noise, psf_sigma=psf_sigma, galaxies=galaxies)


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` uniform draws in [lo, hi) (the same draws as ``lo + rng.uniform(0, hi - lo)``
    up to rounding, so the default field keeps its sources)."""
    half = (hi - lo) / 2.0
    return (lo + half) + rng.uniform(-half, half, n)


def _write_zarr(root: str, k: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    import zarr

    out = {}
    for name, arr in arrays.items():
        z = zarr.create_array(store=root, name=f"{k}/{name}", shape=arr.shape, dtype=arr.dtype,
                              chunks=(min(512, arr.shape[0]), min(512, arr.shape[1])),
                              compressors=None, fill_value=0 if name == "dq" else np.nan,
                              overwrite=True)
        z[...] = arr
        out[name] = z
    return out
