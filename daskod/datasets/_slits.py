"""Seeded simulator of NIRSpec-like slit spectroscopy (fixed slits and MOS) with ground truth.

Each exposure (one nod position, one detector) is a product holding several slits, as a
``MultiSlitModel`` does. Every slit is a small detector cut-out (``xstart``/``ystart``,
1-based as JWST stores them) with a real ``detector -> slit_frame -> world`` gwcs
(:func:`~daskod.datasets._slit_wcs.make_nirspec_slit_wcs`): dispersion along x with a
slightly non-linear, piecewise-linear (tabulated) wavelength solution, a curved trace, NaN
wavelengths past the grating's range at the red end. Nodding moves the slit along its length
on the sky, so a source sits at a different row in every nod; on two detectors the
wavelengths continue across the gap and a source's two cut-outs of one exposure form one
group (the reference drizzles them together).

Scene per slit: sky (a continuum, uniform along the slit), and a point source (an integrated
Gaussian across the slit, width growing with wavelength) or an extended source (a wide
Gaussian), each with a power-law continuum and Gaussian emission lines. Small per-exposure
wavelength shifts (as the pipeline's wavelength correction makes for point sources) make the
exposures' wavelength grids differ. Noise, cosmic rays, unusable and hot pixels: see
:mod:`daskod.datasets._spectra`. Rows of a cut-out outside the slit's length and columns
without wavelength are NaN with DQ ``DO_NOT_USE | NON_SCIENCE`` (513).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskod.datasets._slit_wcs import make_nirspec_slit_wcs
from daskod.datasets._spectra import DetectorNoise, Spectrum, observe, pixel_profile
from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE, NON_SCIENCE

__all__ = ["SpecProduct", "SlitSimulation", "make_nirspec_slits", "observation_group_id"]

_FS_NAMES = ("S200A1", "S200A2", "S400A1", "S1600A1", "S200B1")
_FS_HALF_LENGTH = {"S200A1": 1.6, "S200A2": 1.6, "S400A1": 1.9, "S1600A1": 0.8,
                   "S200B1": 1.6}
_FIELD = (53.1625, -27.7914)   # GOODS-S
_PROGRAM = "01234"


def observation_group_id(obs: dict[str, str]) -> str:
    """The reference's group id built from ``meta.observation`` (one per exposure)."""
    return (f"jw{obs['program_number']}{obs['observation_number']}{obs['visit_number']}"
            f"_{obs['visit_group']}{obs['sequence_id']}{obs['activity_id']}"
            f"_{obs['exposure_number']}")


@dataclass
class SpecProduct:
    """One simulated level-2 product (``*_cal.fits``): several slits or one whole image."""

    filename: str
    model_type: str                 # "MultiSlitModel" or "ImageModel"
    exp_type: str
    instrument: str
    detector: str
    observation: dict[str, str]
    exposure_time: float
    items: list[Exposure]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlitSimulation:
    """Simulated slit spectroscopy with truth.

    Attributes
    ----------
    products : list of SpecProduct
        In association order (nod, then detector).
    cosmic_rays, cr_snr, hot_pixels : dict of str -> ndarray
        Per item (``Exposure.name``): the injected cosmic rays, their amplitude over the local
        noise, and the hot pixels (DQ 0, the same detector pixels in every nod).
    sources : dict
        Per source key: sky position and kind.
    """

    products: list[SpecProduct]
    cosmic_rays: dict[str, np.ndarray]
    cr_snr: dict[str, np.ndarray]
    hot_pixels: dict[str, np.ndarray]
    sources: dict[str, dict[str, Any]]

    @property
    def exposures(self) -> list[Exposure]:
        """Every slit (or image) of every product, in product order."""
        return [item for p in self.products for item in p.items]

    def by_source(self) -> dict[str, list[Exposure]]:
        """The per-source runs, as the reference's ``exp_to_source`` orders them: products in
        order, slits in order; keyed by ``source_name`` when set, else ``source_id``."""
        out: dict[str, list[Exposure]] = {}
        for item in self.exposures:
            out.setdefault(source_key(item), []).append(item)
        return out


