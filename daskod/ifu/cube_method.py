"""The IFU cube method (``ifu_method="cube"``; the reference before 2023, docs/algorithm.md
section 4.2).

Phases (each one Dask task per block; kernels in :mod:`daskod.ifu._cube_kernels`):

1. **coordinates** (geometry, always computed at build time): every exposure's 3-D WCS is
   evaluated on its detector pixels, one band of rows per task, and stored as tangent-plane
   offsets ``(xi, eta)`` arcsec about one reference point (the centre of the first exposure)
   plus wavelength. Each task also returns its band's extent and sampling.
2. **grid**: one grid for all exposures. Spatial step: the median sky distance between pixels
   adjacent along the detector axis that does not disperse (the along-slice pixel spacing);
   wavelength step: the median per-pixel wavelength step along the dispersion axis (the axis
   where wavelength changes most); either is replaced by ``spatial_scale`` /
   ``spectral_scale`` when given. Extent: the union of all footprints. Region of interest
   (``roi``) by default: spatial ``max(scale, sqrt(A / N))`` with ``A`` the footprint area
   and ``N`` the detector points per wavelength step of one exposure (the mean point
   spacing, so single-exposure cubes have no holes); spectral one wavelength step.
3. **cube**: per exposure and chunk of wavelength planes, each spaxel is the weighted mean of
   that exposure's detector points within the region of interest (spatial distance
   ``<= roi[0]`` and wavelength distance ``<= roi[1]``), with usable DQ only
   (``dq & bad_mask == 0``) and finite SCI. Weights (distances in grid steps):
   ``emsm`` ``exp(-(dxy^2 + dw^2) / (roi[0] / scale))``; ``msm`` (modified Shepard)
   ``1 / max(d, 1e-3)^2``, as jwst ``cube_build``. Spaxels with no point are NaN.
4. **threshold / median**: per exposure ``maskpt`` times the 3-sigma-clipped mean of its
   non-zero spaxel weights (imaging's ``compute_weight_threshold``); lower-weight spaxels
   are masked; the NaN-median over exposures per spaxel, one task per plane chunk, written
   to ``ifu_cube/median`` (the cube never needs to be whole in memory).
5. **flag**: per exposure and detector tile (with a 2-pixel halo), the median-cube spaxel
   centres of the wavelength planes that tile needs are mapped to the detector through the
   exposure's backward transform; the blot of a pixel is ``sum(exp(-d) f) / sum(exp(-d))``
   over the points with ``|dx| <= 1`` and ``|dy| <= 1`` pixel (the reference CubeBlot); then
   the imaging rule ``flag_resampled_crs`` (snr, scale, derivative of the blot), DQ |= 17 and
   DO_NOT_USE wherever SCI/ERR/VAR are NaN; DQ tiles are written to ``ifu_cube/dq/<k>``.

Every reduction visits its contributions in one fixed order (see the kernels), so flags are
identical for any ``plane_chunk``, tile size and scheduler.
"""

from __future__ import annotations

import logging
import math
import operator
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from daskod._exceptions import InputError, WCSError
from daskod.engine._checkpoint import Checkpoints
from daskod.engine._dispatch import PhaseRunner, Scheduler
from daskod.engine._tasks import barrier, new_task
from daskod.exposure import Exposure
from daskod.geometry._tiles import Tile, Tiling
from daskod.ifu._cube_kernels import WEIGHTINGS, CubeGrid, build_grid
from daskod.ifu._cube_tasks import (
    blot_and_flag_cube_tile,
    coordinates_band,
    cube_weight_threshold,
    median_chunk,
    single_cube_chunk,
    to_world,
    world_roles,
)
from daskod.io._store import array_sources, create_array

__all__ = ["CubeMethodRun", "build_cube_method", "check_cube_wcs"]

log = logging.getLogger(__name__)

PREFIX = "ifu_cube"


@dataclass
class CubeMethodRun:
    """The built (and, when eager, computed) cube-method run."""

    dq: list
    counts: list
    median: Any
    grid: Any
    timings: dict
    single_flux: Any = None
    single_weight: Any = None
    thresholds: list = field(default_factory=list)


def check_cube_wcs(exp: Exposure) -> None:
    """Refuse an exposure whose WCS cannot give (ra, dec, wavelength) and map back."""
    wcs = exp.wcs
    if wcs is None:
        msg = (f"Exposure {exp.name!r} has no WCS; ifu_method='cube' needs a 3-D WCS "
               "(detector -> ra, dec, wavelength), or use ifu_method='difference'.")
        raise WCSError(msg, exposure=exp.name)
    try:
        world_roles(wcs)
    except ValueError as err:
        n_world = getattr(wcs, "world_n_dim", "?")
        msg = (f"Exposure {exp.name!r}: its WCS ({type(wcs).__name__}, {n_world} world axes) "
               f"has no spectral axis ({err}); ifu_method='cube' needs a gwcs detector -> "
               "(ra, dec, wavelength) (use ifu_method='difference' without one).")
        raise WCSError(msg, exposure=exp.name) from None
    try:
        wcs.backward_transform  # noqa: B018 - raises when there is no inverse
    except NotImplementedError:
        msg = (f"Exposure {exp.name!r}: its WCS has no backward transform (world -> "
               "detector), which the cube blot needs; use ifu_method='difference'.")
        raise WCSError(msg, exposure=exp.name) from None


