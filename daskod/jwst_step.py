"""daskod as a JWST pipeline step (stpipe): ``strun daskod_outlier_detection asn.json``.

Needs the ``jwst`` package (``pip install 'daskod[jwst]'``); daskod's core never imports this
module. :class:`DaskodOutlierDetectionStep` has the reference step's spec (every parameter of
``jwst.outlier_detection.OutlierDetectionStep``, same names and defaults, taken from that
class) plus daskod's own (``memory_limit``, ``tile_size``, ``scheduler``, ...). It takes what
the reference takes (an association file, a ``ModelContainer``, a ``ModelLibrary``, a
``CubeModel``) and returns the same models, updated the same way: ``DQ |= DO_NOT_USE |
OUTLIER`` at the outliers, the reference's NaN matching (``match_nans_and_flags``) and
``meta.cal_step.outlier_detection``. Saved products get the reference's default suffix
(``outlierdetectionstep``, or ``crf`` when the pipeline recipe passes ``--suffix crf``).

Inside ``calwebb_image3`` (see the README, "Into the JWST pipeline"): run the pipeline with
the built-in step skipped and its ``crf`` products saved, then this step on them, then the
rest (``resample``, ``source_catalog``) on this step's products.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
from jwst.datamodels import ModelContainer, ModelLibrary
from jwst.lib.pipe_utils import match_nans_and_flags
from jwst.outlier_detection import OutlierDetectionStep
from jwst.stpipe import Step
from jwst.stpipe.utilities import record_step_status
from stdatamodels.jwst import datamodels

import daskod
from daskod.cube import Cube
from daskod.exposure import Exposure
from daskod.io._jwst import guess_mode

__all__ = ["DaskodOutlierDetectionStep", "exposure_from_model"]

log = logging.getLogger(__name__)

#: The reference step's parameters handed to daskod as they are.
_PASSED = ("weight_type", "pixfrac", "kernel", "fillval", "maskpt", "snr", "scale", "backg",
           "kernel_size", "threshold_percent", "rolling_window_width", "ifu_second_check",
           "resample_data", "good_bits", "pixmap_stepsize", "pixmap_order")
_FLOATS = ("var_rnoise", "var_poisson", "var_flat")


def _group_id(meta: Any) -> str | None:
    group = getattr(meta, "group_id", None)
    if group:
        return str(group)
    from daskod.io._datamodel import _group_id as from_observation

    return from_observation(meta)


def exposure_from_model(model: Any) -> Exposure:
    """A daskod Exposure viewing a JWST ImageModel / IFUImageModel's arrays (no copy)."""
    meta = model.meta
    shape = model.data.shape
    variances = {name: getattr(model, name) for name in _FLOATS
                 if model.hasattr(name) and getattr(model, name).shape == shape}
    try:
        wcs = meta.wcs
    except Exception:  # e.g. an IFU WCS that cannot be built; the difference method needs none
        wcs = None
    level = getattr(meta.background, "level", None)
    texp = (getattr(meta.exposure, "measurement_time", None)
            or getattr(meta.exposure, "exposure_time", None) or 1.0)
    return Exposure(sci=model.data, err=model.err, dq=model.dq, wcs=wcs, **variances,
                    group_id=_group_id(meta), exposure_time=float(texp),
                    background_level=None if level is None else float(level),
                    background_subtracted=getattr(meta.background, "subtracted", None),
                    name=meta.filename, detector=getattr(meta.instrument, "detector", None),
                    instrument=getattr(meta.instrument, "name", None),
                    meta={"exp_type": str(meta.exposure.type or "")})


