"""Seeded simulators of time-series (TSO) and coronagraphic cubes with ground truth."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.cube import Cube
from daskod.flag._dq import DO_NOT_USE

__all__ = ["SimulatedCube", "make_tso_cube", "make_coron_cube"]

CR_DTYPE = np.dtype([("t", np.int32), ("y", np.int32), ("x", np.int32),
                     ("amplitude", np.float32), ("snr", np.float32)])


@dataclass
class SimulatedCube:
    """A simulated cube and its truth.

    Attributes
    ----------
    cube : Cube
        numpy arrays, or zarr arrays when simulated with ``store=``.
    cr_pixels : numpy structured array
        Every pixel a cosmic ray hit: ``t``, ``y``, ``x``, ``amplitude``, ``snr``
        (amplitude / ERR there).
    light_curve : ndarray
        Relative flux of the star per integration (1 out of transit).
    star_yx : tuple of float
        Star position.
    """

    cube: Cube
    cr_pixels: np.ndarray
    light_curve: np.ndarray
    star_yx: tuple[float, float]

    def cr_mask(self) -> np.ndarray:
        """Boolean cube of the cosmic-ray pixels (full size: small cubes only)."""
        mask = np.zeros(self.cube.shape, dtype=bool)
        c = self.cr_pixels
        mask[c["t"], c["y"], c["x"]] = True
        return mask


def _transit(nints: int, depth: float) -> np.ndarray:
    """A trapezoid transit in the middle third of the series."""
    t = np.linspace(0.0, 1.0, nints)
    ingress, egress, edge = 0.35, 0.65, 0.05
    lc = np.ones(nints)
    down = np.clip((t - ingress) / edge, 0, 1) * np.clip((egress - t) / edge, 0, 1)
    return lc - depth * down


def _psf(shape: tuple[int, int], yx: tuple[float, float], sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    g = np.exp(-0.5 * (((yy - yx[0]) / sigma) ** 2 + ((xx - yx[1]) / sigma) ** 2))
    return (g / g.sum()).astype(np.float32)


def _simulate(nints: int, shape: tuple[int, int], scene: np.ndarray, light_curve: np.ndarray,
              star: np.ndarray, *, seed: int, read_noise: float, n_cr: int, sky: float,
              store: str | None, time_chunk: int, name: str, tso: bool | None,
              exp_type: str, chunk_rows: int | None = None,
              with_variance: bool = True, n_bad_samples: int = 0) -> SimulatedCube:
    rng = np.random.default_rng(seed)
    ny, nx = shape
    # Cosmic rays: (t, y, x) events, singles and 2x2 clusters, 3 to 1000 sigma.
    ts = rng.integers(0, nints, n_cr)
    ys = rng.integers(0, ny, n_cr)
    xs = rng.integers(0, nx, n_cr)
    snrs = np.exp(rng.uniform(math.log(3.0), math.log(1000.0), n_cr))
    cluster = rng.random(n_cr) < 0.3
    pts = [(t, y, x, s) for t, y, x, s in zip(ts, ys, xs, snrs, strict=True)]
    pts += [(t, min(y + 1, ny - 1), x, s * 0.7) for t, y, x, s, c
            in zip(ts, ys, xs, snrs, cluster, strict=True) if c]
    dead = rng.random(shape) < 2e-4
    # Single DQ-bad samples (a separate stream: the rest of the cube does not change); half
    # of them two integrations after a cosmic ray at the same pixel.
    bad_rng = np.random.default_rng([seed, 7])
    n_near = min(n_bad_samples // 2, n_cr)
    pick = bad_rng.choice(n_cr, size=n_near, replace=False) if n_near else np.zeros(0, int)
    bad_t = np.concatenate([np.clip(ts[pick] + 2, 0, nints - 1),
                            bad_rng.integers(0, nints, n_bad_samples - n_near)])
    bad_y = np.concatenate([ys[pick], bad_rng.integers(0, ny, n_bad_samples - n_near)])
    bad_x = np.concatenate([xs[pick], bad_rng.integers(0, nx, n_bad_samples - n_near)])
    arrays: dict[str, Any] = {}
    if store is not None:
        import zarr

        for key, dtype, fill in (("sci", "f4", np.nan), ("err", "f4", np.nan),
                                 ("dq", "u4", 0), ("var_rnoise", "f4", np.nan)):
            if key == "var_rnoise" and not with_variance:
                continue
            arrays[key] = zarr.create_array(
                store=os.fspath(store), name=key, shape=(nints, ny, nx), dtype=dtype,
                chunks=(min(time_chunk, nints), min(chunk_rows or ny, ny), nx),
                compressors=None, fill_value=fill, overwrite=True)
    else:
        arrays = {"sci": np.empty((nints, ny, nx), np.float32),
                  "err": np.empty((nints, ny, nx), np.float32),
                  "dq": np.zeros((nints, ny, nx), np.uint32),
                  "var_rnoise": np.empty((nints, ny, nx), np.float32)}
    cr_rows = []
    by_t: dict[int, list] = {}
    for t, y, x, s in pts:
        by_t.setdefault(int(t), []).append((int(y), int(x), float(s)))
    var_rn = np.float32(read_noise**2)
    for t0 in range(0, nints, time_chunk):
        t1 = min(t0 + time_chunk, nints)
        model = scene[None] + star[None] * light_curve[t0:t1, None, None].astype(np.float32)
        model += np.float32(sky)
        var = model + var_rn
        sci = (model + rng.standard_normal(model.shape, dtype=np.float32) * np.sqrt(var))
        err = np.sqrt(var).astype(np.float32)
        dq = np.zeros(model.shape, np.uint32)
        dq[:, dead] = DO_NOT_USE
        here = (bad_t >= t0) & (bad_t < t1)
        dq[bad_t[here] - t0, bad_y[here], bad_x[here]] |= DO_NOT_USE
        for t in range(t0, t1):
            for y, x, s in by_t.get(t, []):
                if dq[t - t0, y, x]:
                    continue
                amp = s * err[t - t0, y, x]
                sci[t - t0, y, x] += amp
                cr_rows.append((t, y, x, amp, s))
        bad = dq != 0
        sci[bad] = np.nan
        err[bad] = np.nan
        vr = np.full(model.shape, var_rn, np.float32)
        vr[bad] = np.nan
        for key, block in (("sci", sci), ("err", err), ("dq", dq), ("var_rnoise", vr)):
            if key in arrays:
                arrays[key][t0:t1] = block
    crs = np.array(sorted(set(cr_rows)), dtype=CR_DTYPE) if cr_rows else np.zeros(0, CR_DTYPE)
    cube = Cube(sci=arrays["sci"], err=arrays["err"], dq=arrays["dq"],
                var_rnoise=arrays.get("var_rnoise"), tso_visit=tso, exp_type=exp_type,
                name=name)
    return SimulatedCube(cube=cube, cr_pixels=crs, light_curve=light_curve,
                         star_yx=(ny / 2.0, nx / 2.0))


def make_tso_cube(nints: int = 200, shape: tuple[int, int] = (32, 128), *, seed: int = 0,
                  star_flux: float = 2.0e5, transit_depth: float = 0.02, psf_sigma: float = 1.5,
                  read_noise: float = 10.0, sky: float = 20.0, cr_per_frame: float = 0.5,
                  store: str | os.PathLike | None = None, time_chunk: int = 64,
                  chunk_rows: int | None = None, with_variance: bool = True,
                  n_bad_samples: int = 0) -> SimulatedCube:
    """A time-series cube: a star whose flux follows a transit light curve, noise, CRs.

    Units are electrons per integration (Gaussian approximation of Poisson noise, so very large
    cubes simulate fast). With ``store=`` the cube is written straight into a Zarr group in
    blocks of ``time_chunk`` integrations (Zarr chunks ``(time_chunk, chunk_rows, nx)``) and
    the arrays returned are zarr arrays; ``with_variance=False`` leaves out VAR_RNOISE.
    ``n_bad_samples`` single samples get ``DO_NOT_USE``, half of them two integrations after a
    cosmic ray at the same pixel: the reference's rolling median (a NaN-propagating
    ``np.median``) then blanks every window holding them, so those cosmic rays go unflagged.
    """
    star = _psf(shape, (shape[0] / 2.0, shape[1] / 2.0), psf_sigma) * np.float32(star_flux)
    scene = np.zeros(shape, np.float32)
    lc = _transit(nints, transit_depth)
    return _simulate(nints, shape, scene, lc, star, seed=seed, read_noise=read_noise,
                     n_cr=max(1, int(cr_per_frame * nints)), sky=sky,
                     store=None if store is None else os.fspath(store), time_chunk=time_chunk,
                     name="sim_tso", tso=True, exp_type="NRC_TSIMAGE", chunk_rows=chunk_rows,
                     with_variance=with_variance, n_bad_samples=n_bad_samples)


def make_coron_cube(nints: int = 8, shape: tuple[int, int] = (96, 96), *, seed: int = 0,
                    read_noise: float = 10.0, sky: float = 20.0, cr_per_frame: float = 4.0,
                    store: str | os.PathLike | None = None) -> SimulatedCube:
    """A coronagraphic cube: a static residual PSF (bright ring and speckles), a faint
    companion, noise and cosmic rays; the scene does not change between integrations."""
    rng = np.random.default_rng(seed + 1)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    r = np.hypot(yy - ny / 2.0, xx - nx / 2.0)
    ring = 400.0 * np.exp(-0.5 * ((r - 8.0) / 2.5) ** 2)
    speckles = 60.0 * np.exp(-r / 20.0) * rng.random(shape)
    companion = _psf(shape, (ny * 0.3, nx * 0.7), 1.2) * 5000.0
    scene = (ring + speckles + companion).astype(np.float32)
    star = np.zeros(shape, np.float32)
    return _simulate(nints, shape, scene, np.ones(nints), star, seed=seed,
                     read_noise=read_noise, n_cr=max(1, int(cr_per_frame * nints)), sky=sky,
                     store=None if store is None else os.fspath(store), time_chunk=nints,
                     name="sim_coron", tso=False, exp_type="NRC_CORON")