def _check_params(weighting: str, roi: Any, spatial_scale: Any, spectral_scale: Any) -> None:
    if weighting not in WEIGHTINGS:
        msg = f"cube_weighting must be one of {WEIGHTINGS}, got {weighting!r}."
        raise ValueError(msg)
    for name, value in (("cube_spatial_scale", spatial_scale),
                        ("cube_spectral_scale", spectral_scale)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)
                                      and value > 0):
            msg = f"{name} must be a positive number or None, got {value!r}."
            raise ValueError(msg)
    if roi is not None:
        pair = tuple(roi) if isinstance(roi, list | tuple) else ()
        if len(pair) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) and v > 0
                                     for v in pair):
            msg = (f"cube_roi must be (spatial arcsec, spectral) positive numbers or None, "
                   f"got {roi!r}.")
            raise ValueError(msg)


def _reference_point(exp: Exposure) -> tuple[float, float]:
    """Median (ra, dec) of a coarse grid of the first exposure's slice pixels."""
    ny, nx = exp.shape
    yy, xx = np.mgrid[0:ny:4, 0:nx:4].astype(np.float64)
    ra, dec, _ = to_world(exp.wcs, world_roles(exp.wcs), xx, yy)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        msg = (f"Exposure {exp.name!r}: its WCS gives no finite sky position on the detector; "
               "check the WCS (or its bounding box).")
        raise WCSError(msg, exposure=exp.name)
    ra, dec = np.asarray(ra)[ok], np.asarray(dec)[ok]
    ra = (ra - ra[0] + 180.0) % 360.0 - 180.0 + ra[0]
    return float(np.median(ra) % 360.0), float(np.median(dec))


#: Bytes per spaxel-plane of a median task per exposure (flux + weight read, masked copy)
#: and of its own sums; bytes per spaxel mapped by a blot task (float64 coordinates, masks);
#: bytes per detector pixel of a flag task (SCI, ERR, DQ, variances, blot, temporaries).
_MEDIAN_BYTES, _SUMS_BYTES, _BLOT_BYTES, _FLAG_BYTES = 12, 40, 120, 100


