"""Pieces shared by the slit simulators: spectra, spatial profiles, noise and detector defects.

Noise model (what the pipeline's ``ERR`` means): ``VAR_POISSON = signal * gain_factor`` (the
noiseless signal, floored at 0), ``VAR_RNOISE = read_noise**2`` with a few per cent pixel to
pixel variation, ``VAR_FLAT = 0``, ``ERR = sqrt(VAR_RNOISE + VAR_POISSON)``, and
``SCI = signal + N(0, ERR)``. Cosmic rays (single pixels and short 2-3 pixel tracks, 4 to 300
times the local ERR) are added after the noise and returned as truth. Unusable pixels carry
DQ ``DO_NOT_USE`` and NaN in every float array; a few "hot" pixels carry DQ 0 and a large
constant excess (the same detector pixels in every exposure, so only nodding reveals them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from daskod.flag._dq import DO_NOT_USE, JUMP_DET

__all__ = ["Spectrum", "pixel_profile", "DetectorNoise", "NoisyImage", "observe"]


@dataclass(frozen=True)
class Spectrum:
    """Continuum (power law) plus Gaussian emission lines, per detector pixel.

    ``lines`` holds ``(wavelength, peak, sigma)`` with the width in micron.
    """

    level: float
    slope: float = -1.0
    pivot: float = 2.0
    lines: tuple[tuple[float, float, float], ...] = ()

    def __call__(self, lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = self.level * (lam / self.pivot) ** self.slope
            for centre, peak, sigma in self.lines:
                out = out + peak * np.exp(-0.5 * ((lam - centre) / sigma) ** 2)
        return out


def pixel_profile(offset: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """Fraction of a Gaussian of width ``sigma`` (pixels) centred ``offset`` pixels away that
    falls in a one-pixel-wide bin (integrated, so undersampled profiles stay right)."""
    s = np.sqrt(2.0) * np.asarray(sigma, dtype=np.float64)
    return 0.5 * (erf((offset + 0.5) / s) - erf((offset - 0.5) / s))


@dataclass(frozen=True)
class DetectorNoise:
    """Noise and defect rates of one simulated detector."""

    read_noise: float = 0.08
    gain_factor: float = 0.02
    cr_rate: float = 2.0e-3
    cr_snr: tuple[float, float] = (4.0, 300.0)
    bad_fraction: float = 3.0e-3
    jump_fraction: float = 5.0e-3


@dataclass
class NoisyImage:
    """Arrays of one simulated cut-out or image, with its truth."""

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_rnoise: np.ndarray
    var_poisson: np.ndarray
    var_flat: np.ndarray
    cosmic_rays: np.ndarray
    cr_snr: np.ndarray
    extras: dict = field(default_factory=dict)


def _cosmic_rays(rng: np.random.Generator, shape: tuple[int, int], usable: np.ndarray,
                 noise: DetectorNoise) -> np.ndarray:
    """Positions (mask) of cosmic-ray hits: single pixels and short tracks."""
    mask = np.zeros(shape, dtype=bool)
    n = rng.poisson(noise.cr_rate * int(usable.sum()))
    ny, nx = shape
    for _ in range(n):
        y, x = int(rng.integers(ny)), int(rng.integers(nx))
        length = int(rng.choice([1, 1, 1, 2, 3]))
        dy, dx = [(0, 1), (1, 0), (1, 1), (1, -1)][int(rng.integers(4))]
        for step in range(length):
            yy, xx = y + step * dy, x + step * dx
            if 0 <= yy < ny and 0 <= xx < nx:
                mask[yy, xx] = True
    return mask & usable


def observe(signal: np.ndarray, usable: np.ndarray, rng: np.random.Generator,
            noise: DetectorNoise, *, hot: np.ndarray | None = None,
            hot_excess: float = 0.0, unusable_dq: int = DO_NOT_USE) -> NoisyImage:
    """Noise, cosmic rays and defects on a noiseless ``signal``.

    Parameters
    ----------
    signal : ndarray
        Noiseless surface brightness (NaN or any value where not ``usable``).
    usable : ndarray of bool
        Pixels that hold science (outside: NaN everywhere, DQ ``unusable_dq``).
    rng : numpy.random.Generator
    noise : DetectorNoise
    hot : ndarray of bool, optional
        Hot pixels (DQ 0, ``hot_excess`` added to SCI).
    hot_excess : float
        Excess of the hot pixels.
    unusable_dq : int
        DQ of the pixels outside ``usable``.
    """
    shape = signal.shape
    clean = np.where(usable, np.nan_to_num(signal), 0.0)
    var_rnoise = noise.read_noise ** 2 * np.abs(1.0 + 0.05 * rng.standard_normal(shape))
    var_poisson = np.clip(clean, 0.0, None) * noise.gain_factor
    err = np.sqrt(var_rnoise + var_poisson)
    sci = clean + err * rng.standard_normal(shape)
    dq = np.zeros(shape, dtype=np.uint32)
    crs = _cosmic_rays(rng, shape, usable, noise)
    lo, hi = noise.cr_snr
    snr = np.zeros(shape, dtype=np.float32)
    snr[crs] = np.exp(rng.uniform(math.log(lo), math.log(hi), int(crs.sum())))
    sci = sci + snr * err
    if hot is not None:
        sci = np.where(hot & usable, sci + hot_excess, sci)
    # Harmless DQ bits that good_bits="~DO_NOT_USE" must ignore.
    dq[(rng.random(shape) < noise.jump_fraction) & usable] |= np.uint32(JUMP_DET)
    bad = (rng.random(shape) < noise.bad_fraction) & usable & ~crs
    if hot is not None:
        bad &= ~hot
    dq[bad] |= np.uint32(DO_NOT_USE)
    dq[~usable] |= np.uint32(unusable_dq)
    invalid = (dq & DO_NOT_USE) != 0
    var_flat = np.zeros(shape)
    arrays = {"sci": sci, "err": err, "var_rnoise": var_rnoise, "var_poisson": var_poisson,
              "var_flat": var_flat}
    out = {}
    for key, value in arrays.items():
        value = value.astype(np.float32)
        value[invalid] = np.nan
        out[key] = value
    return NoisyImage(dq=dq, cosmic_rays=crs, cr_snr=snr, **out)
