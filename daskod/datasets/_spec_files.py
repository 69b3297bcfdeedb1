"""Write simulated slit spectroscopy as JWST level-2 products the reference step accepts.

NIRSpec products are ``MultiSlitModel`` files (one per exposure and detector) whose slits
carry ``name``, ``source_id`` (and ``source_name`` for MOS), ``xstart``/``ystart``/``xsize``/
``ysize``, ``meta.wcs`` (the slit's gwcs), ``meta.wcsinfo.dispersion_direction``,
``meta.bunit_data`` and ``meta.photometry`` (the reference's ``exp_to_source`` keeps those of
the slit and merges the rest from the exposure). MIRI LRS products are ``ImageModel`` files.
Both carry what the reference's spectral resampling reads: ``meta.observation`` (the group
id), ``meta.exposure`` times and type, ``meta.instrument``, ``meta.background``, and
``VAR_RNOISE`` for ``ivm`` weights. A ``spec3`` association lists the files.

Needs ``stdatamodels`` (extra ``daskod[jwst]``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from daskod.datasets._jwst_files import write_association

__all__ = ["write_spec_cal_files", "run_reference_spec", "reference_spec_command",
           "REFERENCE_SPEC_SCRIPT"]

#: The stand-alone script that runs jwst's step per source (for the reference interpreter).
REFERENCE_SPEC_SCRIPT = Path(__file__).with_name("_reference_spec_script.py")

_PIXEL_AREA_SR = 2.35e-13
_ARRAYS = ("var_rnoise", "var_poisson", "var_flat")


def _fill_exposure_meta(meta: Any, product: Any) -> None:
    meta.telescope = "JWST"
    meta.instrument.name = product.instrument
    meta.instrument.detector = product.detector
    for key, value in product.meta.items():
        if key in ("grating", "filter"):
            setattr(meta.instrument, key, value)
    meta.exposure.type = product.exp_type
    meta.exposure.exposure_time = float(product.exposure_time)
    meta.exposure.measurement_time = float(product.exposure_time)
    meta.exposure.duration = float(product.exposure_time)
    start = 60000.0 + int(product.observation["exposure_number"]) * 0.02
    meta.exposure.start_time = start
    meta.exposure.end_time = start + product.exposure_time / 86400.0
    meta.exposure.nints = 1
    for key, value in product.observation.items():
        setattr(meta.observation, key, value)
    meta.observation.date = "2026-01-01"
    meta.observation.time = "00:00:00.000"
    if meta.hasattr("photometry") or product.model_type == "ImageModel":
        meta.photometry.pixelarea_steradians = _PIXEL_AREA_SR
        meta.photometry.pixelarea_arcsecsq = _PIXEL_AREA_SR * (180 / np.pi * 3600) ** 2
    meta.filename = product.filename


def _set_arrays(model: Any, item: Any) -> None:
    model.data = np.asarray(item.sci, dtype=np.float32)
    model.err = np.asarray(item.err, dtype=np.float32)
    model.dq = np.asarray(item.dq, dtype=np.uint32)
    for name in _ARRAYS:
        value = getattr(item, name)
        if value is not None:
            setattr(model, name, np.asarray(value, dtype=np.float32))


def _background(meta: Any, item: Any) -> None:
    meta.background.level = (None if item.background_level is None
                             else float(item.background_level))
    meta.background.subtracted = bool(item.background_subtracted)


def _slit_model(datamodels: Any, item: Any) -> Any:
    slit = datamodels.SlitModel()
    _set_arrays(slit, item)
    m = item.meta
    slit.name = m["slit_name"]
    slit.source_id = int(m["source_id"])
    if m.get("source_name"):
        slit.source_name = m["source_name"]
    slit.source_type = m.get("source_type", "POINT")
    for key in ("xstart", "ystart", "xsize", "ysize"):
        setattr(slit, key, int(m[key]))
    slit.meta.wcs = item.wcs
    slit.meta.wcsinfo.dispersion_direction = int(m.get("dispersion_direction", 1))
    slit.meta.bunit_data = m.get("bunit_data", "MJy/sr")
    slit.meta.bunit_err = m.get("bunit_data", "MJy/sr")
    slit.meta.photometry.pixelarea_steradians = _PIXEL_AREA_SR
    slit.meta.photometry.pixelarea_arcsecsq = _PIXEL_AREA_SR * (180 / np.pi * 3600) ** 2
    return slit


def write_spec_cal_files(simulation: Any, folder: str | os.PathLike, *,
                         asn_name: str | None = "spec3_asn.json",
                         product_name: str = "jw01234-o001_t001_nirspec_sim") -> dict[str, Any]:
    """Save a :class:`~daskod.datasets.SlitSimulation` as ``*_cal.fits`` and an association.

    Parameters
    ----------
    simulation : SlitSimulation
        From :func:`make_nirspec_slits` (``MultiSlitModel`` files) or
        :func:`make_lrs_exposures` (``ImageModel`` files).
    folder : path
        Where to write (created if missing).
    asn_name : str or None
        Association file name (``asn_type`` ``spec3``); None writes none.
    product_name : str
        The association's product name.

    Returns
    -------
    dict
        ``files`` (paths, in product order) and ``asn`` (path or None).
    """
    from stdatamodels.jwst import datamodels

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    files = []
    for product in simulation.products:
        if product.model_type == "MultiSlitModel":
            model = datamodels.MultiSlitModel()
            for item in product.items:
                model.slits.append(_slit_model(datamodels, item))
            _background(model.meta, product.items[0])
        elif product.model_type == "ImageModel":
            (item,) = product.items
            model = datamodels.ImageModel()
            _set_arrays(model, item)
            model.meta.wcs = item.wcs
            model.meta.wcsinfo.dispersion_direction = int(
                item.meta.get("dispersion_direction", 2))
            model.meta.bunit_data = item.meta.get("bunit_data", "MJy/sr")
            model.meta.bunit_err = item.meta.get("bunit_data", "MJy/sr")
            _background(model.meta, item)
        else:
            msg = f"{product.filename}: unknown model type {product.model_type!r}."
            raise ValueError(msg)
        _fill_exposure_meta(model.meta, product)
        path = os.path.join(folder, product.filename)
        model.save(path)
        model.close()
        files.append(path)
    asn = None
    if asn_name:
        asn = write_association(os.path.join(folder, asn_name), files, asn_type="spec3",
                                asn_id="o001", product_name=product_name)
    return {"files": files, "asn": asn}


def reference_spec_command(asn: str | os.PathLike, outdir: str | os.PathLike, *,
                           python: str, crds_path: str,
                           params: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run :data:`REFERENCE_SPEC_SCRIPT` with the
    reference interpreter ``python`` offline (CRDS pointed at the empty ``crds_path`` and an
    address nothing listens on; daskod's ``PYTHONPATH`` removed)."""
    import json

    env = dict(os.environ)
    env.update({"STPIPE_DISABLE_CRDS_STEPPARS": "True", "CRDS_PATH": crds_path,
                "CRDS_SERVER_URL": "https://127.0.0.1:9", "CRDS_OBSERVATORY": "jwst"})
    env.pop("PYTHONPATH", None)
    cmd = [python, os.fspath(REFERENCE_SPEC_SCRIPT), os.fspath(asn), os.fspath(outdir),
           json.dumps(params)]
    return cmd, env


