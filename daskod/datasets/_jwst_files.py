"""Write simulated exposures as real JWST level-2 products (needs ``stdatamodels``).

The products carry what the reference step (jwst 3.0.0 ``OutlierDetectionStep``) reads
besides the arrays: the gwcs (imaging), ``meta.wcsinfo`` (``s_region``, ``ra_ref``,
``dec_ref``, ``roll_ref``, ``v2_ref``, ``v3_ref``, ``v3yangle``, ``vparity``, ``wcsaxes``),
the observation identifiers the group id is built from, the exposure type and times and
``meta.background``. ``s_region`` here is computed by daskod (the WCS at the detector's pixel
edges, 9 decimals, as the pipeline's ``assign_wcs`` writes it).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["write_cal_files", "write_association", "write_cube_file", "write_ifu_files",
           "wcsinfo_from_wcs"]

_OBS = {"program_number": "01234", "observation_number": "001", "visit_number": "001",
        "visit_group": "02", "sequence_id": "1", "activity_id": "01"}
_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def write_association(path: str | os.PathLike, files: list[str], *, asn_type: str,
                      asn_id: str, product_name: str) -> str:
    """Write a level-3 association whose science members are ``files`` (by base name: they
    must sit beside the association). Returns the path."""
    members = [{"expname": os.path.basename(p), "exptype": "science"} for p in files]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"asn_type": asn_type, "asn_id": asn_id, "asn_pool": "sim",
                   "products": [{"name": product_name, "members": members}]}, f, indent=1)
    return os.fspath(path)


def wcsinfo_from_wcs(wcs: Any, shape: tuple[int, int]) -> dict:
    """Pointing metadata that describe a WCS without any: the reference point at the
    detector centre, ``v3yangle = 0``, ``vparity`` the sign of the Jacobian's determinant and
    ``roll_ref`` the angle that makes the reference's rotation matrix the WCS's own there."""
    from daskod.geometry._footprints import _forward
    from daskod.geometry._frame import jacobian_orientation

    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    ra, dec = _forward(wcs, np.array([cx]), np.array([cy]))
    theta, parity = jacobian_orientation(wcs, cx, cy, (float(ra[0]), float(dec[0])))
    return {"ra_ref": float(ra[0]) % 360.0, "dec_ref": float(dec[0]),
            "roll_ref": -theta % 360.0, "v2_ref": 0.0, "v3_ref": 0.0,
            "v3yangle": 0.0, "vparity": parity}


def _set_wcsinfo(model: Any, exp: Any) -> None:
    from daskod.geometry._footprints import s_region_string, wcs_footprint

    info = dict(exp.wcsinfo or wcsinfo_from_wcs(exp.wcs, exp.shape))
    if not info.get("s_region"):
        info["s_region"] = s_region_string(wcs_footprint(exp.wcs, exp.shape))
    w = model.meta.wcsinfo
    for key in ("ra_ref", "dec_ref", "roll_ref", "v2_ref", "v3_ref", "v3yangle"):
        setattr(w, key, float(info[key]))
    w.vparity = int(info["vparity"])
    w.s_region = str(info["s_region"])
    w.wcsaxes = 2


def _set_observation(meta: Any, exposure_number: int, visit: str = "001",
                     observation: str = "001") -> str:
    obs = meta.observation
    for key, value in _OBS.items():
        setattr(obs, key, value)
    obs.observation_number = observation
    obs.visit_number = visit
    obs.exposure_number = f"{exposure_number:05d}"
    return f"jw01234{observation}{visit}_02101_{exposure_number:05d}"


def write_cal_files(exposures: list[Any], folder: str | os.PathLike, *,
                    exp_type: str = "NRC_IMAGE", asn_name: str | None = "test_asn.json",
                    product_name: str = "jw01234-o001_t001_nircam_clear-f200w",
                    asn_id: str = "o001") -> dict[str, Any]:
    """Save exposures as ``*_cal.fits`` ImageModels (with gwcs and metadata) and an association.

    Exposures with the same ``group_id`` (the detectors of one exposure) get the same
    observation identifiers, so the reference groups them as daskod does. Files are named
    ``jw01234001001_02101_<exposure>_<detector>_cal.fits``.

    Parameters
    ----------
    exposures : list of Exposure
        E.g. ``make_dithered_imaging(...).exposures``; arrays may be zarr (read one at a time).
        ``Exposure.wcsinfo`` is written to ``meta.wcsinfo`` (without one, values describing
        the WCS, see :func:`wcsinfo_from_wcs`; without ``s_region``, the WCS footprint).
    folder : path
        Where to write.
    exp_type : str
        ``meta.exposure.type``.
    asn_name : str or None
        Association file name (None: no association).
    product_name : str
        The association's product name.
    asn_id : str
        The association's id (the reference inserts it in intermediate file names).

    Returns
    -------
    dict
        ``files`` (paths, input order) and ``asn`` (path or None).
    """
    from stdatamodels.jwst import datamodels

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    files = []
    groups: dict[str, int] = {}
    for k, exp in enumerate(exposures):
        model = datamodels.ImageModel(
            data=np.asarray(exp.sci[...], dtype=np.float32),
            err=np.asarray(exp.err[...], dtype=np.float32),
            dq=np.asarray(exp.dq[...], dtype=np.uint32))
        for name in _VARIANCES:
            value = getattr(exp, name)
            if value is not None:
                setattr(model, name, np.asarray(value[...], dtype=np.float32))
        model.area = np.ones(exp.shape, dtype=np.float32)
        meta = model.meta
        meta.wcs = exp.wcs
        _set_wcsinfo(model, exp)
        meta.telescope = "JWST"
        meta.instrument.name = exp.instrument or "NIRCAM"
        detector = exp.detector or "NRCB1"
        meta.instrument.detector = detector
        meta.instrument.filter = "F200W"
        meta.instrument.pupil = "CLEAR"
        meta.exposure.type = exp_type
        meta.exposure.exposure_time = float(exp.exposure_time)
        meta.exposure.measurement_time = float(exp.exposure_time)
        meta.exposure.nints = 1
        meta.background.level = (None if exp.background_level is None
                                 else float(exp.background_level))
        meta.background.subtracted = bool(exp.background_subtracted)
        group = groups.setdefault(str(exp.group_id if exp.group_id else k), len(groups) + 1)
        stem = f"{_set_observation(meta, group)}_{detector.lower()}"
        meta.filename = f"{stem}_cal.fits"
        path = os.path.join(folder, meta.filename)
        if path in files:
            msg = (f"Exposures {k} and {files.index(path)} would both be written to {path}: "
                   "give the detectors of one group distinct Exposure.detector names.")
            raise ValueError(msg)
        model.save(path)
        model.close()
        files.append(path)
    asn = None
    if asn_name:
        asn = write_association(os.path.join(folder, asn_name), files, asn_type="image3",
                                asn_id=asn_id, product_name=product_name)
    return {"files": files, "asn": asn}


_IFU = {"MIRI": ("MIRIFUSHORT", "MIR_MRS"), "NIRSPEC": ("NRS1", "NRS_IFU")}


def write_ifu_files(exposures: list[Any], folder: str | os.PathLike, *,
                    asn_name: str | None = "ifu_asn.json", asn_id: str = "o002"
                    ) -> dict[str, Any]:
    """Save IFU exposures (``make_ifu_exposures``) as IFUImageModel ``*_cal.fits`` and an
    association (``spec3``).

    No WCS is stored: the simulator's slicer transform is not serialisable, like real IFU
    transforms without the jwst package; the reference's default (difference) method needs
    none. Instrument, detector and exposure type come from each exposure.

    Returns
    -------
    dict
        ``files`` and ``asn`` as :func:`write_cal_files`.
    """
    from stdatamodels.jwst import datamodels

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    files = []
    for k, exp in enumerate(exposures):
        instrument = (exp.instrument or "MIRI").upper()
        detector, exp_type = _IFU[instrument]
        detector = exp.detector or detector
        model = datamodels.IFUImageModel(data=np.asarray(exp.sci[...], np.float32),
                                         err=np.asarray(exp.err[...], np.float32),
                                         dq=np.asarray(exp.dq[...], np.uint32))
        for name in _VARIANCES:
            value = getattr(exp, name)
            if value is not None:
                setattr(model, name, np.asarray(value[...], np.float32))
        meta = model.meta
        meta.telescope = "JWST"
        meta.instrument.name = instrument
        meta.instrument.detector = detector
        meta.exposure.type = (exp.meta or {}).get("exp_type", exp_type)
        meta.exposure.nints = 1
        meta.exposure.exposure_time = float(exp.exposure_time)
        stem = f"{_set_observation(meta, k + 1, observation='002')}_{detector.lower()}"
        meta.filename = f"{stem}_cal.fits"
        path = os.path.join(folder, meta.filename)
        model.save(path)
        model.close()
        files.append(path)
    asn = None
    if asn_name:
        asn = write_association(os.path.join(folder, asn_name), files, asn_type="spec3",
                                asn_id=asn_id,
                                product_name=f"jw01234-{asn_id}_t001_{instrument.lower()}")
    return {"files": files, "asn": asn}


def write_cube_file(cube: Any, path: str | os.PathLike, *, exp_type: str | None = None,
                    detector: str = "NRCA3", block_bytes: int = 64 * 2**20) -> str:
    """Save a :class:`~daskod.Cube` as a ``*_calints.fits`` CubeModel the reference accepts,
    a block at a time.

    The arrays (numpy, Dask or Zarr, e.g. ``make_tso_cube(..., store=...).cube``) are read
    and written ``block_bytes`` at a time, so cubes far larger than memory can be written.
    ``exp_type`` defaults to ``cube.exp_type`` (``NRC_TSIMAGE`` time series, ``NRC_CORON``
    coronagraphy); ``meta.visit.tsovisit`` is ``cube.tso_visit``.

    Returns
    -------
    str
        The path written.
    """
    from daskod.io._image_products import write_model_streamed

    path = os.fspath(path)
    arrays = {"data": cube.sci, "err": cube.err, "dq": cube.dq}
    for name in _VARIANCES:
        if getattr(cube, name) is not None:
            arrays[name] = getattr(cube, name)
    nints = int(np.shape(cube.sci)[0])

    def setup(model: Any) -> None:
        meta = model.meta
        meta.telescope = "JWST"
        meta.instrument.name = "NIRCAM"
        meta.instrument.detector = detector
        meta.exposure.type = exp_type or cube.exp_type or "NRC_TSIMAGE"
        meta.exposure.nints = nints
        meta.exposure.exposure_time = 1.0
        meta.visit.tsovisit = bool(cube.tso_visit)
        _set_observation(meta, 1, observation="004")
        meta.filename = os.path.basename(path)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_model_streamed(path, arrays, model_class="CubeModel",
                         dtypes={"dq": np.uint32}, setup=setup, block_bytes=block_bytes)
    return path