def source_key(item: Exposure) -> str:
    """The key a slit is grouped by: ``source_name`` if set (MOS), else ``source_id``; a
    whole image (MIRI LRS) belongs to the one source ``"all"``."""
    if item.meta.get("source_id") is None and item.meta.get("source_name") is None:
        return "all"
    name = item.meta.get("source_name")
    if name is not None and str(name).strip():
        return str(name)
    return str(item.meta.get("source_id"))


@dataclass(frozen=True)
class _Slit:
    name: str
    source_id: int
    source_name: str | None
    source_type: str
    shape: tuple[int, int]
    ystart: int
    xstart: int
    wave_shift: float
    trace: tuple[float, float, float]
    pps: float
    unit_arcsec: float
    half_length: float
    ra: float
    dec: float
    src_offset: float
    detectors: tuple[int, ...]


def _layouts(mode: str, n_slits: int, n_columns: int, n_detectors: int,
             rng: np.random.Generator) -> tuple[list[_Slit], float]:
    slits = []
    pa = 37.0
    row = 1
    for s in range(n_slits):
        if mode == "fixed_slit":
            name = _FS_NAMES[s % len(_FS_NAMES)]
            source_id, source_name = s + 1, None
            kind = "EXTENDED" if s == 1 else "POINT"
            pps, unit, half = 10.0, 1.0, _FS_HALF_LENGTH[name]
            ra, dec = _FIELD[0] + 0.0005 * s, _FIELD[1] + 0.0003 * s
        else:
            name = str(11 + 13 * s)
            source_id = 100 + 7 * s
            source_name = f"{_PROGRAM}_{source_id}"
            kind = "EXTENDED" if s % 3 == 1 else "POINT"
            pps, unit, half = 5.3, 0.53, 1.5
            ra = _FIELD[0] + rng.uniform(-0.02, 0.02)
            dec = _FIELD[1] + rng.uniform(-0.02, 0.02)
        height = 2 * half * pps
        curvature = 1.5 * rng.uniform(0.5, 1.0) * (1 if s % 2 else -1)
        slope = rng.uniform(-0.004, 0.004)
        ny = int(math.ceil(height + 2 * abs(curvature) + abs(slope) * n_columns + 6))
        # T(x) = centre + slope (x - h) + curvature ((x - h) / h)**2, centred in the cut-out.
        centre = (ny - 1) / 2.0 - curvature / 2.0 + rng.uniform(-0.4, 0.4)
        h = n_columns / 2.0
        trace = (centre - slope * h + curvature, slope - 2.0 * curvature / h, curvature / h**2)
        dets = tuple(range(n_detectors))
        if n_detectors > 1 and mode == "mos" and s == n_slits - 1 and n_slits > 1:
            dets = (0,)
        shift = 0.0 if mode == "fixed_slit" else float(rng.uniform(-30.0, 30.0))
        slits.append(_Slit(name=name, source_id=source_id, source_name=source_name,
                           source_type=kind, shape=(ny, n_columns), ystart=row,
                           xstart=int(41 + round(shift)), wave_shift=shift,
                           trace=trace, pps=pps, unit_arcsec=unit, half_length=half,
                           ra=ra, dec=dec, src_offset=float(rng.uniform(-0.15, 0.15)) * half,
                           detectors=dets))
        row += ny + 8
    return slits, pa


def _dispersion(n_columns: int, gap: int) -> tuple[float, float, float]:
    """``lambda(X) = l0 + a X + b X**2`` (micron) on the two-detector column axis X."""
    total = 2 * n_columns + gap
    return 0.97, 0.75 / total, 0.12 / total ** 2


def _nod_offsets(n_nods: int, step: float) -> list[float]:
    if n_nods == 1:
        return [0.0]
    if n_nods == 3:
        return [0.0, step, -step]
    return list(np.linspace(-step, step, n_nods))


