"""The public entry points: :func:`detect_outliers` and :class:`OutlierDetection`."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod._result import OutlierResult
from daskod.cube import Cube
from daskod.engine._graph import as_dask
from daskod.engine._run import GRAPH_OUTPUTS, run_mode
from daskod.exposure import Exposure, validate_exposures
from daskod.flag._dq import DO_NOT_USE
from daskod.modes._improved import resolve_options
from daskod.modes._params import ImagingParams
from daskod.modes.imaging import ImagingPlan
from daskod.options import get_option

__all__ = ["detect_outliers", "OutlierDetection", "MODES"]

log = logging.getLogger(__name__)

MODES = ("imaging", "tso", "coron", "ifu", "spec")


def detect_outliers(
    exposures: list[Exposure] | Exposure,
    *,
    mode: str | None = None,
    weight_type: str = "ivm",
    pixfrac: float = 1.0,
    kernel: str = "square",
    fillval: str = "NAN",
    maskpt: float = 0.7,
    snr: str | tuple[float, float] = "5.0 4.0",
    scale: str | tuple[float, float] = "1.2 0.7",
    backg: float = 0.0,
    resample_data: bool = True,
    good_bits: str | int | None = "~DO_NOT_USE",
    save_intermediate_results: bool = False,
    in_memory: bool = True,
    pixmap_stepsize: float | None = None,
    pixmap_order: int | None = None,
    preset: str | None = None,
    noise_model: str | None = None,
    source_noise: float | None = None,
    combine: str | None = None,
    rolling_window_width: int = 25,
    rolling_nan_policy: str = "propagate",
    ifu_method: str = "difference",
    kernel_size: str | tuple[int, int] = "7 7",
    threshold_percent: float = 99.8,
    ifu_second_check: bool = False,
    diffaxis: int | None = None,
    cube_spatial_scale: float | None = None,
    cube_spectral_scale: float | None = None,
    cube_weighting: str = "emsm",
    cube_roi: tuple[float, float] | None = None,
    memory_limit: int | str | None = None,
    tile_size: int | None = None,
    scheduler: Any = None,
    progress: bool = False,
    store: str | None = None,
    storage_options: dict[str, Any] | None = None,
    compute: bool = True,
    inplace: bool = False,
    overwrite_store: bool = False,
    verify_inputs: bool = False,
) -> OutlierResult:
    """Find cosmic rays and other outliers the way the JWST outlier-detection step does.

    Imaging mode (docs/algorithm.md section 2): drizzle each exposure group onto a common sky grid,
    take the NaN-median of the groups, blot it back onto each exposure, flag pixels by the
    noise + derivative rule, and set ``DQ |= DO_NOT_USE | OUTLIER`` there. Time-series
    (``"tso"``) and coronagraphic (``"coron"``) modes take one :class:`daskod.Cube` and compare
    each integration with a rolling median (TSO) or the median over integrations (section 3).
    Out of core: every phase works on tiles or chunks of integrations read from, and written
    to, a Zarr working store.

    Parameters
    ----------
    exposures : list of Exposure, or Cube
        The inputs; never modified unless ``inplace=True``.
    mode : str or None, optional
        ``"imaging"``, ``"tso"``, ``"coron"``, ``"ifu"`` or ``"spec"``. None guesses as the
        reference: a list of exposures is IFU when their ``meta["exp_type"]`` is NRS_IFU or
        MIR_MRS or their WCS has three world axes, slit spectroscopy (``"spec"``) when it is
        NRS_FIXEDSLIT, NRS_MSASPEC, MIR_LRS-FIXEDSLIT, NRC_WFSS or NIS_WFSS, else imaging; a
        cube is coronagraphic by its ``exp_type``, else a time series when its visit is one
        (``tso_visit``) or its exposure type is. Spec mode runs each source (the inputs'
        ``meta["source_name"]``, else ``meta["source_id"]``; one source when neither is set)
        on its own rectified frame, all sources in one graph; per-source medians and
        ``median_err`` are in ``result.spec``.
    weight_type, pixfrac, kernel, fillval, maskpt, snr, scale, backg, resample_data, good_bits
        The reference step's parameters, same names, meanings and defaults.
    save_intermediate_results : bool, optional
        Keep the working store (drizzled groups, median, DQ) after the run; its path is
        ``result.store``.
    in_memory : bool, optional
        True (the reference's default): results come back as numpy arrays and a temporary
        store is removed. False: results are Dask arrays reading the store (bounded memory
        for many exposures); the store lives as long as the result.
    pixmap_stepsize, pixmap_order : optional
        Coarse pixel-map grid (default 16 px, cubic: < 1e-5 px error); ``pixmap_stepsize=1``
        evaluates the WCS on every pixel as the reference does by default.
    preset : {None, "parity", "improved"}, optional
        Imaging: a set of the three options below. None and ``"parity"`` are the reference;
        ``"improved"`` is ``noise_model="local", source_noise=0.06, combine="minmed"``, which
        on the simulator's truth finds more faint cosmic rays, spares undersampled star
        cores and handles 2-3 exposure coverage (README, "Better than the reference").
        Options given explicitly win over the preset's.
    noise_model : {"exposure", "median", "local"}, optional
        Imaging: the noise term of the flag rule. ``"exposure"`` (default): each exposure's
        own ERR, as the reference; a cosmic ray that the ramp fit missed inflates it, which
        hides faint hits. ``"median"``: the median of the drizzled ERR arrays, blotted back
        (spec mode's noise term, jwst PR #10753); costs a second drizzle, a second median
        and a second blot (about 1.2-1.3x the run), and flags pixels whose own read noise is
        large (noisy pixels), since the median error does not know it. ``"local"``: the
        exposure's ERR, NaN-median filtered over 3x3 pixels and never below its own read
        noise (``sqrt(VAR_RNOISE)``): a hit no longer raises its own threshold; nearly free.
    source_noise : float, optional
        Imaging: a fraction of the blotted median added, in quadrature, to the noise term
        (default 0, the reference). The median of an undersampled source is smoother than
        the source, so star cores stand above the blot in every exposure (jwst#9989);
        0.06 spares them on the simulator at PSF sigma 0.8 px. Free.
    combine : {"median", "minmed"}, optional
        Imaging: how the drizzled groups are combined. ``"median"`` (default): the
        NaN-median, as the reference. ``"minmed"``: where only 2 or 3 groups cover a pixel
        (where a cosmic ray pulls the median), their minimum replaces the median when it lies
        more than 3 noise units (median ERR / sqrt(groups)) below it, after drizzlepac's
        ``combine_type="minmed"``. Drizzles the ERR arrays too (a second drizzle).
    rolling_window_width : int, optional
        TSO: integrations in the rolling median (default 25); 0, 1, or at least the number
        of integrations use the plain median over all integrations (without the DQ mask, as
        the reference does).
    rolling_nan_policy : {"propagate", "omit"}, optional
        TSO: ``"propagate"`` (the reference) makes a window's median NaN when any sample in it
        is DQ-masked, so nothing near a masked sample is flagged; ``"omit"`` leaves masked
        samples out of the window instead.
    ifu_method : {"difference", "cube"}, optional
        IFU: ``"difference"`` (the reference) flags pixels that differ from their
        across-slice neighbours in every exposure of a detector (docs/algorithm.md section
        4.1; no WCS needed; diagnostics in ``result.ifu``); ``"cube"`` (the older method,
        section 4.2) builds
        single-exposure cubes on one grid, takes their median and blots it back, then uses
        the imaging flag rule (``snr``, ``scale``, ``backg``, ``maskpt``, ``good_bits``).
    kernel_size : str or pair of int, optional
        IFU difference: the median-filter box ``"rows columns"`` (default ``"7 7"``); even
        sizes are bumped by one with a warning, as the reference does.
    threshold_percent : float, optional
        IFU difference: percentile of the normalised minimum difference above which pixels
        are flagged (default 99.8, i.e. 0.2 % of the central pixels).
    ifu_second_check : bool, optional
        IFU difference: also flag pixels whose minimum difference is NaN.
    diffaxis : {0, 1} or None, optional
        IFU difference: axis of the across-slice neighbours; default from the exposures'
        ``instrument`` (MIRI 1, NIRSpec 0).
    cube_spatial_scale, cube_spectral_scale : float, optional
        IFU cube: spaxel size (arcsec) and wavelength step (the WCS's spectral unit) of the
        common grid; default from the data.
    cube_weighting : {"emsm", "msm"}, optional
        IFU cube: exponential or modified-Shepard point-cloud weighting.
    cube_roi : pair of float, optional
        IFU cube: spatial and spectral region of interest; default derived from the scales.
    memory_limit : int or str, optional
        Budget for the run, e.g. ``"1GiB"``; sets tile size and concurrency.
    tile_size : int, optional
        Tile edge in pixels (default: derived from ``memory_limit``). Results do not depend
        on it.
    scheduler : str or distributed.Client, optional
        ``"synchronous"``, ``"threads"``, ``"processes"``, a ``tcp://`` address or a client;
        default: the active distributed client, else threads.
    progress : bool, optional
        Show a progress bar per phase (local schedulers).
    store : str, optional
        Folder of the Zarr working store (kept). Default: a temporary folder under the
        ``temp_dir`` option. A run computed at once into a named store is *resumable*: every
        expensive task is checkpointed there, and calling again with the same inputs,
        parameters and store after a crash or a kill skips the finished tiles (same result).
        A store left by a run with other inputs or parameters is refused with a StoreError.
        An fsspec URL (``"s3://bucket/prefix"``) puts the store on object storage; the
        location is checked (bucket, credentials, a probe write) before any work.
    storage_options : dict, optional
        fsspec options for a ``store`` URL, e.g. ``{"key": ..., "secret": ...,
        "client_kwargs": {"endpoint_url": ...}}``; default: the usual AWS environment
        variables and config files.
    compute : bool, optional
        False builds the whole lazy graph and returns at once; nothing is computed (or read)
        until the result's arrays are. The check for exposures with no usable pixel runs only
        when computing at once.
    inplace : bool, optional
        Also write the new DQ, and NaN into SCI/ERR/VAR where DO_NOT_USE, into the input
        numpy arrays (as the reference updates its models).
    overwrite_store : bool, optional
        Discard what ``store`` holds from an earlier run with other inputs (or of an older
        daskod) instead of refusing it. A store of the same inputs is always reused: the
        phases whose parameters did not change (e.g. the drizzled groups and the median when
        only ``snr``, ``scale`` or ``backg`` changed) are read back, the rest recomputed.
    verify_inputs : bool, optional
        Identify file and Zarr inputs by a hash of their pixels (one extra read of every
        input) instead of their sizes and modification times, so that a resumed run notices
        pixels changed in place. Only matters with a named ``store``.

    Returns
    -------
    OutlierResult
    """
    options = resolve_options(preset, noise_model=noise_model, source_noise=source_noise,
                              combine=combine)
    imaging_kwargs = dict(weight_type=weight_type, pixfrac=pixfrac, kernel=kernel,
                          fillval=fillval, maskpt=maskpt, snr=snr, scale=scale, backg=backg,
                          resample_data=bool(resample_data), good_bits=good_bits,
                          pixmap_stepsize=pixmap_stepsize if pixmap_stepsize is not None
                          else get_option("pixmap_stepsize"),
                          pixmap_order=pixmap_order if pixmap_order is not None
                          else get_option("pixmap_order"))
    mode = _guess_mode(exposures, mode)
    if not options.is_reference and (mode != "imaging" or not resample_data):
        where = f"mode={mode!r}" if mode != "imaging" else "resample_data=False"
        msg = (f"The options {options.changed()} (preset={preset!r}) are defined for imaging "
               f"with resampling only, not with {where}; leave them at their defaults there.")
        raise ValueError(msg)
    if mode in ("tso", "coron"):
        from daskod.modes.cube import CubeParams, CubePlan

        params = CubeParams(maskpt=maskpt, snr=snr, good_bits=good_bits,
                            rolling_window_width=rolling_window_width,
                            rolling_nan_policy=rolling_nan_policy)
        plan: Any = CubePlan(exposures, params, mode=mode, time_chunk=tile_size,
                             save_median=save_intermediate_results)
        resolved = {"mode": mode, **asdict(params)}
    elif mode == "ifu":
        from daskod.modes.ifu import IFUParams, IFUPlan

        ifu = IFUParams(ifu_method=ifu_method, kernel_size=kernel_size,
                        threshold_percent=threshold_percent, ifu_second_check=ifu_second_check,
                        diffaxis=diffaxis, cube_spatial_scale=cube_spatial_scale,
                        cube_spectral_scale=cube_spectral_scale, cube_weighting=cube_weighting,
                        cube_roi=cube_roi)
        plan = IFUPlan(exposures, ifu, snr=snr, scale=scale, backg=backg, maskpt=maskpt,
                       good_bits=good_bits, tile_size=tile_size,
                       save_intermediate=save_intermediate_results, check_errors=compute)
        resolved = {"mode": mode, **vars(ifu), "snr": snr, "scale": scale, "backg": backg,
                    "maskpt": maskpt, "good_bits": good_bits, **plan.resolved}
    elif mode == "spec":
        from daskod.modes.spec import SpecPlan

        if isinstance(exposures, Cube):
            msg = (f"mode='spec' takes a list of daskod.Exposure (slits or images), got the "
                   f"cube {exposures.name!r}.")
            raise TypeError(msg)
        params = ImagingParams(**imaging_kwargs)
        plan = SpecPlan(exposures, params, max_output_pixels=get_option("max_output_pixels"),
                        save_intermediate=save_intermediate_results)
        resolved = {**imaging_kwargs, "mode": mode}
    else:
        if isinstance(exposures, Cube):
            msg = (f"mode='imaging' takes a list of daskod.Exposure, got the cube "
                   f"{exposures.name!r}; use mode='tso' or mode='coron' for cubes.")
            raise TypeError(msg)
        params = ImagingParams(**imaging_kwargs)
        items = validate_exposures(exposures, need_wcs=params.resample_data,
                                   same_shape=not params.resample_data, check_errors=compute)
        plan = ImagingPlan(items, params, max_output_pixels=get_option("max_output_pixels"))
        resolved = {**imaging_kwargs, "mode": mode}
    plan.verify_inputs = bool(verify_inputs)
    if not options.is_reference:  # imaging with resampling (checked above)
        plan.options = options
        resolved.update(asdict(options), preset=preset)
    if plan.skip_reason is not None:
        return OutlierResult.skipped_step(plan.skip_reason, params=resolved,
                                          exposures=plan.items, stacklevel=2)
    run = run_mode(plan, scheduler=scheduler, memory_limit=memory_limit, tile_size=tile_size,
                   store=store, storage_options=storage_options, compute=compute,
                   in_memory=in_memory, keep_store=save_intermediate_results,
                   overwrite_store=overwrite_store, progress=progress)
    extras = run["extras"]
    arrays = (lambda value: value) if GRAPH_OUTPUTS.get() else as_dask
    result = OutlierResult(status="COMPLETE", params=resolved, exposures=plan.items,
                           dq=arrays(run["dq"]), median=arrays(run["median"]),
                           median_wcs=extras.get("median_wcs"),
                           n_flagged=list(arrays(run["counts"])),
                           store=run["store"], timings=run["timings"],
                           groups=extras.get("groups", []), ifu=arrays(extras.get("ifu", {})),
                           checkpoints=run["checkpoints"],
                           pixel_maps=extras.get("pixel_maps", []), work=run["work"],
                           spec=arrays(extras.get("spec", {})))
    if compute:
        result.log_stats()
        if run.get("usable") is not None:
            from daskod._flag_fractions import check_flag_fractions

            check_flag_fractions([e.name for e in plan.items], result.n_flagged, run["usable"])
    if inplace:
        _write_back(exposures if isinstance(exposures, list) else [exposures], result)
    return result


def _guess_mode(exposures: Any, mode: str | None) -> str:
    from daskod.cube import Cube
    from daskod.modes.ifu import looks_like_ifu

    if mode is None:
        if isinstance(exposures, Cube):
            mode = exposures.guess_mode()
            if mode is None:
                msg = (f"Cannot tell the mode of cube {exposures.name!r}: it is neither a time "
                       "series (tso_visit, exp_type) nor coronagraphic; pass mode='tso' or "
                       "mode='coron'.")
                raise ValueError(msg)
        else:
            from daskod.modes.spec import looks_like_spec

            # The exposure type first: slit WCSs have three world axes too.
            mode = ("spec" if looks_like_spec(exposures)
                    else "ifu" if looks_like_ifu(exposures) else "imaging")
    if mode not in MODES:
        msg = f"mode must be one of {MODES} (or None to guess), got {mode!r}."
        raise ValueError(msg)
    return mode


def _write_back(originals: list[Any], result: OutlierResult) -> None:
    for exp, dq in zip(originals, result.dq, strict=True):
        if not isinstance(exp.dq, np.ndarray):
            msg = (f"inplace=True needs numpy arrays, but exposure {exp.name!r} holds a "
                   f"{type(exp.dq).__name__}; use result.updated_exposures() instead.")
            raise InputError(msg, exposure=exp.name)
        new = np.asarray(dq)
        exp.dq[...] = new
        bad = (new & DO_NOT_USE) != 0
        for name in ("sci", "err", "var_rnoise", "var_poisson", "var_flat"):
            arr = getattr(exp, name)
            if isinstance(arr, np.ndarray):
                arr[bad] = np.nan


class OutlierDetection:
    """The stateful form of :func:`detect_outliers`: parameters once, many runs.

    Parameters
    ----------
    **params
        Any keyword parameter of :func:`detect_outliers`.

    Examples
    --------
    >>> step = OutlierDetection(snr="5.0 4.0", memory_limit="1GiB")  # doctest: +SKIP
    >>> result = step.run(exposures)  # doctest: +SKIP
    """

    def __init__(self, **params: Any) -> None:
        import inspect

        allowed = set(inspect.signature(detect_outliers).parameters) - {"exposures"}
        unknown = set(params) - allowed
        if unknown:
            msg = (f"Unknown parameter(s) {sorted(unknown)} for OutlierDetection; known: "
                   f"{sorted(allowed)}.")
            raise TypeError(msg)
        self.params = dict(params)

    def run(self, exposures: list[Exposure] | Exposure, **overrides: Any) -> OutlierResult:
        """Run on ``exposures`` with the stored parameters (``overrides`` win)."""
        return detect_outliers(exposures, **{**self.params, **overrides})

    __call__ = run

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"OutlierDetection({inner})"
