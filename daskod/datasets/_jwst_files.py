"""Write simulated exposures as real JWST level-2 products (needs ``stdatamodels``)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["write_cal_files", "write_association", "write_cube_file"]


def write_association(path: str | os.PathLike, files: list[str], *, asn_type: str,
                      asn_id: str, product_name: str) -> str:
    """Write a level-3 association whose science members are ``files`` (by base name: they
    must sit beside the association). Returns the path."""
    members = [{"expname": os.path.basename(p), "exptype": "science"} for p in files]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"asn_type": asn_type, "asn_id": asn_id, "asn_pool": "sim",
                   "products": [{"name": product_name, "members": members}]}, f, indent=1)
    return os.fspath(path)


def write_cal_files(exposures: list[Any], folder: str | os.PathLike, *,
                    exp_type: str = "NRC_IMAGE", asn_name: str | None = "test_asn.json",
                    product_name: str = "jw01234-o001_t001_nircam_clear-f200w") -> dict[str, Any]:
    """Save exposures as ``*_cal.fits`` ImageModels (with gwcs and metadata) and an association.

    Parameters
    ----------
    exposures : list of Exposure
        E.g. ``make_dithered_imaging(...).exposures``; arrays may be zarr (read one at a time).
    folder : path
        Where to write.
    exp_type : str
        ``meta.exposure.type``.
    asn_name : str or None
        Association file name (None: no association).
    product_name : str
        The association's product name.

    Returns
    -------
    dict
        ``files`` (paths, input order) and ``asn`` (path or None).
    """
    from stdatamodels.jwst import datamodels

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    files = []
    for k, exp in enumerate(exposures):
        model = datamodels.ImageModel(
            data=np.asarray(exp.sci[...], dtype=np.float32),
            err=np.asarray(exp.err[...], dtype=np.float32),
            dq=np.asarray(exp.dq[...], dtype=np.uint32))
        for name in ("var_rnoise", "var_poisson", "var_flat"):
            value = getattr(exp, name)
            if value is not None:
                setattr(model, name, np.asarray(value[...], dtype=np.float32))
        model.area = np.ones(exp.shape, dtype=np.float32)
        meta = model.meta
        meta.wcs = exp.wcs
        meta.telescope = "JWST"
        meta.instrument.name = "NIRCAM"
        meta.instrument.detector = "NRCB1"
        meta.instrument.filter = "F200W"
        meta.instrument.pupil = "CLEAR"
        meta.exposure.type = exp_type
        meta.exposure.exposure_time = float(exp.exposure_time)
        meta.exposure.measurement_time = float(exp.exposure_time)
        meta.exposure.nints = 1
        meta.background.level = (None if exp.background_level is None
                                 else float(exp.background_level))
        meta.background.subtracted = bool(exp.background_subtracted)
        obs = meta.observation
        obs.program_number = "01234"
        obs.observation_number = "001"
        obs.visit_number = "001"
        obs.visit_group = "02"
        obs.sequence_id = "1"
        obs.activity_id = "01"
        obs.exposure_number = f"{k + 1:05d}"
        stem = f"jw01234001001_02101_{k + 1:05d}_nrcb1"
        meta.filename = f"{stem}_cal.fits"
        path = os.path.join(folder, meta.filename)
        model.save(path)
        model.close()
        files.append(path)
    asn = None
    if asn_name:
        asn = write_association(os.path.join(folder, asn_name), files, asn_type="image3",
                                asn_id="o001", product_name=product_name)
    return {"files": files, "asn": asn}


def write_cube_file(cube: Any, path: str | os.PathLike, *, block_bytes: int = 64 * 2**20) -> str:
    """Save a :class:`~daskod.Cube` as a ``*_calints.fits`` CubeModel, a block at a time.

    The arrays (numpy, Dask or Zarr, e.g. ``make_tso_cube(..., store=...).cube``) are read
    and written ``block_bytes`` at a time, so cubes far larger than memory can be written.
    ``meta.exposure.type`` is ``cube.exp_type`` (default ``NRC_TSIMAGE``),
    ``meta.visit.tsovisit`` is ``cube.tso_visit``.

    Returns
    -------
    str
        The path written.
    """
    from daskod.io._image_products import write_model_streamed

    path = os.fspath(path)
    arrays = {"data": cube.sci, "err": cube.err, "dq": cube.dq}
    for name in ("var_rnoise", "var_poisson", "var_flat"):
        if getattr(cube, name) is not None:
            arrays[name] = getattr(cube, name)
    nints = int(np.shape(cube.sci)[0])

    def setup(model: Any) -> None:
        model.meta.telescope = "JWST"
        model.meta.exposure.type = cube.exp_type or "NRC_TSIMAGE"
        model.meta.exposure.nints = nints
        model.meta.visit.tsovisit = bool(cube.tso_visit)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_model_streamed(path, arrays, model_class="CubeModel",
                         dtypes={"dq": np.uint32}, setup=setup, block_bytes=block_bytes)
    return path
