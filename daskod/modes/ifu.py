"""IFU mode: validate the IFU parameters, group exposures by detector, run a method.

``ifu_method="difference"`` (the reference's behaviour since 2023, docs/algorithm.md
section 4.1) runs per detector (:mod:`daskod.ifu.difference`); ``ifu_method="cube"`` (the
older method, 4.2) builds single-exposure cubes on one grid, their median, and blots it back
(:mod:`daskod.ifu.cube_method`). Both return an :class:`~daskod.OutlierResult`.
"""

from __future__ import annotations

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
)
from daskod.engine._budget import scheduler_facts, task_budget
from daskod.engine._fingerprint import container_token, wcs_token
from daskod.engine._run import Context, Outputs, flag_outputs
from daskod.engine._store import fingerprint
from daskod.exposure import Exposure, validate_exposures
from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import parse_pair
from daskod.geometry._tiles import Tiling
from daskod.ifu._difference_kernels import CENTRAL_BORDER, parse_kernel_size
from daskod.io._store import store_bytes

__all__ = ["IFU_EXP_TYPES", "IFU_METHODS", "DIFFAXIS", "IFUParams", "IFUPlan",
           "looks_like_ifu", "detector_groups"]

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


def _tile_for(per_task: int, tile_size: int | None) -> int:
    if tile_size is not None:
        if isinstance(tile_size, bool) or int(tile_size) < 1:
            msg = f"tile_size must be a positive number of pixels, got {tile_size!r}."
            raise ValueError(msg)
        return int(tile_size)
    edge = int(math.sqrt(0.75 * per_task / _BYTES_PER_PIXEL))
    return max(64, min(2048, edge // 16 * 16))


class IFUPlan:
    """Validated IFU exposures and parameters: every check runs before any pixel is read."""

    def __init__(self, exposures: Any, params: IFUParams, *, snr: Any, scale: Any,
                 backg: float, maskpt: float, good_bits: Any, tile_size: int | None,
                 save_intermediate: bool, check_errors: bool = False) -> None:
        self.params, self.tile_size, self.save = params, tile_size, save_intermediate
        self.cube = params.ifu_method == "cube"
        self.snr, self.scale = parse_pair(snr, "snr"), parse_pair(scale, "scale")
        self.backg, self.maskpt = float(backg), float(maskpt)
        self.bad_mask = interpret_good_bits(good_bits)
        self.items = validate_exposures(exposures, need_wcs=self.cube,
                                        check_errors=self.cube and check_errors)
        self.verify_inputs = False
        self.resolved: dict[str, Any] = {}
        given, self.kernel = parse_kernel_size(params.kernel_size)
        if given != self.kernel and not self.cube:
            msg = (f"kernel_size {params.kernel_size!r} has an even size; the median filter "
                   f"needs odd sizes, so {self.kernel[0]} {self.kernel[1]} is used (as the "
                   "reference does).")
            warnings.warn(msg, DaskodWarning, stacklevel=4)
            log.warning(msg)
        self.skip_reason = None
        if len(self.items) < 2:
            self.skip_reason = (
                f"IFU outlier detection needs at least 2 exposures, got {len(self.items)}; "
                "the step is skipped and DQ is unchanged, as the reference does.")
            return
        self.diffaxis = _resolve_diffaxis(self.items, params.diffaxis)
        self.groups = detector_groups(self.items)
        if self.cube:
            from daskod.ifu.cube_method import check_cube_params

            check_cube_params(self.items, params)
        else:
            _check_groups(self.items, self.groups)
        for det, idx in self.groups.items():
            if len(idx) < 2:
                log.warning("Detector %s has one exposure (%s): its minimum difference is "
                            "that exposure's own, as in the reference.", det,
                            self.items[idx[0]].name)
        self.resolved = {"diffaxis": self.diffaxis,
                         "kernel_used": f"{self.kernel[0]} {self.kernel[1]}"}
        log.info("IFU %s method: %d exposure(s) on detector(s) %s, diffaxis %d",
                 params.ifu_method, len(self.items), list(self.groups), self.diffaxis)

    def budget(self, sched: Any, memory_limit: Any, tile_size: int | None) -> Any:
        budget = task_budget(memory_limit=memory_limit, **scheduler_facts(sched))
        if sched.client is None:
            sched.num_workers = budget.num_workers
        if not self.cube:  # the floor and the percentile gather 8 bytes per pixel at once
            need = 8 * max(math.prod(e.shape) for e in self.items)
            room = budget.per_task_bytes * budget.num_workers
            if need > room:
                msg = (f"memory_limit leaves {room / 2**20:.0f} MiB for tasks, but the "
                       "difference method's exact statistics gather "
                       f"{need / 2**20:.0f} MiB (8 bytes per detector pixel); raise "
                       "memory_limit.")
                raise MemoryBudgetError(msg)
        return budget

    def fingerprints(self) -> tuple[dict[str, str], dict[str, Any]]:
        inputs = {e.name: container_token(
            e, e.detector, e.instrument, e.shape, e.background_level, e.background_subtracted,
            wcs_token(e.wcs, e.shape) if self.cube else None, content=self.verify_inputs)
            for e in self.items}
        return inputs, {"mode": "ifu", **{k: str(v) for k, v in vars(self.params).items()},
                        "snr": self.snr, "scale": self.scale, "backg": self.backg,
                        "maskpt": self.maskpt, "bad_mask": self.bad_mask}

    def store_bytes(self, sched: Any) -> int:
        return store_bytes(self.items, shares_memory=sched.shares_memory,
                           median_pixels=2 * max(math.prod(e.shape) for e in self.items))

    def layout(self, budget: Any) -> dict[str, Any]:
        self.per_task = budget.per_task_bytes
        if self.cube:
            return {"planes": self.tile_size, "side": self.tile_size}
        return {"tile": _tile_for(budget.per_task_bytes, self.tile_size)}

    def build(self, ctx: Context) -> Outputs:
        if self.cube:
            from daskod.modes.ifu_cube import build_cube_method

            return build_cube_method(ctx, self)
        return self._build_difference(ctx)

    def _build_difference(self, ctx: Context) -> Outputs:
        from daskod.ifu.difference import (
            difference_tile,
            extended_region,
            flag_tile,
            floor_task,
            normalise_tile,
            percentile_task,
        )

        tile, n = int(ctx.layout["tile"]), len(self.items)
        inputs = self.fingerprints()[0]
        params = self.fingerprints()[1]
        sources = [ctx.sources(e, f"inputs/{k}", (tile, tile), fingerprint(inputs[e.name]))
                   for k, e in enumerate(self.items)]
        refs: dict[int, dict[tuple[int, int], Any]] = {k: {} for k in range(n)}
        stores: list[tuple[Any, Any]] = [None] * n  # type: ignore[list-item]
        info_all: dict[str, Any] = {}
        scalars: dict[str, Any] = {}
        filter_values = max(1, self.per_task // 64)
        halo_k = (self.kernel[0] // 2, self.kernel[1] // 2)
        for det, idx in self.groups.items():
            shape = self.items[idx[0]].shape
            tiles = list(Tiling(shape, (tile, tile)))
            fp = fingerprint([inputs[self.items[k].name] for k in idx], params, tile)
            prefix = f"ifu_difference/{det}"
            attrs = {"detector": det, "kernel_size": list(self.kernel),
                     "threshold_percent": float(self.params.threshold_percent),
                     "diffaxis": int(self.diffaxis)}
            minarr = ctx.stored(f"{prefix}/minarr", shape, np.float64, (tile, tile), np.nan,
                                fingerprint=fp, attributes=attrs)
            diff_targets: tuple[Any, ...] = (minarr,)
            if self.save:
                diff_targets += (ctx.stored(f"{prefix}/diffarr", (len(idx), *shape), np.float64,
                                            (len(idx), tile, tile), np.nan, fingerprint=fp,
                                            attributes=attrs),)
            halo = (1, 0) if self.diffaxis == 0 else (0, 1)
            diff = {}
            for t in tiles:
                region = extended_region(t, shape, halo)
                blocks = [(t.i, t.j), (0, t.i, t.j)][:len(diff_targets)]
                diff[(t.i, t.j)] = ctx.fill(
                    f"difference{det}", (t.i, t.j), diff_targets, difference_tile,
                    [{name: s.reads(region) for name, s in sources[k].items()} for k in idx],
                    t, shape=shape, diffaxis=self.diffaxis, keep_differences=self.save,
                    block=blocks if self.save else None)
            floor = ctx.stored(f"{prefix}/floor", (1,), np.float64, (1,), np.nan,
                               fingerprint=fp)
            floor_ref = ctx.fill(f"floor{det}", (0,), (floor,), floor_task, list(diff.values()),
                                 tile)
            minnorm = ctx.stored(f"{prefix}/minnorm", shape, np.float64, (tile, tile), np.nan,
                                 fingerprint=fp, attributes=attrs)
            norm_targets: tuple[Any, ...] = (minnorm,)
            if self.save:
                norm_targets += (ctx.stored(f"{prefix}/normarr", shape, np.float64,
                                            (tile, tile), np.nan, fingerprint=fp,
                                            attributes=attrs),)
            norm = {}
            for t in tiles:
                rs, cs = extended_region(t, shape, halo_k)
                deps = [diff[(i, j)] for i in range(rs.start // tile, (rs.stop - 1) // tile + 1)
                        for j in range(cs.start // tile, (cs.stop - 1) // tile + 1)]
                norm[(t.i, t.j)] = ctx.fill(
                    f"normalise{det}", (t.i, t.j), norm_targets, normalise_tile, deps,
                    floor_ref, t, shape=shape, kernel=self.kernel, max_values=filter_values,
                    keep_norm=self.save)
            pct = ctx.stored(f"{prefix}/pct", (1,), np.float64, (1,), np.nan, fingerprint=fp)
            pct_ref = ctx.fill(f"percentile{det}", (0,), (pct,), percentile_task,
                               list(norm.values()), shape,
                               float(self.params.threshold_percent), tile)
            for k in idx:
                grid = tuple(-(-m // tile) for m in shape)
                stores[k] = (ctx.stored(f"outputs/{k}/dq", shape, np.uint32, (tile, tile), 0,
                                        fingerprint=fingerprint(fp, k, "dq")),
                             ctx.stored(f"outputs/{k}/count", grid, np.int64, (1, 1), 0,
                                        fingerprint=fingerprint(fp, k, "dq")))
                for t in tiles:
                    refs[k][(t.i, t.j)] = ctx.fill(
                        "flag", (k, t.i, t.j), stores[k], flag_tile,
                        {name: s.reads(t.slices) for name, s in sources[k].items()},
                        norm[(t.i, t.j)], diff[(t.i, t.j)], pct_ref, t,
                        second_check=bool(self.params.ifu_second_check), block=(t.i, t.j))
            info = {"exposures": [self.items[k].name for k in idx], "kernel_size": self.kernel,
                    "diffaxis": self.diffaxis,
                    "minarr": ctx.output(f"minarr{det}", diff, minarr),
                    "minnorm": ctx.output(f"minnorm{det}", norm, minnorm)}
            if self.save:
                info["diffarr"] = ctx.output(f"diffarr{det}", {(0, *i): r for i, r in
                                                               diff.items()},
                                             diff_targets[1], which=1)
                info["normarr"] = ctx.output(f"normarr{det}", norm, norm_targets[1], which=1)
            scalars[det] = {"nfloor": ctx.output(f"nfloor{det}", {(0,): floor_ref}, floor),
                            "pct": ctx.output(f"pct{det}", {(0,): pct_ref}, pct)}
            info_all[det] = info
        out = flag_outputs(ctx, [refs[k] for k in range(n)], stores)
        out.extras = {"ifu": info_all}
        out.scalars = {"ifu": scalars}
        return out
