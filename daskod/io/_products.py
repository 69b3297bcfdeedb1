"""JWST products out: ``*_crf.fits`` / ``*_crfints.fits`` and intermediate products.

Each product is the input file with the new DQ, NaN in SCI/ERR/VAR_* where DO_NOT_USE and
``meta.cal_step.outlier_detection = "COMPLETE"``; it is written into a folder under the
``temp_dir`` option and then renamed into place, or uploaded as one object when the output
is an fsspec URL (``s3://...``), so an interrupted run never leaves a half-written product.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod.flag._dq import DO_NOT_USE
from daskod.io._fits_url import open_model
from daskod.io._jwst import require_stdatamodels
from daskod.io._location import is_url, publish, temp_folder

__all__ = ["output_path", "check_name", "plan_outputs", "write_product", "write_image"]

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


def join(folder: str, name: str) -> str:
    """``folder/name`` for a local folder or a URL."""
    if is_url(folder):
        return f"{folder.rstrip('/')}/{name}"
    return os.path.join(folder, name)


def output_path(path: str, outdir: str, suffix: str) -> str:
    """``<outdir>/<stem>_<suffix>.fits``."""
    return join(outdir, f"{stem_of(path)}_{suffix}.fits")


def _real(path: str) -> str:
    return path if is_url(path) else os.path.realpath(path)


def check_name(name: str, what: str) -> None:
    """Refuse a name that cannot become a plain file name and a FITS ``FILENAME`` value
    (printable ASCII, no path separator): before any work, not in the header writer."""
    bad = sorted({repr(c) for c in name if not " " <= c <= "~"})
    if bad:
        msg = (f"{what} {name!r} has characters a FITS header cannot hold ({', '.join(bad)}); "
               "output names must be printable ASCII: rename it.")
        raise InputError(msg)
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        msg = (f"{what} {name!r} is not a plain file name (it would put outputs outside the "
               "output folder); rename it.")
        raise InputError(msg)


def plan_outputs(inputs: list[str], outdir: str, suffix: str) -> list[str]:
    """Output paths (or URLs), refusing any that would overwrite an input or each other, or
    whose name a FITS header cannot hold."""
    for p in inputs:
        check_name(os.path.basename(output_path(p, outdir, suffix)), f"{p!r}: its output name")
    outs = [_real(output_path(p, outdir, suffix)) for p in inputs]
    real_inputs = {_real(p) for p in inputs}
    for src, out in zip(inputs, outs, strict=True):
        if out in real_inputs:
            msg = (f"{src}: its output {out} would overwrite an input; choose another "
                   "output folder.")
            raise InputError(msg)
    if len(set(outs)) != len(outs):
        msg = f"Two inputs would write the same output in {outdir}; rename the inputs."
        raise InputError(msg)
    return outs


def _replace_atomically(model: Any, final: str,
                        storage_options: dict[str, Any] | None = None) -> None:
    """Save ``model`` under the temporary folder, then move or upload it to ``final``."""
    with temp_folder("daskod-product-") as tmp:
        staged = os.path.join(tmp, os.path.basename(final))
        model.save(staged)
        publish([staged], [final], storage_options=storage_options)


def write_product(src: str, dst: str, dq: Any, *, status: str = "COMPLETE",
                  storage_options: dict[str, Any] | None = None) -> None:
    """Write ``dst``: the product ``src`` with the new DQ and the reference's NaN matching.

    ``status`` goes to ``meta.cal_step.outlier_detection`` (``"SKIPPED"`` when the step was
    skipped, as the reference records it). ``src`` and ``dst`` may be fsspec URLs, opened
    with ``storage_options``.
    """
    new_dq = np.asarray(dq).astype(np.uint32)
    with open_model(src, storage_options=storage_options) as model:
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
        _replace_atomically(model, dst, storage_options)
    log.info("Wrote %s", dst)


def write_image(dst: str, data: np.ndarray, *, wcs: Any = None, extra: dict | None = None,
                like: str | None = None,
                storage_options: dict[str, Any] | None = None) -> None:
    """An intermediate ImageModel (median, blot, drizzled group) with a WCS; a 3-D array
    (the time-series rolling median) is written as a CubeModel."""
    datamodels = require_stdatamodels()
    data = np.asarray(data, dtype=np.float32)
    kind = datamodels.CubeModel if data.ndim == 3 else datamodels.ImageModel
    model = kind(data=data)
    if like is not None:
        with open_model(like, storage_options=storage_options) as ref:
            model.update(ref, only="PRIMARY")
    for key, value in (extra or {}).items():
        setattr(model, key, np.asarray(value, dtype=np.float32))
    if wcs is not None:
        model.meta.wcs = wcs
    model.meta.filename = os.path.basename(dst)
    _replace_atomically(model, dst, storage_options)
    log.info("Wrote %s", dst)
