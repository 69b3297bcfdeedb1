"""Seeded simulator of dithered IFU exposures (MIRI MRS-like or NIRSpec IFU-like) with truth.

An image slicer cuts a small sky field into ``n_slices`` strips across one sky axis (beta);
each strip is imaged onto its own band of detector columns (MIRI-like: slices side by side
along x with gap columns between them, wavelength along y) with a linear, slightly
slice-dependent dispersion law and a small tilt of the lines of constant wavelength. Every
exposure carries a real 3-D ``gwcs.WCS``: detector ``(x, y)`` -> ``(ra, dec, wavelength)``,
NaN on gap pixels, with an analytic backward transform (world -> detector) that is exact on
slice pixels (the slice index is recovered by rounding beta, as a slicer does).

The sky holds a point source (Gaussian PSF, undersampled across slices) and an extended
source, each with a continuum and bright Gaussian emission lines. Exposures are dithered by
fractions of a slice and of a pixel so that a cube grid is well sampled. Noise is Poisson
plus read noise (``ERR**2 = VAR_POISSON + VAR_RNOISE``); cosmic rays are injected per
exposure with their signal-to-noise as truth; a few hot pixels sit at the same detector
pixels in every exposure; gap pixels are NaN with DQ ``DO_NOT_USE | NON_SCIENCE`` (513).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import Model, models
from scipy.special import erf

from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE, NON_SCIENCE

__all__ = ["IFUSimulation", "SlicerToDetector", "DetectorToSlicer", "make_ifu_exposures",
           "make_ifu_wcs"]

GAP_DQ = DO_NOT_USE | NON_SCIENCE

_INSTRUMENTS = {"MIRI": ("MIRIFUSHORT", "MIR_MRS", 1), "NIRSPEC": ("NRS1", "NRS_IFU", 0)}
#: Dither offsets in (along-slice pixels, slice widths): sub-slice and sub-pixel steps.
_DITHERS = ((0.0, 0.0), (0.5, 0.5), (1.25, -0.25), (-0.75, 0.75))


@dataclass(frozen=True)
class _Layout:
    """Where the slices fall on the detector and how they disperse (all plain numbers)."""

    n_slices: int
    pitch: int                 # detector pixels from one slice to the next (across slices)
    width: int                 # detector pixels of one slice (along the slice); rest is gap
    start: int                 # first pixel of slice 0 (across-slice detector axis)
    n_disp: int                # detector pixels along the dispersion axis
    alpha_scale: float         # arcsec per pixel along the slice
    beta_width: float          # arcsec, width of one slice on the sky
    lam0: tuple[float, ...]    # wavelength at the reference dispersion pixel, per slice
    dlam: tuple[float, ...]    # wavelength per pixel, per slice
    tilt: float                # dispersion pixels per along-slice pixel (line tilt)
    transpose: bool            # False: MIRI-like (slices along x); True: NIRSpec-like

    @property
    def centre(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def d_ref(self) -> float:
        return (self.n_disp - 1) / 2.0


class DetectorToSlicer(Model):
    """Detector ``(x, y)`` -> slicer plane ``(alpha, beta)`` arcsec and wavelength; NaN on gaps."""

    n_inputs = 2
    n_outputs = 3
    _separable = False

    def __init__(self, layout: _Layout, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = layout

    # No annotations on evaluate: astropy reads them as the inputs' units.
    def evaluate(self, x, y):
        lay = self.layout
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        across, disp = (y, x) if lay.transpose else (x, y)
        rel = across - lay.start
        s = np.floor((rel + 0.5) / lay.pitch)
        u = rel - s * lay.pitch
        ok = (s >= 0) & (s < lay.n_slices) & (u <= lay.width - 0.5)
        si = np.clip(s, 0, lay.n_slices - 1).astype(int)
        alpha = (u - lay.centre) * lay.alpha_scale
        beta = (s - (lay.n_slices - 1) / 2.0) * lay.beta_width
        wave = (np.asarray(lay.lam0)[si] + np.asarray(lay.dlam)[si]
                * (disp - lay.d_ref + lay.tilt * (u - lay.centre)))
        for arr in (alpha, beta, wave):
            arr[~ok] = np.nan
        return alpha, beta, wave

    @property
    def inverse(self) -> Model:
        return SlicerToDetector(self.layout)


class SlicerToDetector(Model):
    """Slicer ``(alpha, beta, wavelength)`` -> detector ``(x, y)``; NaN off the slices.

    The slice is the one whose beta range holds the point (beta rounded to the nearest slice
    centre), so the map is exact for every point that the forward transform produces.
    """

    n_inputs = 3
    n_outputs = 2
    _separable = False

    def __init__(self, layout: _Layout, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = layout

    def evaluate(self, alpha, beta, wave):
        lay = self.layout
        alpha, beta, wave = (np.asarray(v, dtype=np.float64) for v in (alpha, beta, wave))
        s_f = beta / lay.beta_width + (lay.n_slices - 1) / 2.0
        s = np.round(s_f)
        u = alpha / lay.alpha_scale + lay.centre
        with np.errstate(invalid="ignore"):
            ok = (s >= 0) & (s < lay.n_slices) & (u >= -0.5) & (u <= lay.width - 0.5)
        si = np.clip(np.nan_to_num(s), 0, lay.n_slices - 1).astype(int)
        across = lay.start + s * lay.pitch + u
        disp = ((wave - np.asarray(lay.lam0)[si]) / np.asarray(lay.dlam)[si] + lay.d_ref
                - lay.tilt * (u - lay.centre))
        across = np.where(ok, across, np.nan)
        disp = np.where(ok, disp, np.nan)
        return (disp, across) if lay.transpose else (across, disp)

    @property
    def inverse(self) -> Model:
        return DetectorToSlicer(self.layout)


def make_ifu_wcs(layout: _Layout, *, ra: float, dec: float, offset: tuple[float, float],
                 roll_deg: float, shape: tuple[int, int]):
    """The 3-D gwcs of one exposure: detector -> slicer -> (ra, dec) deg and wavelength (um).

    ``offset`` is the dither in arcsec (alpha, beta) of the slicer plane; ``roll_deg`` the
    position angle of the slicer on the sky about ``(ra, dec)``.
    """
    from astropy import coordinates as coord
    from astropy import units as u
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    to_sky = ((models.Shift(offset[0]) & models.Shift(offset[1]))
              | models.Rotation2D(roll_deg)
              | (models.Scale(1 / 3600.0) & models.Scale(1 / 3600.0))
              | models.Pix2Sky_TAN() | models.RotateNative2Celestial(ra, dec, 180.0))
    transform = DetectorToSlicer(layout) | (to_sky & models.Identity(1))
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="sky", axes_order=(0, 1),
                            unit=(u.deg, u.deg), axes_names=("lon", "lat"))
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.um,),
                            axes_names=("wavelength",))
    world = cf.CompositeFrame([sky, spec], name="world")
    wcs = WCS([(detector, transform), (world, None)])
    ny, nx = shape
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, nx)
    return wcs


@dataclass
class IFUSimulation:
    """Simulated IFU exposures and their truth.

    Attributes
    ----------
    exposures : list of Exposure
        With the 3-D gwcs, ``detector``, ``instrument``, ``meta["exp_type"]``, SCI/ERR/DQ and
        VAR_RNOISE/VAR_POISSON (numpy, or zarr arrays with ``store=``).
    cr_mask : list of ndarray of bool
        Per exposure, the pixels a cosmic ray hit.
    cr_snr : list of ndarray of float32
        Per exposure, injected amplitude / noise sigma (0 where no cosmic ray).
    bad_pixels : ndarray of bool, shape (ny, nx)
        The hot pixels, the same detector pixels in every exposure (DQ 0 there).
    line_core_mask : list of ndarray of bool
        Per exposure, detector pixels on the bright emission-line cores of the point source.
    diffaxis : int
        1 for MIRI (dispersion along y), 0 for NIRSpec (dispersion along x).
    offsets : list of tuple of float
        Dither offsets (alpha, beta) arcsec per exposure.
    layout : _Layout
        The slicer geometry (slices, pixel scale 0.13 arcsec along slices, slice width 0.18
        arcsec, per-slice dispersion law).
    """

    exposures: list[Exposure]
    cr_mask: list[np.ndarray]
    cr_snr: list[np.ndarray]
    bad_pixels: np.ndarray
    line_core_mask: list[np.ndarray]
    diffaxis: int
    offsets: list[tuple[float, float]]
    layout: _Layout


def _box_gauss(centre: np.ndarray, half: float, sigma: float) -> np.ndarray:
    """Fraction of a 1-D Gaussian (at 0) inside ``[centre - half, centre + half]``."""
    s = sigma * math.sqrt(2.0)
    return 0.5 * (erf((centre + half) / s) - erf((centre - half) / s))


def _layout(shape: tuple[int, int], n_slices: int, transpose: bool, lam_start: float,
            dlam: float) -> _Layout:
    n_across, n_disp = (shape[0], shape[1]) if transpose else (shape[1], shape[0])
    margin = 2
    pitch = (n_across - 2 * margin) // n_slices
    if pitch < 4:
        msg = (f"shape {shape} leaves {pitch} pixels per slice for {n_slices} slices; give a "
               "larger shape or fewer n_slices (at least 4 pixels per slice).")
        raise ValueError(msg)
    width = pitch - 2
    lam_mid = lam_start + dlam * (n_disp - 1) / 2.0
    lam0 = tuple(float(lam_mid + dlam * 0.6 * math.sin(1.3 * s)) for s in range(n_slices))
    dl = tuple(float(dlam * (1.0 + 0.02 * math.cos(0.7 * s))) for s in range(n_slices))
    return _Layout(n_slices=n_slices, pitch=pitch, width=width, start=margin, n_disp=n_disp,
                   alpha_scale=0.13, beta_width=0.18, lam0=lam0, dlam=dl, tilt=0.03,
                   transpose=transpose)


def _slice_pixels(layout: _Layout, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Slicer coordinates of every detector pixel centre (NaN on gaps)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return DetectorToSlicer(layout).evaluate(xx, yy)


def _source_in_slicer(plane_xy: tuple[float, float], offset: tuple[float, float],
                      roll_deg: float) -> tuple[float, float]:
    """Slicer (alpha, beta) of a sky position given in tangent-plane arcsec."""
    t = math.radians(roll_deg)
    px, py = plane_xy
    a = math.cos(t) * px + math.sin(t) * py
    b = -math.sin(t) * px + math.cos(t) * py
    return a - offset[0], b - offset[1]


def _spectrum(wave: np.ndarray, continuum: float, lines: list[tuple[float, float]],
              sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Continuum and line parts of a spectrum (lines: (centre, peak / continuum))."""
    line = np.zeros_like(wave)
    for centre, peak in lines:
        line += continuum * peak * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
    return np.full_like(wave, continuum), line