class DaskodOutlierDetectionStep(Step):
    """Outlier detection with daskod, as an stpipe step with the reference's parameters.

    Parameters are the reference's (``weight_type`` ... ``pixmap_order``, same defaults) plus
    ``memory_limit`` (e.g. ``"2GiB"``), ``tile_size``, ``scheduler``, ``ifu_method``,
    ``rolling_nan_policy`` and ``progress``. Run it with
    ``strun daskod_outlier_detection asn.json`` or
    ``DaskodOutlierDetectionStep.call(asn, memory_limit="2GiB")``.
    """

    class_alias = "daskod_outlier_detection"
    spec = OutlierDetectionStep.spec + """
        memory_limit = string(default=None)  # daskod: budget of the run, e.g. 2GiB
        tile_size = integer(default=None)  # daskod: tile edge in pixels (default from memory_limit)
        scheduler = string(default=None)  # daskod: synchronous, threads, processes or tcp://host:port
        ifu_method = option('difference', 'cube', default='difference')  # daskod: IFU method
        rolling_nan_policy = option('propagate', 'omit', default='propagate')  # daskod: TSO
        progress = boolean(default=False)  # daskod: progress per phase on stderr
    """

    def default_suffix(self) -> str:
        """The reference step's default suffix, so that products are named the same."""
        return "outlierdetectionstep"

    def daskod_parameters(self) -> dict[str, Any]:
        """Keyword arguments of :func:`daskod.detect_outliers` from the step's parameters."""
        params = {name: getattr(self, name) for name in _PASSED}
        for name in ("memory_limit", "tile_size", "scheduler", "ifu_method",
                     "rolling_nan_policy", "progress"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params

    def process(self, input_data: Any) -> Any:
        """Flag outliers in the input models (association, container, library or cube)."""
        if isinstance(input_data, datamodels.CubeModel) or (
                isinstance(input_data, str | os.PathLike)
                and not os.fspath(input_data).endswith(".json")):
            model = self.prepare_output(input_data)
            if isinstance(model, datamodels.CubeModel):
                self.add_asn_id_to_output_name(model)
                return self._process_cube(model)
            input_data = ModelContainer([model])
        if isinstance(input_data, ModelLibrary):
            library = input_data
        else:
            container = self.prepare_output(input_data)
            if not isinstance(container, ModelContainer):
                container = ModelContainer([container])
            library = ModelLibrary(container, on_disk=False)
        # Product names carry the association id, as the reference's do.
        self.add_asn_id_to_output_name(container if not isinstance(input_data, ModelLibrary)
                                       else library)
        with library:
            models = [library.borrow(i) for i in range(len(library))]
            try:
                self._process_models(models)
            finally:
                for i, model in enumerate(models):
                    library.shelve(model, i, modify=True)
        return library

    def _mode(self, model: Any, *, nints: int = 1) -> str:
        mode = getattr(self, "mode", None)  # set by the level-3 pipelines
        if mode:
            return str(mode)
        exp_type = str(model.meta.exposure.type or "")
        tso = bool(getattr(model.meta.visit, "tsovisit", False))
        guessed = guess_mode(exp_type, tso=tso, nints=nints)
        if guessed is None:
            msg = (f"{model.meta.filename}: exposure type {exp_type!r} is not one daskod's "
                   "step handles (imaging, IFU, time series, coronagraphy).")
            raise ValueError(msg)
        return guessed

    def _process_models(self, models: list[Any]) -> None:
        mode = self._mode(models[0])
        log.info("daskod outlier detection, mode %s, %d model(s)", mode, len(models))
        exposures = [exposure_from_model(m) for m in models]
        with tempfile.TemporaryDirectory(prefix="daskod-step-",
                                         dir=daskod.options.default_temp_dir()) as tmp:
            result = daskod.detect_outliers(
                exposures, mode=mode, in_memory=True,
                save_intermediate_results=bool(self.save_intermediate_results),
                store=os.path.join(tmp, "work.zarr") if self.save_intermediate_results
                else None, **self.daskod_parameters())
            if result.skipped:
                for model in models:
                    record_step_status(model, "outlier_detection", False)
                return
            for model, dq in zip(models, result.dq, strict=True):
                model.dq = np.asarray(dq, dtype=np.uint32)
                match_nans_and_flags(model)
                record_step_status(model, "outlier_detection", True)
            if self.save_intermediate_results:
                self._save_intermediates(result, models, mode)
        for row in result.stats:
            log.info("%s: %d pixels flagged as outliers (%.4f%%)", row["name"],
                     row["n_flagged"], row["percent"])

    def _process_cube(self, model: Any) -> Any:
        mode = self._mode(model, nints=int(model.data.shape[0]))
        if mode not in ("tso", "coron"):
            mode = "tso"
        cube = Cube(sci=model.data, err=model.err, dq=model.dq,
                    **{n: getattr(model, n) for n in _FLOATS
                       if model.hasattr(n) and getattr(model, n).shape == model.data.shape},
                    tso_visit=bool(getattr(model.meta.visit, "tsovisit", False)),
                    exp_type=str(model.meta.exposure.type or ""), name=model.meta.filename)
        params = self.daskod_parameters()
        result = daskod.detect_outliers(cube, mode=mode, in_memory=True,
                                        save_intermediate_results=False,
                                        **{k: params[k] for k in params if k in (
                                            "maskpt", "snr", "good_bits",
                                            "rolling_window_width", "rolling_nan_policy",
                                            "memory_limit", "tile_size", "scheduler",
                                            "progress")})
        model.dq = np.asarray(result.dq[0], dtype=np.uint32)
        match_nans_and_flags(model)
        record_step_status(model, "outlier_detection", True)
        return model

    def _save_intermediates(self, result: Any, models: list[Any], mode: str) -> None:
        """The reference's intermediate products: median, and for imaging the blot of every
        input and the drizzled image of every group."""
        from daskod.io._products import write_image

        def path(model: Any, suffix: str) -> str:
            return self.make_output_path(basepath=model.meta.filename, suffix=suffix)

        if result.median is not None and np.ndim(result.median) == 2:
            write_image(path(models[0], "median"), np.asarray(result.median),
                        wcs=result.median_wcs)
        if mode == "imaging" and result.params.get("resample_data", True):
            for k, model in enumerate(models):
                write_image(path(model, "blot"), result.blot(k), wcs=model.meta.wcs)
            for g, group in enumerate(result.groups):
                data, wht = result.resampled(g)
                write_image(path(models[group[0]], "outlier_i2d"), data,
                            wcs=result.median_wcs, extra={"wht": wht})
