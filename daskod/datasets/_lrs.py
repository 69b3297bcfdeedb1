"""Seeded simulator of MIRI LRS-like fixed-slit exposures (whole ``ImageModel`` images).

The slit's spectrum runs along detector y (``DISPAXIS = 2``), blue at the top (wavelength
decreasing with y, a tabulated slightly non-linear solution, NaN past its ends); the slit's
length runs along x with a gently curved trace. The WCS (:func:`make_lrs_wcs`) maps
``detector -> world (ra, dec, wavelength)`` inside a bounding box around the slit's image and
is NaN outside it. Nods move the slit along its length on the sky (A/B nods by default).

Scene: sky (continuum plus a line, uniform along the slit) and a point source whose width
grows with wavelength (continuum and emission lines). The rest of the detector holds a low
background with noise and cosmic rays: the reference never flags there (the pixel map is NaN
outside the bounding box), which the truth lets tests check. Noise and defects as
:mod:`daskod.datasets._spectra`.
"""

from __future__ import annotations

import numpy as np

from daskod.datasets._slit_wcs import make_lrs_wcs
from daskod.datasets._slits import SlitSimulation, SpecProduct, observation_group_id
from daskod.datasets._spectra import DetectorNoise, Spectrum, observe, pixel_profile
from daskod.exposure import Exposure

__all__ = ["make_lrs_exposures"]

_FIELD = (80.4875, -69.4981)   # LMC


def make_lrs_exposures(
    n_nods: int = 2,
    *,
    shape: tuple[int, int] = (256, 72),
    nod_arcsec: float = 1.0,
    noise: DetectorNoise | None = None,
    exposure_time: float = 500.0,
    seed: int = 0,
) -> SlitSimulation:
    """Simulate nodded MIRI LRS-like fixed-slit exposures with truth.

    Parameters
    ----------
    n_nods : int
        Exposures; nod offsets spread evenly over ``+-nod_arcsec`` along the slit.
    shape : tuple of int
        Detector image ``(ny, nx)`` (real data: 1024 x 1032); the slit's image fills most of
        the rows and ~44 columns.
    nod_arcsec : float
        Half the nod throw along the slit.
    noise : DetectorNoise, optional
        Noise and defect rates.
    exposure_time : float
        Seconds.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    SlitSimulation
        One ``ImageModel`` product per nod (``exp_type`` ``MIR_LRS-FIXEDSLIT``).
    """
    rng = np.random.default_rng(seed)
    noise = noise or DetectorNoise(read_noise=0.05, gain_factor=0.01)
    ny, nx = shape
    if ny < 40 or nx < 56:
        msg = f"shape must be at least (40, 56) to hold the slit's image, got {shape}."
        raise ValueError(msg)
    # The slit is lit over +-22.5 columns around its trace (~4.7" at 0.11"/px); the WCS
    # bounding box sits inside that (as on the real detector), so no unlit pixel is drizzled.
    half_slit = 22.5
    xc = nx / 2.0 - 0.3
    bbox = ((xc - 20.0, xc + 20.0), (5.5, ny - 8.5))
    rows = np.arange(4.0, ny - 6.0, 6.0)
    t = (rows - rows[0]) / (rows[-1] - rows[0])
    lam_nodes = 14.2 - 9.0 * t + 0.6 * t * (1.0 - t)
    curvature = float(rng.uniform(0.3, 0.9))
    h = ny / 2.0
    trace = (xc + curvature, -2.0 * curvature / h, curvature / h ** 2)
    offsets = [0.0] if n_nods == 1 else list(np.linspace(-nod_arcsec, nod_arcsec, n_nods))
    lines = tuple((float(rng.uniform(6.0, 13.0)), float(rng.uniform(2.0, 8.0)),
                   float(rng.uniform(0.03, 0.06))) for _ in range(2))
    source = Spectrum(level=float(rng.uniform(2.0, 5.0)), slope=-1.5, pivot=8.0, lines=lines)
    sky = Spectrum(level=0.8, slope=1.2, pivot=8.0, lines=((11.3, 0.3, 0.05),))
    hot = rng.random(shape) < 1.0e-3
    pa = float(rng.uniform(0.0, 360.0))
    src_along = float(rng.uniform(-0.2, 0.2))
    sim = SlitSimulation(products=[], cosmic_rays={}, cr_snr={}, hot_pixels={},
                         sources={"all": {"kind": "POINT", "offset_arcsec": src_along}})
    base = make_lrs_wcs(shape=shape, bounding_box=bbox, trace=trace,
                        wavelength_nodes=(rows, lam_nodes), ra=_FIELD[0], dec=_FIELD[1],
                        position_angle=pa)
    src = _along_slit(base, xc + src_along / 0.11, h)
    for k, nod in enumerate(offsets):
        ra_k, dec_k = _along_slit(base, xc + nod / 0.11, h)
        wcs = make_lrs_wcs(shape=shape, bounding_box=bbox, trace=trace,
                           wavelength_nodes=(rows, lam_nodes), ra=ra_k, dec=dec_k,
                           position_angle=pa)
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
        ra, _, lam = wcs(xx, yy)
        inside = np.isfinite(lam) & np.isfinite(ra)
        lam_f = np.where(inside, lam, 8.0)
        row_lam = np.interp(np.arange(ny), rows, lam_nodes)
        x_src, _ = wcs.invert(np.full(ny, src[0]), np.full(ny, src[1]), row_lam,
                              with_bounding_box=False)
        x_src = np.asarray(x_src)[:, None]
        along = np.abs(xx - (trace[0] + trace[1] * yy + trace[2] * yy ** 2))
        in_slit = inside & (along <= half_slit)
        signal = np.where(in_slit, sky(lam_f) + source(lam_f)
                          * pixel_profile(xx - x_src, 0.9 * lam_f / 8.0), 0.2)
        img = observe(signal, np.ones(shape, dtype=bool), rng, noise, hot=hot,
                      hot_excess=1.0)
        obs = {"program_number": "02345", "observation_number": "002",
               "visit_number": "001", "visit_group": "02", "sequence_id": "1",
               "activity_id": "01", "exposure_number": f"{k + 1:05d}"}
        stem = f"jw02345002001_02101_{k + 1:05d}_mirimage"
        item = Exposure(sci=img.sci, err=img.err, dq=img.dq, wcs=wcs,
                        var_rnoise=img.var_rnoise, var_poisson=img.var_poisson,
                        var_flat=img.var_flat, group_id=observation_group_id(obs),
                        exposure_time=exposure_time, background_level=None,
                        background_subtracted=False, name=stem, detector="MIRIMAGE",
                        instrument="MIRI",
                        meta={"filename": f"{stem}_cal.fits", "exp_type": "MIR_LRS-FIXEDSLIT",
                              "dispersion_direction": 2, "bunit_data": "MJy/sr"})
        sim.cosmic_rays[stem] = img.cosmic_rays
        sim.cr_snr[stem] = img.cr_snr
        sim.hot_pixels[stem] = hot.copy()
        sim.products.append(SpecProduct(
            filename=f"{stem}_cal.fits", model_type="ImageModel", exp_type="MIR_LRS-FIXEDSLIT",
            instrument="MIRI", detector="MIRIMAGE", observation=obs,
            exposure_time=exposure_time, items=[item], meta={"filter": "P750L"}))
    return sim


def _along_slit(wcs, x: float, y: float) -> tuple[float, float]:
    ra, dec, _ = wcs(x, y, with_bounding_box=False)
    return float(ra), float(dec)