def _render(layout: _Layout, shape: tuple[int, int], offset: tuple[float, float],
            roll_deg: float, lines: dict[str, list[tuple[float, float]]],
            line_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless detector image (e-) and the point source's emission-line part of it."""
    alpha, beta, wave = _slice_pixels(layout, shape)
    ok = np.isfinite(wave)
    w = np.where(ok, wave, 0.0)
    image = np.zeros(shape)
    point_lines = np.zeros(shape)
    # (plane position arcsec, PSF sigma arcsec, continuum e- over the whole PSF, lines)
    sources = (((0.08, -0.05), 0.12, 700.0, lines["point"], True),
               ((-0.35, 0.25), 0.45, 3300.0, lines["extended"], False))
    for pos, sigma, flux, src_lines, is_point in sources:
        a0, b0 = _source_in_slicer(pos, offset, roll_deg)
        frac = (_box_gauss(np.nan_to_num(alpha) - a0, layout.alpha_scale / 2, sigma)
                * _box_gauss(np.nan_to_num(beta) - b0, layout.beta_width / 2, sigma))
        cont, line = _spectrum(w, flux, src_lines, line_sigma)
        image += frac * (cont + line)
        if is_point:
            point_lines = frac * line
    image[~ok] = np.nan
    point_lines[~ok] = 0.0
    return image, point_lines


def _pick_pixels(rng: np.random.Generator, allowed: np.ndarray, n: int) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    ys, xs = np.nonzero(allowed)
    pick = rng.choice(ys.size, size=min(n, ys.size), replace=False)
    return ys[pick], xs[pick]


def _write(store: str | None, k: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if store is None:
        return arrays
    import zarr

    out = {}
    for key, value in arrays.items():
        out[key] = zarr.create_array(store=store, name=f"exposure{k}/{key}", shape=value.shape,
                                     dtype=value.dtype, chunks=value.shape, compressors=None,
                                     fill_value=0 if value.dtype.kind == "u" else np.nan,
                                     overwrite=True)
        out[key][...] = value
    return out


def make_ifu_exposures(
    n_exposures: int = 3,
    *,
    shape: tuple[int, int] = (160, 160),
    instrument: str = "MIRI",
    seed: int = 0,
    n_slices: int = 12,
    n_cosmic_rays: int = 40,
    n_bad_pixels: int = 6,
    n_dead_pixels: int = 4,
    sky: float = 30.0,
    read_noise: float = 8.0,
    roll_deg: float = 0.0,
    ra: float = 80.5,
    dec: float = -69.5,
    store: str | os.PathLike | None = None,
) -> IFUSimulation:
    """Dithered IFU exposures of a point source and an extended source, with ground truth.

    Parameters
    ----------
    n_exposures : int
        Number of dithered exposures (1 to 4).
    shape : tuple of int
        Detector ``(ny, nx)``. MIRI-like: slices side by side along x, wavelength along y;
        NIRSpec-like: the transpose.
    instrument : {"MIRI", "NIRSPEC"}
        Sets the layout, ``Exposure.detector`` ("MIRIFUSHORT" / "NRS1"), ``instrument`` and
        ``meta["exp_type"]`` ("MIR_MRS" / "NRS_IFU").
    seed : int
        Everything random (noise, cosmic rays, bad pixels) follows from it.
    n_slices : int
        Slices of the image slicer (at least 4 detector pixels each).
    n_cosmic_rays : int
        Cosmic-ray events per exposure (a quarter of them hit two adjacent pixels); their
        signal-to-noise is log-uniform between 3 and 300.
    n_bad_pixels : int
        Hot pixels present at the same detector pixels in every exposure, not flagged in DQ
        (the time-variable bad pixels the IFU difference method is for).
    n_dead_pixels : int
        Pixels flagged DO_NOT_USE (NaN) in every exposure.
    sky, read_noise : float
        Sky level (e-) on every slice pixel and read noise (e-).
    roll_deg : float
        Position angle of the slicer on the sky.
    ra, dec : float
        Pointing (degrees).
    store : path, optional
        Write the arrays to Zarr arrays ``exposure<k>/<name>`` of this store instead of
        returning numpy arrays.

    Returns
    -------
    IFUSimulation
    """
    instrument = str(instrument).upper()
    if instrument not in _INSTRUMENTS:
        msg = f"instrument must be 'MIRI' or 'NIRSPEC', got {instrument!r}."
        raise ValueError(msg)
    if not 1 <= int(n_exposures) <= len(_DITHERS):
        msg = f"n_exposures must be 1 to {len(_DITHERS)}, got {n_exposures!r}."
        raise ValueError(msg)
    detector, exp_type, diffaxis = _INSTRUMENTS[instrument]
    shape = (int(shape[0]), int(shape[1]))
    layout = _layout(shape, int(n_slices), diffaxis == 0, lam_start=4.90, dlam=0.0008)
    lam_lo = min(layout.lam0) - layout.d_ref * max(layout.dlam)
    span = 2 * layout.d_ref * min(layout.dlam)
    lines = {"point": [(lam_lo + 0.3 * span, 15.0), (lam_lo + 0.7 * span, 8.0)],
             "extended": [(lam_lo + 0.5 * span, 5.0), (lam_lo + 0.7 * span, 3.0)]}
    line_sigma = 1.3 * layout.dlam[0]
    rng = np.random.default_rng(seed)
    _, _, wave0 = _slice_pixels(layout, shape)
    on_slice = np.isfinite(wave0)
    inner = np.zeros(shape, dtype=bool)
    inner[5:-5, 5:-5] = True
    by, bx = _pick_pixels(rng, on_slice & inner, int(n_bad_pixels) + int(n_dead_pixels))
    bad = np.zeros(shape, dtype=bool)
    dead = np.zeros(shape, dtype=bool)
    bad[by[:n_bad_pixels], bx[:n_bad_pixels]] = True
    dead[by[n_bad_pixels:], bx[n_bad_pixels:]] = True
    hot = np.zeros(shape)
    hot[bad] = rng.uniform(400.0, 1500.0, int(bad.sum()))
    store = None if store is None else os.fspath(store)
    sim = IFUSimulation(exposures=[], cr_mask=[], cr_snr=[], bad_pixels=bad, line_core_mask=[],
                        diffaxis=diffaxis, offsets=[], layout=layout)
    for k in range(int(n_exposures)):
        krng = np.random.default_rng((seed, k))
        offset = (_DITHERS[k][0] * layout.alpha_scale, _DITHERS[k][1] * layout.beta_width)
        model, point_lines = _render(layout, shape, offset, roll_deg, lines, line_sigma)
        model = model + sky
        var_rn = np.full(shape, read_noise**2)
        var_p = np.where(on_slice, model, np.nan)
        err = np.sqrt(var_p + var_rn)
        sci = model + krng.standard_normal(shape) * err + hot
        cr_amp = np.zeros(shape)
        cy, cx = _pick_pixels(krng, on_slice & ~bad & ~dead, int(n_cosmic_rays))
        snr = np.exp(krng.uniform(math.log(3.0), math.log(300.0), cy.size))
        cr_amp[cy, cx] += snr * err[cy, cx]
        pairs = krng.random(cy.size) < 0.25
        ny2 = np.clip(cy + krng.integers(0, 2, cy.size), 0, shape[0] - 1)
        nx2 = np.clip(cx + 1 - (ny2 - cy), 0, shape[1] - 1)
        for y2, x2, s in zip(ny2[pairs], nx2[pairs], snr[pairs], strict=True):
            if on_slice[y2, x2] and not bad[y2, x2] and not dead[y2, x2]:
                cr_amp[y2, x2] += 0.5 * s * err[y2, x2]
        sci = sci + cr_amp
        dq = np.zeros(shape, dtype=np.uint32)
        dq[~on_slice] = GAP_DQ
        dq[dead] |= DO_NOT_USE
        unusable = ~on_slice | dead
        arrays = {"sci": sci, "err": err, "var_rnoise": var_rn, "var_poisson": var_p}
        arrays = {key: np.where(unusable, np.nan, v).astype(np.float32)
                  for key, v in arrays.items()}
        arrays["dq"] = dq
        arrays = _write(store, k, arrays)
        wcs = make_ifu_wcs(layout, ra=ra, dec=dec, offset=offset, roll_deg=roll_deg,
                           shape=shape)
        sim.exposures.append(Exposure(
            sci=arrays["sci"], err=arrays["err"], dq=arrays["dq"], wcs=wcs,
            var_rnoise=arrays["var_rnoise"], var_poisson=arrays["var_poisson"],
            name=f"ifu{k}", detector=detector, instrument=instrument,
            meta={"exp_type": exp_type}))
        mask = cr_amp > 0
        sim.cr_mask.append(mask)
        sim.cr_snr.append(np.where(mask, cr_amp / err, 0.0).astype(np.float32))
        peak = float(point_lines.max())
        sim.line_core_mask.append(point_lines >= 0.25 * peak if peak > 0 else point_lines > 0)
        sim.offsets.append(offset)
    return sim
