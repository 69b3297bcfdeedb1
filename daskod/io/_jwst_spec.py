"""JWST slit spectroscopy products in and out: ``MultiSlitModel`` / ``SlitModel`` /
MIRI LRS ``ImageModel`` ``*_cal.fits`` -> one :class:`~daskod.Exposure` per slit, grouped per
source as the reference's calwebb_spec3 does; ``*_crf.fits`` back with the slits kept.

Reading: metadata and every slit's WCS through ``stdatamodels``; pixels stay in the file
(one lazy :class:`~daskod.io._jwst.FitsArray` per slit array, addressed by ``(EXTNAME,
EXTVER)``; slit ``k`` of a ``MultiSlitModel`` is EXTVER ``k + 1``). Each slit's
``Exposure.meta`` carries ``filename``, ``path``, ``slit_name``, ``slit_index``,
``source_id``, ``source_name``, ``source_type``, ``xstart``/``ystart``/``xsize``/``ysize``
(1-based, as stored), ``exp_type``, ``dispersion_direction``, ``bunit_data`` and ``asn_id``
(of the association the file came from, else None); the
exposure's ``group_id`` comes from the association member, else ``meta.group_id``, else its
``meta.observation`` (the detectors of one exposure share it and are drizzled together).

Per-source runs (:func:`spec_sources`): the slits of all files, files in association order
and slits in file order, keyed by ``source_name`` when set (MOS) else ``source_id``, as
``jwst.exp_to_source`` keys them; a MIRI LRS association is one source (key ``"all"``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from daskod._exceptions import InputError, WCSError
from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE
from daskod.io._datamodel import SPEC_EXP_TYPES, _group_id
from daskod.io._fits_url import RAW_DTYPES, open_fits, open_model
from daskod.io._jwst import FitsArray, Member, _check_fits, _dtype
from daskod.io._location import is_url

__all__ = ["SPEC_EXP_TYPES", "detached_wcs", "read_spec_members", "spec_sources",
           "write_spec_product", "spec_intermediate_name"]

log = logging.getLogger(__name__)

_EXTENSIONS = {"sci": "SCI", "err": "ERR", "dq": "DQ", "var_rnoise": "VAR_RNOISE",
               "var_poisson": "VAR_POISSON", "var_flat": "VAR_FLAT"}
_FLOAT_ARRAYS = ("data", "err", "var_rnoise", "var_poisson", "var_flat")


def _stem(path: str) -> str:
    base = os.path.basename(path)
    if base.lower().endswith(".fits"):
        base = base[:-5]
    head, _, tail = base.rpartition("_")
    return head if head and tail in ("cal", "crf", "s2d") else base


def _get(node: Any, *path: str) -> Any:
    """``node.a.b.c`` or None when any step is missing."""
    for name in path:
        try:
            node = getattr(node, name)
        except (AttributeError, KeyError):
            return None
        if node is None:
            return None
    return node


def detached_wcs(wcs: Any) -> Any:
    """A copy of a WCS read from a product that no longer needs the product to be open.

    A WCS with lookup tables (spectral WCSs: ``Tabular1D`` wavelength solutions) holds them
    as lazy ASDF arrays, which hold a weak reference to the open file: they fail once the
    datamodel is closed (``OSError: Attempt to read block data from missing block``) and
    cannot be pickled to workers. The WCS is pickled in memory with every lazy array
    replaced by a loaded copy, and unpickled (~5 ms a slit; an in-memory ASDF round trip took
    ~130 ms, which for a few hundred MOS slits was most of a run).
    """
    import io
    import pickle

    from asdf.tags.core import NDArrayType

    class _Loading(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, NDArrayType):
                return np.array, (np.asarray(obj),)
            return NotImplemented

    buffer = io.BytesIO()
    _Loading(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(wcs)
    return pickle.loads(buffer.getvalue())


def _fits_index(path: str, storage_options: dict[str, Any] | None
                ) -> dict[tuple[str, int], FitsArray]:
    """A lazy :class:`FitsArray` for every image extension of the arrays spec mode reads,
    by ``(EXTNAME, EXTVER)``; the file is opened once (not once per slit: a MOS file has a
    hundred slits of six extensions each).

    Each array records where its pixels start in the file, so a read is one seek and one
    read, local or remote: opening the file with astropy for each read would parse every
    header before the slit's (measured: 90 of 120 s of a 57-slit run).
    """
    wanted = set(_EXTENSIONS.values())
    out = {}
    with open_fits(path, storage_options, memmap=True, lazy_load_hdus=True,
                   do_not_scale_image_data=True) as hdul:
        for hdu in hdul:
            if hdu.name not in wanted:
                continue
            header = hdu.header
            shape = tuple(int(header[f"NAXIS{i}"]) for i in range(header["NAXIS"], 0, -1))
            key = (hdu.name, int(hdu.ver))
            out[key] = FitsArray(path, key, shape, _dtype(header),
                                 storage_options=storage_options, layout=_layout(hdu))
    return out


def _layout(hdu: Any) -> dict[str, Any] | None:
    """:func:`~daskod.io._fits_url.image_layout` of one HDU, from the HDU itself (the
    HDUList's ``fileinfo(index)`` checks every HDU of the file on each call: quadratic in
    slits per file)."""
    header = hdu.header
    info = hdu.fileinfo()
    if not info or header.get("XTENSION", "IMAGE") != "IMAGE" or "ZIMAGE" in header \
            or "BLANK" in header or int(header["BITPIX"]) not in RAW_DTYPES:
        return None
    return {"offset": int(info["datLoc"]), "bitpix": int(header["BITPIX"]),
            "bzero": header.get("BZERO", 0), "bscale": header.get("BSCALE", 1)}


def _asn_id(member: Member, storage_options: dict[str, Any] | None) -> str | None:
    """The ``asn_id`` of the association a member came from (the reference adds it to the
    intermediate names of whole images), or None."""
    import json

    if not member.asn:
        return None
    try:
        if is_url(member.asn):
            from daskod.io._location import url_filesystem

            fs, key = url_filesystem(member.asn, storage_options, what="association")
            asn = json.loads(fs.cat_file(key))
        else:
            with open(member.asn, encoding="utf-8") as f:
                asn = json.load(f)
    except (OSError, ValueError):
        return None
    value = asn.get("asn_id") if isinstance(asn, dict) else None
    return None if value is None else str(value)


def _lazy_arrays(index: dict[tuple[str, int], FitsArray], extver: int) -> dict[str, FitsArray]:
    return {key: index[(ext, extver)] for key, ext in _EXTENSIONS.items()
            if (ext, extver) in index}


def _common(meta: Any, member: Member) -> dict[str, Any]:
    level = getattr(meta.background, "level", None)
    texp = (getattr(meta.exposure, "measurement_time", None)
            or getattr(meta.exposure, "exposure_time", None) or 1.0)
    return {"group_id": member.group_id or _group_id(meta), "exposure_time": float(texp),
            "background_level": None if level is None else float(level),
            "background_subtracted": getattr(meta.background, "subtracted", None),
            "detector": getattr(meta.instrument, "detector", None),
            "instrument": getattr(meta.instrument, "name", None)}


def _slit_exposures(model: Any, member: Member, storage_options: dict[str, Any] | None
                    ) -> list[Exposure]:
    out = []
    root = _stem(member.path)
    file_type = str(model.meta.exposure.type or "")
    common = _common(model.meta, member)
    asn_id = _asn_id(member, storage_options)
    index = _fits_index(member.path, storage_options)
    for k, slit in enumerate(model.slits):
        name = str(slit.name)
        wcs = getattr(slit.meta, "wcs", None)
        if wcs is None:
            msg = f"{member.path}: slit {name!r} has no WCS; run assign_wcs/extract_2d first."
            raise WCSError(msg, exposure=f"{root}_{name.lower()}")
        exp_type = str(_get(slit, "meta", "exposure", "type") or file_type)
        source_name = getattr(slit, "source_name", None)
        meta = {"filename": os.path.basename(member.path), "path": member.path,
                "model_type": "MultiSlitModel", "slit_name": name, "slit_index": k,
                "source_id": getattr(slit, "source_id", None),
                "source_name": None if source_name is None else str(source_name),
                "source_type": getattr(slit, "source_type", None), "exp_type": exp_type,
                "dispersion_direction": _get(slit, "meta", "wcsinfo", "dispersion_direction"),
                "bunit_data": _get(slit, "meta", "bunit_data"), "asn_id": asn_id}
        for key in ("xstart", "ystart", "xsize", "ysize"):
            meta[key] = getattr(slit, key, None)
        arrays = _lazy_arrays(index, k + 1)
        out.append(Exposure(**arrays, wcs=detached_wcs(wcs), name=f"{root}_{name.lower()}",
                            meta=meta,
                            **common))
    return out


def _image_exposure(model: Any, member: Member, storage_options: dict[str, Any] | None
                    ) -> Exposure:
    wcs = getattr(model.meta, "wcs", None)
    if wcs is None:
        msg = f"{member.path}: has no WCS (meta.wcs); run assign_wcs on it first."
        raise WCSError(msg, exposure=os.path.basename(member.path))
    meta = {"filename": os.path.basename(member.path), "path": member.path,
            "model_type": "ImageModel", "slit_name": None, "slit_index": None,
            "source_id": None, "source_name": None, "exp_type": str(model.meta.exposure.type),
            "dispersion_direction": getattr(model.meta.wcsinfo, "dispersion_direction", None),
            "bunit_data": getattr(model.meta, "bunit_data", None),
            "asn_id": _asn_id(member, storage_options)}
    arrays = _lazy_arrays(_fits_index(member.path, storage_options), 1)
    return Exposure(**arrays, wcs=detached_wcs(wcs), name=_stem(member.path), meta=meta,
                    **_common(model.meta, member))


def read_spec_members(members: list[Member], *, storage_options: dict[str, Any] | None = None,
                      workers: int = 1) -> list[list[Exposure]]:
    """Open every slit-spectroscopy member; one list of slit exposures per file.

    ``workers`` > 1 opens the files in that many worker processes at once (stdatamodels
    spends ~10 s of pure Python opening a 100-slit ``MultiSlitModel``); the slits come back
    pickled (lazy file arrays and detached WCSs), in member order.

    Raises
    ------
    InputError
        A member that is not a JWST product, not a slit-like spectroscopic exposure type
        (:data:`SPEC_EXP_TYPES`), or neither a ``MultiSlitModel``/``SlitModel`` nor an
        ``ImageModel``; the message names the file.
    WCSError
        A slit or image without a WCS.
    """
    for m in members:
        _check_fits(m.path, storage_options)
    jobs = [(m, storage_options) for m in members]
    n = max(1, min(int(workers), len(members)))
    if n == 1:
        return [_read_member(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        return list(pool.map(_read_member, jobs))


def _read_member(job: tuple[Member, dict[str, Any] | None]) -> list[Exposure]:
    """The slits (or the image) of one member."""
    from daskod.io._jwst import require_stdatamodels

    m, storage_options = job
    datamodels = require_stdatamodels()
    try:
        ctx = open_model(m.path, storage_options=storage_options)
        model = ctx.__enter__()
    except Exception as err:
        msg = f"{m.path}: stdatamodels cannot open it ({type(err).__name__}: {err})."
        raise InputError(msg) from err
    try:
        exp_type = str(model.meta.exposure.type or "")
        if exp_type not in SPEC_EXP_TYPES:
            msg = (f"{m.path}: exposure type {exp_type!r} is not a slit spectroscopy "
                   f"type ({', '.join(SPEC_EXP_TYPES)}).")
            raise InputError(msg, exposure=m.path)
        if isinstance(model, datamodels.MultiSlitModel):
            return _slit_exposures(model, m, storage_options)
        if isinstance(model, datamodels.SlitModel):
            return _single_slit(model, m, storage_options)
        if isinstance(model, datamodels.ImageModel):
            return [_image_exposure(model, m, storage_options)]
        msg = (f"{m.path}: a {type(model).__name__}; slit spectroscopy needs a "
               "MultiSlitModel, SlitModel or ImageModel (*_cal.fits).")
        raise InputError(msg, exposure=m.path)
    finally:
        ctx.__exit__(None, None, None)


def _single_slit(model: Any, member: Member, storage_options: dict[str, Any] | None
                 ) -> list[Exposure]:
    from types import SimpleNamespace

    one = SimpleNamespace(meta=model.meta, slits=[model])
    return _slit_exposures(one, member, storage_options)


def spec_sources(files: list[list[Exposure]]) -> dict[str, list[Exposure]]:
    """The per-source runs in the reference's order (see the module notes)."""
    out: dict[str, list[Exposure]] = {}
    for slits in files:
        for exp in slits:
            if exp.meta.get("model_type") == "ImageModel":
                key = "all"
            elif exp.meta.get("source_name") and str(exp.meta["source_name"]).strip():
                key = str(exp.meta["source_name"])
            else:
                key = str(exp.meta.get("source_id"))
            out.setdefault(key, []).append(exp)
    return out


def spec_intermediate_name(exp: Exposure, suffix: str, *, asn_id: str | None = None) -> str:
    """The reference's intermediate file name for an input of a spec run.

    ``<root>_<slit>_<suffix>.fits`` for a slit (``exp.name`` is ``<root>_<slit>``, ``<root>``
    the file stem without ``_cal``), ``<root>[_<asn_id>]_<suffix>.fits`` for a whole image
    (MIRI LRS; jwst adds the association id when the container came from an association;
    per-source slit containers carry none). ``suffix``: ``blot`` (every input),
    ``median`` (the source's first input), ``outlier_s2d`` (each group's first input).
    """
    if exp.meta.get("model_type") == "ImageModel" and asn_id:
        return f"{exp.name}_{asn_id}_{suffix}.fits"
    return f"{exp.name}_{suffix}.fits"


def _writeable(target: Any, name: str, shape: tuple[int, ...], dtype: Any = None
               ) -> np.ndarray | None:
    """``target.<name>`` when it can be changed in place (a writeable array of ``shape``,
    and of ``dtype`` if given), else None."""
    current = getattr(target, name)
    if (isinstance(current, np.ndarray) and current.flags.writeable
            and current.shape == shape and (dtype is None or current.dtype == dtype)):
        return current
    return None


def write_spec_product(src: str, dst: str, dqs: dict[Any, np.ndarray], *,
                       status: str = "COMPLETE",
                       storage_options: dict[str, Any] | None = None) -> None:
    """Write ``dst``: the product ``src`` with new DQ arrays, slits kept.

    ``dqs`` maps a slit index (``MultiSlitModel``; slits not in it are copied unchanged) or
    None (``ImageModel``) to the new DQ. Where DQ has ``DO_NOT_USE``, SCI/ERR/VAR_* become
    NaN (the reference's NaN matching); ``meta.cal_step.outlier_detection = status``. Written
    under the temp folder, then moved (or uploaded) into place.
    """
    from daskod.io._products import replace_atomically

    with open_model(src, storage_options=storage_options) as model:
        targets = ([(k, slit) for k, slit in enumerate(model.slits)]
                   if hasattr(model, "slits") else [(None, model)])
        for key, target in targets:
            if key not in dqs:
                continue
            new_dq = np.asarray(dqs[key]).astype(np.uint32)
            if tuple(target.dq.shape) != new_dq.shape:
                msg = (f"{src}: DQ shape {target.dq.shape} of {key!r} does not match the "
                       f"result {new_dq.shape}.")
                raise InputError(msg)
            bad = (new_dq & DO_NOT_USE) != 0
            # In place where the arrays are ours (read into memory): an assignment validates
            # the model's schema each time (~30 ms, hundreds of times for a MOS file).
            dq = _writeable(target, "dq", new_dq.shape, new_dq.dtype)
            if dq is not None:
                dq[...] = new_dq
            else:
                target.dq = new_dq
            for name in _FLOAT_ARRAYS:
                if not target.hasattr(name) or np.shape(getattr(target, name)) != bad.shape:
                    continue
                arr = _writeable(target, name, bad.shape)
                if arr is not None:
                    arr[bad] = np.nan
                else:
                    arr = np.array(getattr(target, name))
                    arr[bad] = np.nan
                    setattr(target, name, arr)
        model.meta.cal_step.outlier_detection = status
        model.meta.filename = os.path.basename(dst)
        replace_atomically(model, dst, storage_options)
    log.info("Wrote %s", dst)