def _spectra(slit: _Slit, rng: np.random.Generator, lam_range: tuple[float, float]
             ) -> tuple[Spectrum, Spectrum]:
    lo, hi = lam_range
    lines = [(float(rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo))),
              float(rng.uniform(3.0, 25.0)), float(rng.uniform(0.0012, 0.003)))
             for _ in range(int(rng.integers(1, 4)))]
    level = float(rng.uniform(2.0, 8.0)) if slit.source_type == "POINT" else float(
        rng.uniform(0.6, 2.0))
    source = Spectrum(level=level, slope=float(rng.uniform(-2.0, 0.5)), pivot=1.3,
                      lines=tuple(lines))
    sky = Spectrum(level=0.35, slope=0.8, pivot=1.3, lines=((lo + 0.61 * (hi - lo), 0.4,
                                                             0.0015),))
    return source, sky


def make_nirspec_slits(
    mode: str = "fixed_slit",
    *,
    n_nods: int = 3,
    n_slits: int | None = None,
    n_detectors: int = 1,
    n_columns: int = 240,
    wavelength_jitter: float = 0.25,
    noise: DetectorNoise | None = None,
    exposure_time: float = 1000.0,
    seed: int = 0,
) -> SlitSimulation:
    """Simulate nodded NIRSpec-like fixed-slit or MOS exposures with truth.

    Parameters
    ----------
    mode : {"fixed_slit", "mos"}
        ``NRS_FIXEDSLIT`` (slits S200A1, S200A2, ...: a point source in the first, an
        extended source in the second; nods of 1 arcsec) or ``NRS_MSASPEC`` (3-shutter
        slitlets, one source each with a ``source_name``, nods of one shutter).
    n_nods : int
        Exposures (nod positions); each is its own group.
    n_slits : int, optional
        Slits per exposure; default 2 (fixed slit) or 4 (MOS).
    n_detectors : int
        1 (NRS1) or 2 (NRS1 and NRS2: wavelengths continue on NRS2; one MOS slit lands on
        NRS1 only).
    n_columns : int
        Cut-out length along the dispersion (real data: ~2048); the cut-out height follows
        from the slit length (~20 rows MOS, ~40 fixed slit).
    wavelength_jitter : float
        Per-exposure wavelength shifts, in pixels (uniform in +-jitter).
    noise : DetectorNoise, optional
        Noise and defect rates.
    exposure_time : float
        Seconds.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    SlitSimulation
    """
    if mode not in ("fixed_slit", "mos"):
        msg = f"mode must be 'fixed_slit' or 'mos', got {mode!r}."
        raise ValueError(msg)
    if n_detectors not in (1, 2):
        msg = f"n_detectors must be 1 or 2, got {n_detectors}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    noise = noise or DetectorNoise()
    n_slits = n_slits or (2 if mode == "fixed_slit" else 4)
    gap = 60
    slits, pa = _layouts(mode, n_slits, n_columns, n_detectors, rng)
    l0, a, b = _dispersion(n_columns, gap)
    lam_range = (l0, l0 + a * (2 * n_columns + gap) + b * (2 * n_columns + gap) ** 2)
    spectra = {s.name: _spectra(s, rng, lam_range) for s in slits}
    hot = {}
    for s in slits:
        for d in s.detectors:
            hot[(s.name, d)] = rng.random(s.shape) < 1.5e-3
    # Nods of 1 arcsec (fixed slit, slit units are arcsec) or one shutter (MOS).
    nods = _nod_offsets(n_nods, 1.0)
    exp_type = "NRS_FIXEDSLIT" if mode == "fixed_slit" else "NRS_MSASPEC"
    sim = SlitSimulation(products=[], cosmic_rays={}, cr_snr={}, hot_pixels={}, sources={})
    for s in slits:
        sim.sources[s.source_name or str(s.source_id)] = {
            "slit": s.name, "kind": s.source_type, "offset_units": s.src_offset}
    for k, nod in enumerate(nods):
        jitter = float(rng.uniform(-wavelength_jitter, wavelength_jitter))
        obs = {"program_number": _PROGRAM, "observation_number": "001", "visit_number": "001",
               "visit_group": "03", "sequence_id": "1", "activity_id": "01",
               "exposure_number": f"{k + 1:05d}"}
        for d in range(n_detectors):
            det = f"NRS{d + 1}"
            stem = f"jw{_PROGRAM}001001_03101_{k + 1:05d}_{det.lower()}"
            items = []
            for s in slits:
                if d not in s.detectors:
                    continue
                item = _observe_slit(s, d, nod, jitter, pa, (l0, a, b), n_columns + gap,
                                     spectra[s.name], hot[(s.name, d)], rng, noise)
                item.name = f"{stem}_{s.name.lower()}"
                item.group_id = observation_group_id(obs)
                item.exposure_time = exposure_time
                item.detector = det
                item.meta.update({"filename": f"{stem}_cal.fits", "exp_type": exp_type})
                sim.cosmic_rays[item.name] = item.meta.pop("_cr")
                sim.cr_snr[item.name] = item.meta.pop("_cr_snr")
                sim.hot_pixels[item.name] = hot[(s.name, d)].copy()
                items.append(item)
            sim.products.append(SpecProduct(
                filename=f"{stem}_cal.fits", model_type="MultiSlitModel", exp_type=exp_type,
                instrument="NIRSPEC", detector=det, observation=obs,
                exposure_time=exposure_time, items=items,
                meta={"grating": "G140M", "filter": "F100LP"}))
    return sim


