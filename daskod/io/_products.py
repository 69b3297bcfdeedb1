"""JWST products out: ``*_crf.fits`` / ``*_crfints.fits`` and intermediate products.

Each product is the input file with the new DQ, NaN in SCI/ERR/VAR_* where DO_NOT_USE and
``meta.cal_step.outlier_detection = "COMPLETE"``; it is written under a temporary name in
the output folder and renamed, so an interrupted run never leaves a half-written product.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod.flag._dq import DO_NOT_USE
from daskod.io._jwst import require_stdatamodels

__all__ = ["output_path", "plan_outputs", "write_product", "write_image"]

log = logging.getLogger(__name__)

#: Pipeline suffixes replaced by the new one (the reference's file naming).
KNOWN_SUFFIXES = ("cal", "calints", "rate", "rateints", "crf", "crfints", "i2d", "s2d",
                  "outlierdetectionstep")
_FLOAT_ARRAYS = ("data", "err", "var_rnoise", "var_poisson", "var_flat")


def stem_of(path: str) -> str:
    """File name without ``.fits`` and without a known pipeline suffix."""
    base = os.path.basename(path)
    if base.lower().endswith(".fits"):
        base = base[:-5]
    head, _, tail = base.rpartition("_")
    return head if head and tail in KNOWN_SUFFIXES else base


def output_path(path: str, outdir: str, suffix: str) -> str:
    """``<outdir>/<stem>_<suffix>.fits``."""
    return os.path.join(outdir, f"{stem_of(path)}_{suffix}.fits")


def plan_outputs(inputs: list[str], outdir: str, suffix: str) -> list[str]:
    """Output paths, refusing any that would overwrite an input or each other."""
    outs = [os.path.realpath(output_path(p, outdir, suffix)) for p in inputs]
    real_inputs = {os.path.realpath(p) for p in inputs}
    for src, out in zip(inputs, outs, strict=True):
        if out in real_inputs:
            msg = (f"{src}: its output {out} would overwrite an input; choose another "
                   "output folder.")
            raise InputError(msg)
    if len(set(outs)) != len(outs):
        msg = f"Two inputs would write the same output in {outdir}; rename the inputs."
        raise InputError(msg)
    return outs


def _replace_atomically(model: Any, final: str) -> None:
    folder = os.path.dirname(final)
    tmp = os.path.join(folder, f".{os.path.basename(final)[:-5]}.partial-{os.getpid()}.fits")
    try:
        model.save(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_product(src: str, dst: str, dq: Any, *, status: str = "COMPLETE") -> None:
    """Write ``dst``: the product ``src`` with the new DQ and the reference's NaN matching.

    ``status`` goes to ``meta.cal_step.outlier_detection`` (``"SKIPPED"`` when the step was
    skipped, as the reference records it).
    """
    datamodels = require_stdatamodels()
    new_dq = np.asarray(dq).astype(np.uint32)
    with datamodels.open(src) as model:
        if tuple(model.dq.shape) != new_dq.shape:
            msg = f"{src}: DQ shape {model.dq.shape} does not match the result {new_dq.shape}."
            raise InputError(msg)
        bad = (new_dq & DO_NOT_USE) != 0
        model.dq = new_dq
        for name in _FLOAT_ARRAYS:
            if model.hasattr(name):
                arr = getattr(model, name)  # read from the file into memory: ours to change
                if arr.shape == bad.shape:
                    if not arr.flags.writeable:
                        arr = np.array(arr)
                    arr[bad] = np.nan
                    setattr(model, name, arr)
        model.meta.cal_step.outlier_detection = status
        model.meta.filename = os.path.basename(dst)
        _replace_atomically(model, dst)
    log.info("Wrote %s", dst)


def write_image(dst: str, data: np.ndarray, *, wcs: Any = None, extra: dict | None = None,
                like: str | None = None) -> None:
    """An intermediate ImageModel (median, blot, drizzled group) with a WCS."""
    datamodels = require_stdatamodels()
    model = datamodels.ImageModel(data=np.asarray(data, dtype=np.float32))
    if like is not None:
        with datamodels.open(like) as ref:
            model.update(ref, only="PRIMARY")
    for key, value in (extra or {}).items():
        setattr(model, key, np.asarray(value, dtype=np.float32))
    if wcs is not None:
        model.meta.wcs = wcs
    model.meta.filename = os.path.basename(dst)
    _replace_atomically(model, dst)
    log.info("Wrote %s", dst)