def _default_chunks(grid: CubeGrid, n_exp: int, budget_bytes: int, plane_chunk: int | None,
                    tile: int | None, shape: tuple[int, int]) -> tuple[int, int]:
    """Planes per chunk and detector tile side: as given, else what fits ``budget_bytes``.

    A flag task of side ``s`` maps about ``s + 4`` wavelength planes of spaxels (dispersion
    runs along one detector axis) and holds ``s**2`` detector pixels.
    """
    nw, ny, nx = grid.shape
    per_plane = ny * nx * (_MEDIAN_BYTES * n_exp + _SUMS_BYTES)
    planes = plane_chunk or int(budget_bytes // max(per_plane, 1))
    side = tile or plane_chunk
    if side is None:
        side = 16
        while side < max(shape) and ((2 * side + 4) * ny * nx * _BLOT_BYTES
                                     + (2 * side) ** 2 * _FLAG_BYTES) <= budget_bytes:
            side *= 2
    return int(max(1, min(planes, nw))), int(max(1, min(side, max(shape))))


def build_cube_method(
    exposures: list[Exposure],
    *,
    root: Any,
    scheduler: Scheduler,
    eager: bool,
    budget_bytes: int,
    snr: tuple[float, float],
    scale: tuple[float, float],
    backg: float,
    maskpt: float,
    bad_mask: int,
    spatial_scale: float | None,
    spectral_scale: float | None,
    weighting: str,
    roi: tuple[float, float] | None,
    plane_chunk: int | None,
    tile: int | None = None,
    checkpoints: Checkpoints | None = None,
) -> CubeMethodRun:
    """Build (and with ``eager`` run) the cube method into the working store ``root``.

    Parameters
    ----------
    exposures : list of Exposure
        Validated exposures whose gwcs maps detector (x, y) to two celestial axes and one
        spectral axis, with a backward transform.
    root : str or zarr store
        The working store; arrays go under ``ifu_cube/``.
    scheduler : Scheduler
        Where tasks run.
    eager : bool
        Compute each phase at once (bounded memory) or leave the pixel phases lazy. The
        geometry (WCS evaluation, grid) is computed at build time in both cases; it reads
        no pixel.
    budget_bytes : int
        Memory one task may use; sets ``plane_chunk`` and ``tile`` when not given.
    snr, scale, backg : float pairs and float
        The imaging flag rule's parameters.
    maskpt : float
        Weight threshold factor of the single-exposure cubes.
    bad_mask : int
        DQ bits that keep a detector pixel out of the cubes.
    spatial_scale, spectral_scale : float or None
        Grid steps (arcsec, wavelength unit of the WCS); None derives them from the data.
    weighting : {"emsm", "msm"}
        Point-cloud weighting of the cube build.
    roi : pair of float or None
        Spatial (arcsec) and spectral region of interest; None derives it.
    plane_chunk : int or None
        Wavelength planes per task.
    tile : int or None
        Detector tile side of the flag phase (default ``plane_chunk`` if given, else from
        ``budget_bytes``). Results do not depend on ``plane_chunk`` or ``tile``.
    checkpoints : Checkpoints, optional
        Record finished tasks in the store and reuse those of a resumed run (the WCS
        coordinates are recomputed; the chunk layout derived from the budget is noted in the
        store's record and repeated).

    Returns
    -------
    CubeMethodRun
        New DQ per exposure (zarr arrays when eager, lazy Dask arrays otherwise), outlier
        counts, the median cube (zarr), the grid and the phase timings.

    Raises
    ------
    WCSError
        An exposure's WCS has no spectral axis or no backward transform (named).
    OutputTooLargeError
        The common grid would be absurdly large.
    """
    _check_params(weighting, roi, spatial_scale, spectral_scale)
    if not exposures:
        msg = "ifu_method='cube' needs at least one exposure."
        raise InputError(msg)
    for exp in exposures:
        check_cube_wcs(exp)
    ckpt = checkpoints or Checkpoints.disabled(root)
    timings: dict[str, float] = {}
    geometry = PhaseRunner(scheduler, True, timings)
    phases = PhaseRunner(scheduler, eager, timings)
    start = time.perf_counter()
    ra0, dec0 = _reference_point(exposures[0])
    # Each WCS travels once, as its own key (pickled bytes that every task of that exposure
    # depends on), never embedded in every task.
    payloads = []
    for k, exp in enumerate(exposures):
        blob = pickle.dumps(exp.wcs)
        payloads.append(dask.delayed(blob, name=f"ifu-wcs-{k}-{dask.base.tokenize(blob)}"))
    roles = [world_roles(exp.wcs) for exp in exposures]
    band_rows = tile or plane_chunk or 64
    coords, coord_tasks, owners = [], [], []
    for k, exp in enumerate(exposures):
        ny, nx = exp.shape
        arrays = {key: create_array(root, f"{PREFIX}/coords/{k}/{key}", (ny, nx), np.float64,
                                    (min(band_rows, ny), nx), np.nan)
                  for key in ("xi", "eta", "wave")}
        coords.append(arrays)
        for y0 in range(0, ny, band_rows):
            coord_tasks.append(new_task(coordinates_band,
                payloads[k], roles[k], y0, min(y0 + band_rows, ny), nx, ny, ra0, dec0, arrays))
            owners.append(k)
    results = geometry.run("coordinates", coord_tasks)
    stats: list[list[dict[str, Any]]] = [[] for _ in exposures]
    for k, band in zip(owners, results, strict=True):
        stats[k].append(band)
    grid = build_grid(stats, ra0, dec0, spatial_scale=spatial_scale,
                       spectral_scale=spectral_scale, roi=roi, weighting=weighting)
    # Sampling arrays are only needed for the grid: keep the band tables small.
    stats = [[{key: b[key] for key in ("y0", "y1", "n", "wave") if key in b} for b in per]
             for per in stats]
    planes, side = _default_chunks(grid, len(exposures), budget_bytes,
                                   plane_chunk or ckpt.noted("planes"),
                                   tile or ckpt.noted("side"), exposures[0].shape)
    ckpt.note(planes=planes, side=side)
    timings["geometry"] = time.perf_counter() - start
    log.info("Phase geometry: cube grid %s (scale %.4g arcsec, step %.4g, roi %s, %s), "
             "%d planes per chunk, detector tiles of %d px, in %.2f s", grid.shape,
             grid.scale, grid.dwave, grid.roi, weighting, planes, side, timings["geometry"])

    sources, ingest = [], []
    for k, exp in enumerate(exposures):
        entry, tasks = array_sources(exp, root, f"{PREFIX}/inputs/{k}", (side, side),
                                     shares_memory=scheduler.shares_memory, create=ckpt.array)
        sources.append(entry)
        ingest.extend(tasks)
    ingested = phases.run("ingest", ckpt.tasks("ingest", ingest))
    after = None if eager else new_task(barrier, *ingested)

    nw, cy, cx = grid.shape
    n_exp = len(exposures)
    chunks = [(p, min(p + planes, nw)) for p in range(0, nw, planes)]
    flux = ckpt.array(f"{PREFIX}/single/flux", (n_exp, nw, cy, cx), np.float32,
                      (1, planes, cy, cx), np.nan,
                      dimension_names=("exposure", "wavelength", "y", "x"))
    weight = ckpt.array(f"{PREFIX}/single/weight", (n_exp, nw, cy, cx), np.float32,
                        (1, planes, cy, cx), 0.0,
                        dimension_names=("exposure", "wavelength", "y", "x"))
    median = ckpt.array(f"{PREFIX}/median", grid.shape, np.float32, (planes, cy, cx),
                        np.nan, dimension_names=("wavelength", "y", "x"),
                          attributes={"kind": "IFU median cube", "ra0": grid.ra0,
                                      "dec0": grid.dec0, "xi0": grid.xi0, "eta0": grid.eta0,
                                      "scale_arcsec": grid.scale, "wave0": grid.wave0,
                                      "dwave": grid.dwave, "roi": list(grid.roi),
                                      "weighting": weighting})
    cube_tasks = {(k, c): new_task(single_cube_chunk,
        sources[k], coords[k], stats[k], grid, k, c, bad_mask, flux, weight, after)
        for k in range(n_exp) for c in chunks}
    keys = list(cube_tasks)
    built = dict(zip(keys, phases.run("cube", ckpt.tasks(
        "cube", [cube_tasks[key] for key in keys], decode=int)), strict=True))
    thr_tasks = [new_task(cube_weight_threshold,
        weight, k, chunks, maskpt, *[built[(k, c)] for c in chunks]) for k in range(n_exp)]
    thresholds = phases.run("threshold", ckpt.tasks("threshold", thr_tasks))
    med_tasks = [new_task(
        median_chunk, flux, weight, thresholds, c, median, *[built[(k, c)] for k in range(n_exp)])
        for c in chunks]
    medians = phases.run("median", ckpt.tasks("median", med_tasks, decode=int))
    median_done = None if eager else new_task(barrier, *medians)

    targets: list[Any] = [None] * n_exp
    if eager:
        targets = [ckpt.array(f"{PREFIX}/dq/{k}", e.shape, np.uint32, (side, side), 0)
                   for k, e in enumerate(exposures)]
    flags = []
    for k, exp in enumerate(exposures):
        flags.append({t: new_task(blot_and_flag_cube_tile,
            sources[k], coords[k], payloads[k], roles[k], t, shape=exp.shape, grid=grid,
            median=median, snr=snr, scale=scale, backg=exp.background_for_flagging(backg),
            out=targets[k], after=median_done) for t in Tiling(exp.shape, (side, side))})
    run = CubeMethodRun(dq=[], counts=[], median=median, grid=grid, timings=timings,
                        single_flux=flux, single_weight=weight,
                        thresholds=list(thresholds) if eager else thresholds)
    if eager:
        flat = ckpt.tasks("flag", [task for per_tile in flags for task in per_tile.values()],
                          encode=operator.itemgetter("n"), decode=lambda v: {"n": int(v)})
        it = iter(flat)
        flags = [{t: next(it) for t in per_tile} for per_tile in flags]
    _finish(run, exposures, flags, phases, targets, side)
    return run


def _finish(run: CubeMethodRun, exposures: list[Exposure], flags: list[dict[Tile, Any]],
            phases: PhaseRunner, targets: list[Any], side: int) -> None:
    counts = [new_task(
        sum, [new_task(operator.getitem, task, "n") for task in per_tile.values()])
        for per_tile in flags]
    if phases.eager:
        run.counts = [int(n) for n in phases.run("flag", counts)]
        run.dq = list(targets)
        for exp, n in zip(exposures, run.counts, strict=True):
            log.info("Exposure %s: %d pixels flagged as outliers (%.3f%%)", exp.name, n,
                     100.0 * n / max(1, exp.shape[0] * exp.shape[1]))
        return
    lazy = []
    for exp, per_tile in zip(exposures, flags, strict=True):
        tiling = Tiling(exp.shape, (side, side))
        rows: list[list[Any]] = [[None] * tiling.nblocks[1] for _ in range(tiling.nblocks[0])]
        for t, task in per_tile.items():
            rows[t.i][t.j] = da.from_delayed(
                new_task(operator.getitem, task, "dq"), shape=t.shape,
                dtype=np.uint32, meta=np.empty((0, 0), dtype=np.uint32))
        lazy.append(da.block(rows))
    run.dq = lazy
    run.counts = counts