def run_reference_spec(asn: str | os.PathLike, outdir: str | os.PathLike, *,
                       python: str | None = None, timeout: float = 1800,
                       runs: dict[str, dict[str, Any]] | None = None,
                       **params: Any) -> subprocess.CompletedProcess:
    """Run the reference pipeline's spectroscopic outlier detection on an association.

    Runs :data:`REFERENCE_SPEC_SCRIPT` with ``python`` (default: the interpreter in
    ``$DASKOD_REFERENCE_PYTHON``), which must have ``jwst`` installed. The script splits
    ``MultiSlitModel`` inputs per source as ``calwebb_spec3`` does, runs
    ``OutlierDetectionStep`` (``mode="spec"``) on each source's container, writes the
    intermediates of source ``<key>`` under ``outdir/<key>/`` and reassembles one
    ``*_crf.fits`` per input file in ``outdir``. ``params`` are step parameters
    (``resample_data=False``, ``snr="5 4"``, ...); ``save_intermediate_results`` is on
    unless they turn it off. ``runs`` (``{name: params}``) instead runs the step once per
    parameter set in the same interpreter, each into ``outdir/<name>``.

    Returns
    -------
    subprocess.CompletedProcess
        Raises ``subprocess.CalledProcessError`` (with the reference's output) on failure.
    """
    import shutil
    import tempfile

    python = python or os.environ.get("DASKOD_REFERENCE_PYTHON")
    if not python:
        msg = "Give python= or set DASKOD_REFERENCE_PYTHON to an interpreter with jwst."
        raise ValueError(msg)
    os.makedirs(outdir, exist_ok=True)
    crds = tempfile.mkdtemp(prefix="daskod-crds-")
    cmd, env = reference_spec_command(asn, outdir, python=python, crds_path=crds,
                                      params={"runs": runs} if runs is not None else params)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    finally:
        shutil.rmtree(crds, ignore_errors=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc
