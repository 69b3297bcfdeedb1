"""From a JWST datamodel to daskod's inputs: everything the run needs besides the pixels.

One place reads a product's metadata for the command line (``daskod run``), for
:func:`daskod.read_jwst` and for :meth:`daskod.Exposure.from_datamodel`: the mode the
reference would pick, the group id, exposure time, background level and whether it was
subtracted, the pointing metadata of the output frame (``wcsinfo``), detector, instrument.
Leaving any of these out changes the answer (a missing background level alone flags up to a
quarter of a detector), so no caller rebuilds them by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from daskod._exceptions import InputError, WCSError
from daskod.cube import CORON_EXP_TYPES, TSO_EXP_TYPES, Cube
from daskod.exposure import Exposure

__all__ = ["IMAGING_EXP_TYPES", "IFU_EXP_TYPES", "SPEC_EXP_TYPES", "WCSINFO_KEYS",
           "guess_mode", "model_fields", "make_item", "exposure_from_datamodel"]

log = logging.getLogger(__name__)

IMAGING_EXP_TYPES = ("NRC_IMAGE", "MIR_IMAGE", "NRS_IMAGE", "NIS_IMAGE", "FGS_IMAGE")
#: IFU exposure types (IFUImageModel products): ``mode="ifu"``.
IFU_EXP_TYPES = ("NRS_IFU", "MIR_MRS")
#: The reference's slit-like spectroscopic exposure types (``SLIT_SPEC_MODES``):
#: ``mode="spec"``.
SPEC_EXP_TYPES = ("NRC_WFSS", "MIR_LRS-FIXEDSLIT", "NRS_FIXEDSLIT", "NRS_MSASPEC", "NIS_WFSS")
#: ``meta.wcsinfo`` values carried into ``Exposure.wcsinfo`` (the output frame needs them).
WCSINFO_KEYS = ("s_region", "ra_ref", "dec_ref", "roll_ref", "v2_ref", "v3_ref", "v3yangle",
                "vparity")


def guess_mode(exp_type: str, *, tso: bool, nints: int) -> str | None:
    """The reference's mode guess from the exposure type (ALGORITHM.md 1.1)."""
    exp_type = (exp_type or "").upper()
    if tso and nints >= 2:
        return "tso"
    if exp_type in CORON_EXP_TYPES:
        return "coron"
    if exp_type in IMAGING_EXP_TYPES:
        return "imaging"
    if exp_type in SPEC_EXP_TYPES:
        return "spec"
    if exp_type in IFU_EXP_TYPES:
        return "ifu"
    return None


def _group_id(meta: Any) -> str | None:
    try:
        gid = meta.group_id
    except AttributeError:
        gid = None
    if gid:
        return str(gid)
    obs = meta.observation
    try:
        return (f"jw{obs.program_number}{obs.observation_number}{obs.visit_number}"
                f"_{obs.visit_group}{obs.sequence_id}{obs.activity_id}_{obs.exposure_number}")
    except AttributeError:
        return None


def _wcsinfo(meta: Any) -> dict[str, Any] | None:
    """The pointing values of ``meta.wcsinfo`` that are set, or None when none is."""
    info = getattr(meta, "wcsinfo", None)
    out: dict[str, Any] = {}
    for key in WCSINFO_KEYS:
        value = getattr(info, key, None) if info is not None else None
        if value is None:
            continue
        out[key] = str(value) if key == "s_region" else (
            int(value) if key == "vparity" else float(value))
    return out or None


def model_fields(model: Any, *, name: str, group_id: str | None = None) -> dict[str, Any]:
    """What daskod needs of a datamodel besides its arrays.

    Parameters
    ----------
    model : stdatamodels DataModel
        An open ImageModel, IFUImageModel or CubeModel.
    name : str
        Used in messages and as the exposure's name (the file name).
    group_id : str, optional
        The association's group id, which wins over the model's own.

    Returns
    -------
    dict
        ``mode`` (the reference's guess), ``exp_type``, ``model_type``, ``tso`` and
        ``kwargs`` (the :class:`~daskod.Exposure` or :class:`~daskod.Cube` keywords).

    Raises
    ------
    InputError
        An exposure type daskod does not handle.
    WCSError
        An imaging product without a WCS.
    """
    meta = model.meta
    exp_type = str(meta.exposure.type or "")
    nints = int(getattr(meta.exposure, "nints", None) or 1)
    tso = bool(getattr(meta.visit, "tsovisit", False)) or exp_type in TSO_EXP_TYPES
    mode = guess_mode(exp_type, tso=tso, nints=nints)
    if mode is None:
        msg = (f"{name}: exposure type {exp_type!r} is not one daskod handles (imaging "
               f"{IMAGING_EXP_TYPES}, coronagraphy {CORON_EXP_TYPES}, IFU {IFU_EXP_TYPES}, "
               f"slit spectroscopy {SPEC_EXP_TYPES} or a time series).")
        raise InputError(msg, exposure=name)
    fields: dict[str, Any] = {"mode": mode, "exp_type": exp_type, "tso": tso,
                              "model_type": getattr(model, "model_type", type(model).__name__)}
    if mode in ("tso", "coron"):
        fields["kwargs"] = {"tso_visit": tso, "exp_type": exp_type, "name": name}
        return fields
    if mode == "spec":  # one exposure per slit: daskod.io._jwst_spec reads them
        return fields
    try:
        wcs = getattr(meta, "wcs", None)
    except Exception as err:  # e.g. IFU transforms that need the jwst package
        log.warning("%s: its WCS cannot be read (%s: %s)", name, type(err).__name__, err)
        wcs = None
    if mode == "ifu" and wcs is not None and not hasattr(wcs, "pixel_to_world_values"):
        wcs = None  # transforms of real IFU files need the jwst package
    if mode == "imaging" and wcs is None:
        msg = f"{name}: has no WCS (meta.wcs); run assign_wcs on it first."
        raise WCSError(msg, exposure=name)
    texp = (getattr(meta.exposure, "measurement_time", None)
            or getattr(meta.exposure, "exposure_time", None) or 1.0)
    kwargs: dict[str, Any] = {
        "wcs": wcs, "group_id": group_id or _group_id(meta), "exposure_time": float(texp),
        "name": name, "detector": getattr(meta.instrument, "detector", None),
        "instrument": getattr(meta.instrument, "name", None), "meta": {"exp_type": exp_type}}
    if mode == "imaging":
        level = getattr(meta.background, "level", None)
        kwargs.update(background_level=None if level is None else float(level),
                      background_subtracted=getattr(meta.background, "subtracted", None),
                      wcsinfo=_wcsinfo(meta))
    fields["kwargs"] = kwargs
    return fields


def make_item(fields: dict[str, Any], arrays: dict[str, Any]) -> Exposure | Cube:
    """An Exposure (imaging, IFU) or a Cube (time series, coronagraphy) of these fields."""
    kind = Cube if fields["mode"] in ("tso", "coron") else Exposure
    return kind(**arrays, **fields["kwargs"])


_ARRAYS = {"sci": "data", "err": "err", "dq": "dq", "var_rnoise": "var_rnoise",
           "var_poisson": "var_poisson", "var_flat": "var_flat"}


def exposure_from_datamodel(model: Any, *, name: str | None = None,
                            group_id: str | None = None) -> Exposure | Cube:
    """:meth:`daskod.Exposure.from_datamodel`: the model's arrays (not copied) and metadata."""
    name = name or getattr(model.meta, "filename", None) or type(model).__name__
    fields = model_fields(model, name=name, group_id=group_id)
    arrays = {}
    for key, attr in _ARRAYS.items():
        if model.hasattr(attr):
            value = getattr(model, attr)
            if value is not None and getattr(value, "size", 0):
                arrays[key] = value
    return make_item(fields, arrays)