def _observe_slit(s: _Slit, det: int, nod: float, jitter: float, pa: float,
                  disp: tuple[float, float, float], det_step: int,
                  spectra: tuple[Spectrum, Spectrum], hot: np.ndarray,
                  rng: np.random.Generator, noise: DetectorNoise) -> Exposure:
    ny, nx = s.shape
    l0, a, b = disp
    nodes = np.arange(-1.0, nx - 2.0, 7.0)
    big_x = nodes + det * det_step + s.wave_shift + 40.0 + jitter
    lam_nodes = l0 + a * big_x + b * big_x ** 2
    base = make_nirspec_slit_wcs(shape=s.shape, trace=s.trace, pixels_per_unit=s.pps,
                                 wavelength_nodes=(nodes, lam_nodes), ra=s.ra, dec=s.dec,
                                 position_angle=pa, unit_arcsec=s.unit_arcsec)
    # This nod's slit centre: the base slit point ``nod`` units along the slit.
    ra_k, dec_k, _ = base.get_transform("slit_frame", "world")(0.0, nod, 1.0)
    wcs = make_nirspec_slit_wcs(shape=s.shape, trace=s.trace, pixels_per_unit=s.pps,
                                wavelength_nodes=(nodes, lam_nodes), ra=float(ra_k),
                                dec=float(dec_k), position_angle=pa,
                                unit_arcsec=s.unit_arcsec)
    src_ra, src_dec, _ = base.get_transform("slit_frame", "world")(0.0, s.src_offset, 1.0)
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    _, ys, lam = wcs.get_transform("detector", "slit_frame")(x, y)
    _, ys_src, _ = wcs.get_transform("world", "slit_frame")(src_ra, src_dec, 1.0)
    usable = np.isfinite(lam) & (np.abs(ys) <= s.half_length)
    offset = (ys - ys_src) * s.pps
    source, sky = spectra
    lam_f = np.where(np.isfinite(lam), lam, 1.0)
    if s.source_type == "POINT":
        profile = pixel_profile(offset, 0.75 * lam_f / 1.3)
    else:
        profile = 0.35 * pixel_profile(offset, 4.0) * 4.0
    signal = source(lam_f) * profile + sky(lam_f)
    img = observe(signal, usable, rng, noise, hot=hot, hot_excess=1.5,
                  unusable_dq=DO_NOT_USE | NON_SCIENCE)
    meta = {"slit_name": s.name, "source_id": s.source_id, "source_name": s.source_name,
            "source_type": s.source_type, "xstart": s.xstart, "ystart": s.ystart + 0,
            "xsize": nx, "ysize": ny, "dispersion_direction": 1, "bunit_data": "MJy/sr",
            "_cr": img.cosmic_rays, "_cr_snr": img.cr_snr}
    return Exposure(sci=img.sci, err=img.err, dq=img.dq, wcs=wcs, var_rnoise=img.var_rnoise,
                    var_poisson=img.var_poisson, var_flat=img.var_flat,
                    background_level=None, background_subtracted=False,
                    instrument="NIRSPEC", meta=meta)
