"""IFU mode: validate the IFU parameters, group exposures by detector, run a method.

``ifu_method="difference"`` (the reference's behaviour since 2023, docs/algorithm.md
section 4.1) runs per detector (:mod:`daskod.ifu.difference`); ``ifu_method="cube"`` (the
older method, 4.2) builds single-exposure cubes on one grid, their median, and blots it back
(:mod:`daskod.ifu.cube_method`). Both return an :class:`~daskod.OutlierResult`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod._exceptions import (
    DaskodWarning,
    InputError,
    MemoryBudgetError,
    WCSError,
)
from daskod._result import OutlierResult
from daskod.exposure import Exposure, validate_exposures
from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import parse_pair
from daskod.ifu._difference_kernels import CENTRAL_BORDER, parse_kernel_size

__all__ = ["IFU_EXP_TYPES", "IFU_METHODS", "DIFFAXIS", "IFUParams", "looks_like_ifu",
           "detector_groups", "detect_ifu"]

log = logging.getLogger(__name__)

IFU_EXP_TYPES = ("NRS_IFU", "MIR_MRS")
IFU_METHODS = ("difference", "cube")
#: Axis of the across-slice neighbours per instrument (the reference's ``diffaxis``).
DIFFAXIS = {"MIRI": 1, "NIRSPEC": 0}
#: Bytes per tile pixel held by a difference-method task (float64 temporaries, the DQ, SCI,
#: ERR and variances of one exposure). A quarter of a task's budget goes to the median
#: filter's strips (two float64 copies of the window values).
_BYTES_PER_PIXEL = 96


def _positive_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        msg = f"{name} must be a positive number or None (derived from the data), got {value!r}."
        raise ValueError(msg)
    return float(value)


@dataclass(frozen=True)
class IFUParams:
    """IFU parameters (reference names and defaults), validated before any work."""

    ifu_method: str = "difference"
    kernel_size: str | tuple[int, int] = "7 7"
    threshold_percent: float = 99.8
    ifu_second_check: bool = False
    diffaxis: int | None = None
    cube_spatial_scale: float | None = None
    cube_spectral_scale: float | None = None
    cube_weighting: str = "emsm"
    cube_roi: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.ifu_method not in IFU_METHODS:
            msg = (f"ifu_method must be 'difference' (the reference) or 'cube' (the older "
                   f"cube-median method), got {self.ifu_method!r}.")
            raise ValueError(msg)
        parse_kernel_size(self.kernel_size)
        q = self.threshold_percent
        if isinstance(q, bool) or not isinstance(q, int | float) or not (
                math.isfinite(q) and 0 <= q <= 100):
            msg = f"threshold_percent must be a number in [0, 100], got {q!r}."
            raise ValueError(msg)
        if not isinstance(self.ifu_second_check, bool | np.bool_):
            msg = f"ifu_second_check must be True or False, got {self.ifu_second_check!r}."
            raise ValueError(msg)
        if self.diffaxis is not None and (isinstance(self.diffaxis, bool) or
                                          self.diffaxis not in (0, 1)):
            msg = (f"diffaxis must be 0 (neighbours up/down, NIRSpec), 1 (left/right, MIRI) "
                   f"or None (from the instrument), got {self.diffaxis!r}.")
            raise ValueError(msg)
        _positive_or_none(self.cube_spatial_scale, "cube_spatial_scale")
        _positive_or_none(self.cube_spectral_scale, "cube_spectral_scale")
        if self.cube_weighting not in ("emsm", "msm"):
            msg = (f"cube_weighting must be 'emsm' (exponential) or 'msm' (modified Shepard), "
                   f"got {self.cube_weighting!r}.")
            raise ValueError(msg)
        self.roi  # noqa: B018 - validates

    @property
    def kernel(self) -> tuple[int, int]:
        """The odd filter sizes used (rows, columns)."""
        return parse_kernel_size(self.kernel_size)[1]

    @property
    def roi(self) -> tuple[float, float] | None:
        if self.cube_roi is None:
            return None
        try:
            pair = tuple(float(v) for v in self.cube_roi)
        except (TypeError, ValueError):
            pair = ()
        if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
            msg = (f"cube_roi must be (spatial, spectral) region of interest, two positive "
                   f"numbers, or None (derived), got {self.cube_roi!r}.")
            raise ValueError(msg)
        return pair  # type: ignore[return-value]


def looks_like_ifu(exposures: Any) -> bool:
    """True when exposures are IFU data: an IFU ``meta["exp_type"]`` or a WCS with 3 world
    axes (detector -> ra, dec, wavelength). Reads no pixel."""
    if isinstance(exposures, Exposure):
        exposures = [exposures]
    try:
        items = list(exposures)
    except TypeError:
        return False
    for exp in items:
        if not isinstance(exp, Exposure):
            continue
        meta = exp.meta if isinstance(exp.meta, dict) else {}
        if str(meta.get("exp_type", "")).upper() in IFU_EXP_TYPES:
            return True
        if getattr(exp.wcs, "world_n_dim", None) == 3:
            return True
    return False


def _safe_name(detector: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "_", detector) or "detector"


def detector_groups(exposures: list[Exposure]) -> OrderedDict[str, list[int]]:
    """Exposure indices per detector (lower case, sorted as the reference's ``np.unique``);
    exposures without a detector name form one group ``"detector"``."""
    groups: dict[str, list[int]] = {}
    for k, exp in enumerate(exposures):
        key = _safe_name(str(exp.detector).lower()) if exp.detector else "detector"
        groups.setdefault(key, []).append(k)
    return OrderedDict(sorted(groups.items()))


def _resolve_diffaxis(items: list[Exposure], diffaxis: int | None) -> int:
    instruments = {None if e.instrument is None else str(e.instrument).upper() for e in items}
    if len(instruments) > 1:
        by = {str(i): [e.name for e in items if (None if e.instrument is None
                                                  else str(e.instrument).upper()) == i][:3]
              for i in instruments}
        msg = (f"IFU exposures must come from one instrument, got {by}; run each "
               "instrument's exposures separately.")
        raise InputError(msg, exposure=items[0].name)
    if diffaxis is not None:
        return int(diffaxis)
    (instrument,) = instruments
    if instrument not in DIFFAXIS:
        msg = (f"Cannot tell the across-slice axis of instrument {instrument!r} (exposure "
               f"{items[0].name!r}); pass diffaxis=1 (neighbours left/right, as MIRI) or "
               "diffaxis=0 (up/down, as NIRSpec).")
        raise InputError(msg, exposure=items[0].name)
    return DIFFAXIS[instrument]


def _check_groups(items: list[Exposure], groups: dict[str, list[int]]) -> None:
    for det, idx in groups.items():
        shape = items[idx[0]].shape
        for k in idx[1:]:
            if items[k].shape != shape:
                msg = (f"Exposure {items[k].name!r} on detector {det!r} has shape "
                       f"{items[k].shape} but {items[idx[0]].name!r} has {shape}; the "
                       "difference method compares pixels of one detector grid.")
                raise InputError(msg, exposure=items[k].name)
        if min(shape) <= 2 * CENTRAL_BORDER:
            msg = (f"Exposure {items[idx[0]].name!r} has shape {shape}; the percentile is "
                   f"taken inside a {CENTRAL_BORDER}-pixel border, so IFU frames need more "
                   f"than {2 * CENTRAL_BORDER} rows and columns.")
            raise InputError(msg, exposure=items[idx[0]].name)


def _check_spectral_wcs(items: list[Exposure]) -> None:
    for exp in items:
        n = getattr(exp.wcs, "world_n_dim", None)
        if n is not None and n != 3:
            msg = (f"Exposure {exp.name!r}: its WCS has {n} world axes, no spectral axis; "
                   "ifu_method='cube' needs detector (x, y) -> (ra, dec, wavelength). Use "
                   "ifu_method='difference', which needs no WCS.")
            raise WCSError(msg, exposure=exp.name)


def _open_checkpoints(root: Any, items: list[Exposure], resolved: dict[str, Any],
                      tile_size: int | None, *, enabled: bool, overwrite: bool) -> Any:
    """Checkpoints of an IFU run: the fingerprint covers the parameters, the inputs (arrays,
    detector, and what the WCS does) and the tile size asked for; the layout derived from
    the memory budget is noted in the record so that a resumed run repeats it."""
    from daskod.engine._checkpoint import Checkpoints, container_token, wcs_token

    if not enabled:
        return Checkpoints.disabled(root)
    inputs = {exp.name: container_token(exp, exp.detector, exp.instrument, exp.shape,
                                        exp.background_level, exp.background_subtracted)
              for exp in items}
    geometry = {exp.name: wcs_token(exp.wcs, exp.shape) if resolved.get("ifu_method") == "cube"
                else "none" for exp in items}
    parts = {"mode": "ifu", "parameters": {k: str(v) for k, v in resolved.items()},
             "inputs": inputs, "geometry": geometry, "layout": {"tile_size": tile_size}}
    return Checkpoints.open(root, parts=parts, overwrite=overwrite)


def _tile_for(per_task: int, tile_size: int | None) -> int:
    if tile_size is not None:
        if isinstance(tile_size, bool) or int(tile_size) < 1:
            msg = f"tile_size must be a positive number of pixels, got {tile_size!r}."
            raise ValueError(msg)
        return int(tile_size)
    edge = int(math.sqrt(0.75 * per_task / _BYTES_PER_PIXEL))
    return max(64, min(2048, edge // 16 * 16))


def _check_gather(items: list[Exposure], per_task: int, workers: int) -> None:
    """The floor and the percentile gather one float64 per detector pixel in one task (they
    run alone, so the whole task budget is theirs)."""
    need = 8 * max(int(np.prod(e.shape)) for e in items)
    if need > per_task * workers:
        msg = (f"memory_limit leaves {per_task * workers / 2**20:.0f} MiB for tasks, but the "
               f"difference method's exact statistics gather {need / 2**20:.0f} MiB (8 bytes "
               "per detector pixel); raise memory_limit.")
        raise MemoryBudgetError(msg)


def detect_ifu(exposures: Any, *, params: IFUParams, snr: Any, scale: Any, backg: float,
               maskpt: float, good_bits: Any, save_intermediate_results: bool,
               in_memory: bool, memory_limit: Any, tile_size: int | None, scheduler: Any,
               progress: Any = None, store: Any = None, compute: bool = True,
               overwrite_store: bool = False,
               resolved: dict[str, Any] | None = None) -> OutlierResult:
    """IFU outlier detection (called by :func:`daskod.detect_outliers` with ``mode="ifu"``).

    Every check runs before any pixel is read. Fewer than two exposures skip the step, as
    the reference does. ``progress`` makes a context manager (a progress bar) from the
    resolved scheduler.
    """
    from daskod.engine._budget import scheduler_with_task_budget
    from daskod.engine._dispatch import working_directory

    cube = params.ifu_method == "cube"
    snr_pair, scale_pair = parse_pair(snr, "snr"), parse_pair(scale, "scale")
    bad_mask = interpret_good_bits(good_bits)
    items = validate_exposures(exposures, need_wcs=cube)
    resolved = dict(resolved or {})
    given, kernel = parse_kernel_size(params.kernel_size)
    if given != kernel and not cube:
        msg = (f"kernel_size {params.kernel_size!r} has an even size; the median filter "
               f"needs odd sizes, so {kernel[0]} {kernel[1]} is used (as the reference does).")
        warnings.warn(msg, DaskodWarning, stacklevel=3)
        log.warning(msg)
    if len(items) < 2:
        reason = (f"IFU outlier detection needs at least 2 exposures, got {len(items)}; the "
                  "step is skipped and DQ is unchanged, as the reference does.")
        return OutlierResult.skipped_step(reason, params=resolved, exposures=items,
                                          stacklevel=3)
    diffaxis = _resolve_diffaxis(items, params.diffaxis)
    groups = detector_groups(items)
    if cube:
        _check_spectral_wcs(items)
    else:
        _check_groups(items, groups)
    for det, idx in groups.items():
        if len(idx) < 2:
            log.warning("Detector %s has one exposure (%s): its minimum difference is that "
                        "exposure's own, as in the reference.", det, items[idx[0]].name)
    resolved.update(diffaxis=diffaxis, kernel_used=f"{kernel[0]} {kernel[1]}")
    tile = _tile_for(0, tile_size) if tile_size is not None and not cube else None
    sched, per_task = scheduler_with_task_budget(scheduler, memory_limit)
    keep = save_intermediate_results or not in_memory or not compute or store is not None
    progress_ctx = progress(sched) if progress is not None else contextlib.nullcontext()
    log.info("IFU %s method: %d exposure(s) on detector(s) %s, diffaxis %d", params.ifu_method,
             len(items), list(groups), diffaxis)
    with working_directory(store, keep=keep) as root, progress_ctx, sched.session():
        ckpt = _open_checkpoints(root, items, resolved, tile_size,
                                 enabled=compute and store is not None, overwrite=overwrite_store)
        if cube:
            dq, counts, median, timings, extra = _run_cube(
                items, params, root=root, sched=sched, eager=compute, per_task=per_task,
                snr=snr_pair, scale=scale_pair, backg=backg, maskpt=maskpt,
                bad_mask=bad_mask, tile_size=tile_size, checkpoints=ckpt)
        else:
            _check_gather(items, per_task, sched.num_workers)
            tile = tile or ckpt.noted("tile") or _tile_for(per_task, None)
            ckpt.note(tile=tile)
            dq, counts, median, timings, extra = _run_difference(
                items, groups, params, kernel, diffaxis, root=root, sched=sched,
                eager=compute, tile=tile, save=save_intermediate_results,
                filter_values=max(1, per_task // 64), checkpoints=ckpt)
        ckpt.complete()
        if compute and in_memory:
            dq = [np.asarray(d) for d in dq]
            median = None if median is None else np.asarray(median)
            for info in extra.values():
                for key in ("minarr", "minnorm"):
                    if key in info:
                        info[key] = np.asarray(info[key])
        result = OutlierResult(status="COMPLETE", params=resolved, exposures=items, dq=dq,
                               median=median, n_flagged=counts, store=root if keep else None,
                               timings=timings, ifu=extra, checkpoints=ckpt.summary())
    if keep and store is None and not save_intermediate_results:
        result.remove_store_with_result(root)
    if compute:
        result.log_stats()
    return result


def _run_difference(items: list[Exposure], groups: dict[str, list[int]], params: IFUParams,
                    kernel: tuple[int, int], diffaxis: int, *, root: Any, sched: Any,
                    eager: bool, tile: int, save: bool, filter_values: int,
                    checkpoints: Any = None
                    ) -> tuple[list[Any], list[Any], None, dict[str, float], dict[str, Any]]:
    import dask.array as da

    from daskod.ifu.difference import build_difference

    dq: list[Any] = [None] * len(items)
    counts: list[Any] = [0] * len(items)
    timings: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for det, idx in groups.items():
        run = build_difference(items, idx, detector=det, root=root, scheduler=sched,
                               eager=eager, tile=tile, diffaxis=diffaxis, kernel=kernel,
                               threshold_percent=float(params.threshold_percent),
                               second_check=bool(params.ifu_second_check),
                               save_intermediate=save, filter_values=filter_values,
                               checkpoints=checkpoints)
        for pos, k in enumerate(idx):
            dq[k] = run.dq[pos]
            counts[k] = run.counts[pos]
        for name, seconds in run.timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
        info = {"exposures": [items[k].name for k in idx], "kernel_size": kernel,
                "diffaxis": diffaxis, "nfloor": run.nfloor, "pct": run.pct,
                "minarr": da.from_zarr(run.minarr), "minnorm": da.from_zarr(run.minnorm)}
        if save:
            info["normarr"] = da.from_zarr(run.normarr)
            info["diffarr"] = da.from_zarr(run.diffarr)
        extra[det] = info
    return dq, counts, None, timings, extra


def _run_cube(items: list[Exposure], params: IFUParams, *, root: Any, sched: Any, eager: bool,
              per_task: int, snr: tuple[float, float], scale: tuple[float, float],
              backg: float, maskpt: float, bad_mask: int, tile_size: int | None,
              checkpoints: Any = None
              ) -> tuple[list[Any], list[Any], Any, dict[str, float], dict[str, Any]]:
    import dask.array as da

    from daskod.ifu.cube_method import build_cube_method

    run = build_cube_method(
        items, root=root, scheduler=sched, eager=eager, budget_bytes=per_task, snr=snr,
        scale=scale, backg=backg, maskpt=maskpt, bad_mask=bad_mask,
        spatial_scale=params.cube_spatial_scale, spectral_scale=params.cube_spectral_scale,
        weighting=params.cube_weighting, roi=params.roi, plane_chunk=tile_size,
        checkpoints=checkpoints)
    median = None if run.median is None else da.from_zarr(run.median)
    dq = [d if hasattr(d, "dask") else da.from_zarr(d) for d in run.dq]
    return dq, list(run.counts), median, dict(run.timings), {"cube": {"grid": run.grid}}
