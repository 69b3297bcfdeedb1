"""JWST level-2 products in: associations, ``*_cal.fits`` / ``*_calints.fits`` files.

Metadata and the WCS come through ``stdatamodels`` (extra ``daskod[jwst]``); pixel arrays are
read memory-mapped with astropy and copied into the Zarr working store chunk by chunk, so no
exposure is ever held whole in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod._exceptions import InputError, StoreError, WCSError
from daskod.cube import CORON_EXP_TYPES, TSO_EXP_TYPES, Cube
from daskod.exposure import Exposure
from daskod.io._fits_url import image_layout, open_fits, open_model, read_block, scale_raw
from daskod.io._location import explain_location_error, is_url, url_filesystem

__all__ = ["Member", "FitsArray", "require_stdatamodels", "gather_members", "read_members",
           "guess_mode", "open_model", "IMAGING_EXP_TYPES", "SPEC_EXP_TYPES"]

log = logging.getLogger(__name__)

IMAGING_EXP_TYPES = ("NRC_IMAGE", "MIR_IMAGE", "NRS_IMAGE", "NIS_IMAGE", "FGS_IMAGE")
#: IFU exposure types (IFUImageModel products): ``mode="ifu"``.
IFU_EXP_TYPES = ("NRS_IFU", "MIR_MRS")
#: The reference's slit-like spectroscopic exposure types (``SLIT_SPEC_MODES``):
#: ``mode="spec"``.
SPEC_EXP_TYPES = ("NRC_WFSS", "MIR_LRS-FIXEDSLIT", "NRS_FIXEDSLIT", "NRS_MSASPEC", "NIS_WFSS")
_EXTENSIONS = {"sci": "SCI", "err": "ERR", "dq": "DQ", "var_rnoise": "VAR_RNOISE",
               "var_poisson": "VAR_POISSON", "var_flat": "VAR_FLAT"}


@dataclass(frozen=True)
class Member:
    """One input file, with the group id its association gave it (if any)."""

    path: str
    group_id: str | None = None
    exptype: str = "science"
    asn: str | None = None
    product: str | None = None


def require_stdatamodels() -> Any:
    """Import ``stdatamodels.jwst.datamodels`` or say which extra installs it."""
    try:
        from stdatamodels.jwst import datamodels
    except ImportError as err:
        msg = ("Reading JWST files needs stdatamodels: pip install 'daskod[jwst]' "
               f"({err}).")
        raise ImportError(msg) from err
    return datamodels


def _read_association(path: str, storage_options: dict[str, Any] | None = None
                      ) -> list[Member]:
    if is_url(path):
        return _read_url_association(path, storage_options)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            asn = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        msg = f"{path}: not a readable association file ({err})."
        raise InputError(msg) from err
    members = []
    for name, group_id, product in _science_names(path, asn):
        full = os.path.realpath(os.path.join(folder, name))
        if os.path.commonpath([full, os.path.realpath(folder)]) != os.path.realpath(folder):
            msg = (f"{path}: member {name!r} points outside the association's folder "
                   f"({folder}); members must live beside the association.")
            raise InputError(msg)
        members.append(Member(path=full, group_id=group_id, asn=path, product=product))
    return members


def _science_names(path: str, asn: Any) -> list[tuple[str, Any, Any]]:
    """(expname, group_id, product name) of the science members of an association dict."""
    products = asn.get("products") if isinstance(asn, dict) else None
    if not isinstance(products, list) or not products:
        msg = f"{path}: an association needs a non-empty 'products' list."
        raise InputError(msg)
    out = []
    for product in products:
        for m in product.get("members", []):
            if str(m.get("exptype", "")).lower() != "science":
                continue
            if not m.get("expname"):
                msg = f"{path}: a science member has no 'expname'."
                raise InputError(msg)
            out.append((str(m["expname"]), m.get("group_id"), product.get("name")))
    if not out:
        msg = f"{path}: the association has no science members."
        raise InputError(msg)
    return out


def _read_url_association(url: str, storage_options: dict[str, Any] | None) -> list[Member]:
    """An association on object storage; members are objects beside it."""
    import posixpath

    fs, path = url_filesystem(url, storage_options, what="association")
    try:
        asn = json.loads(fs.cat_file(path))
    except json.JSONDecodeError as err:
        msg = f"{url}: not a readable association file ({err})."
        raise InputError(msg) from err
    except FileNotFoundError as err:
        msg = f"{url}: no such association file."
        raise InputError(msg) from err
    except Exception as err:  # credentials, bucket, network
        raise StoreError(explain_location_error(err, url, "association")) from err
    scheme, _, rest = url.partition("://")
    folder = posixpath.dirname(rest)
    members = []
    for name, group_id, product in _science_names(url, asn):
        full = posixpath.normpath(posixpath.join(folder, name))
        if not full.startswith(folder + "/"):
            msg = (f"{url}: member {name!r} points outside the association's folder; "
                   "members must live beside the association.")
            raise InputError(msg)
        members.append(Member(path=f"{scheme}://{full}", group_id=group_id, asn=url,
                              product=product))
    return members


def gather_members(inputs: list[str] | str, *,
                   storage_options: dict[str, Any] | None = None) -> list[Member]:
    """Association files and/or product files (local paths or fsspec URLs such as
    ``s3://bucket/asn.json``) -> the list of science members."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [os.fspath(inputs)]
    members: list[Member] = []
    for item in inputs:
        item = os.fspath(item)
        if item.lower().endswith(".json"):
            members.extend(_read_association(item, storage_options))
        elif is_url(item):
            members.append(Member(path=item))
        else:
            members.append(Member(path=os.path.realpath(item)))
    seen = set()
    for m in members:
        if m.path in seen:
            msg = f"{m.path}: given twice."
            raise InputError(msg)
        seen.add(m.path)
    return members


def _check_fits(path: str, storage_options: dict[str, Any] | None = None) -> None:

    if is_url(path):
        fs, key = url_filesystem(path, storage_options, what="input")
        try:
            exists = fs.exists(key)
        except Exception as err:  # credentials, bucket, network
            raise StoreError(explain_location_error(err, path, "input")) from err
    else:
        exists = os.path.exists(path)
    if not exists:
        msg = f"{path}: no such file."
        raise InputError(msg)
    try:
        with open_fits(path, storage_options, memmap=True) as hdul:
            names = {h.name for h in hdul}
            telescope = hdul[0].header.get("TELESCOP", "")
            hdul.verify("exception")
    except Exception as err:
        msg = f"{path}: not a readable FITS file ({type(err).__name__}: {err})."
        raise InputError(msg) from err
    if "SCI" not in names or "ASDF" not in names or telescope != "JWST":
        msg = (f"{path}: not a JWST product (needs TELESCOP='JWST', a SCI extension and the "
               "ASDF metadata extension).")
        raise InputError(msg)


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


class FitsArray:
    """One image extension of a FITS file, read lazily: each slice opens the file
    memory-mapped, copies the requested pixels (native byte order) and closes it, so pages
    never stay mapped and resident. Picklable (a path and an extension name). A URL path is
    read through fsspec (``storage_options``): with the extension's ``layout``
    (:func:`~daskod.io._fits_url.image_layout`) one ranged request per slice, else an
    astropy section."""

    def __init__(self, path: str, extname: str, shape: tuple[int, ...], dtype: Any, *,
                 storage_options: dict[str, Any] | None = None,
                 layout: dict[str, Any] | None = None) -> None:
        self.path = path
        self.storage_options = storage_options
        self.layout = layout
        self.extname = extname
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.layout is not None:
            raw = read_block(self.path, self.storage_options, self.layout, self.shape, key)
            if raw is not None:
                return scale_raw(raw, self.layout["bzero"], self.layout["bscale"], self.dtype)
        # Unsigned integers are stored signed with BZERO, which astropy cannot memory-map
        # scaled: read the raw values memory-mapped and apply BZERO/BSCALE here.
        with open_fits(self.path, self.storage_options, memmap=True, lazy_load_hdus=True,
                       do_not_scale_image_data=True) as hdul:
            hdu = hdul[self.extname]
            raw = hdu.section[key] if is_url(self.path) else hdu.data[key]
            out = scale_raw(raw, hdu.header.get("BZERO", 0), hdu.header.get("BSCALE", 1),
                            self.dtype)
            del raw
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"FitsArray({self.path!r}, {self.extname!r}, shape={self.shape})"


def _fits_arrays(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lazy pixel arrays of a product (nothing is read until sliced)."""
    arrays: dict[str, Any] = {}
    with open_fits(path, storage_options, memmap=True, lazy_load_hdus=True,
                    do_not_scale_image_data=True) as hdul:
        names = {h.name for h in hdul}
        for key, ext in _EXTENSIONS.items():
            if ext not in names:
                continue
            header = hdul[ext].header
            shape = tuple(int(header[f"NAXIS{i}"]) for i in range(header["NAXIS"], 0, -1))
            if shape:
                layout = image_layout(hdul, ext) if is_url(path) else None
                arrays[key] = FitsArray(path, ext, shape, _dtype(header),
                                        storage_options=storage_options, layout=layout)
    return arrays


def _dtype(header: Any) -> np.dtype:
    """The scaled dtype of an image HDU from BITPIX/BZERO (unsigned ints stored signed)."""
    bitpix = int(header["BITPIX"])
    bzero = header.get("BZERO", 0)
    floats = {-32: np.float32, -64: np.float64}
    if bitpix in floats:
        return np.dtype(floats[bitpix])
    signed = {8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64}[bitpix]
    if bitpix > 8 and bzero == 2 ** (bitpix - 1):
        return np.dtype(f"uint{bitpix}")
    if header.get("BSCALE", 1) != 1:
        return np.dtype(np.float32)
    return np.dtype(signed)


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Opening a few hundred slits with stdatamodels leaves ~300 MiB of freed but
    fragmented heap in this process (measured: 521 -> 236 MiB RSS after two 100-slit MOS
    files), which the memory budget would otherwise count as used."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        trim = None
    if trim is not None:
        trim(0)


def _read_spec(members: list[Member], storage_options: dict[str, Any] | None, workers: int
               ) -> tuple[list[Any], list[dict[str, Any]], str]:
    """Slit spectroscopy members: one Exposure per slit (or MIRI LRS image), in file order."""
    from daskod.io._jwst_spec import read_spec_members

    files = read_spec_members(members, storage_options=storage_options, workers=workers)
    _return_freed_memory()
    items = [exp for slits in files for exp in slits]
    info = [{"path": m.path, "model_type": slits[0].meta.get("model_type") if slits else None,
             "exp_type": slits[0].meta.get("exp_type") if slits else None}
            for m, slits in zip(members, files, strict=True)]
    log.info("Read %d member(s), %d slit(s): mode spec", len(members), len(items))
    return items, info, "spec"


def read_members(members: list[Member], *, storage_options: dict[str, Any] | None = None,
                 workers: int = 1) -> tuple[list[Any], list[dict[str, Any]], str]:
    """Open every member (metadata and WCS now, pixels memory-mapped) and check them.

    Members given as URLs are read through fsspec with ``storage_options``. Slit
    spectroscopy files are opened by ``workers`` processes at once (other modes read
    metadata only, one file at a time).

    Returns
    -------
    items : list of Exposure or one Cube
        Slit spectroscopy: one Exposure per slit of every member (see
        :func:`daskod.io._jwst_spec.read_spec_members`), members in order.
    info : list of dict
        Per member: path, model type, exposure type.
    mode : str
        The mode guessed from the first member, as the reference does.
    """
    require_stdatamodels()
    for m in members:
        _check_fits(m.path, storage_options)
    items: list[Any] = []
    info: list[dict[str, Any]] = []
    mode = None
    for m in members:
        with contextlib.ExitStack() as stack:
            try:
                model = stack.enter_context(open_model(m.path,
                                                       storage_options=storage_options))
            except Exception as err:
                msg = f"{m.path}: stdatamodels cannot open it ({type(err).__name__}: {err})."
                raise InputError(msg) from err
            meta = model.meta
            exp_type = str(meta.exposure.type or "")
            nints = int(getattr(meta.exposure, "nints", None) or 1)
            tso = bool(getattr(meta.visit, "tsovisit", False)) or exp_type in TSO_EXP_TYPES
            try:
                wcs = getattr(meta, "wcs", None)
            except Exception as err:  # e.g. IFU transforms that need the jwst package
                log.warning("%s: its WCS cannot be read (%s: %s)", m.path,
                            type(err).__name__, err)
                wcs = None
            this_mode = guess_mode(exp_type, tso=tso, nints=nints)
            if this_mode is None:
                msg = (f"{m.path}: exposure type {exp_type!r} is not one daskod handles "
                       f"(imaging {IMAGING_EXP_TYPES}, coronagraphy {CORON_EXP_TYPES}, IFU "
                       f"{IFU_EXP_TYPES}, slit spectroscopy {SPEC_EXP_TYPES} or a time "
                       "series).")
                raise InputError(msg, exposure=m.path)
            mode = mode or this_mode
            if this_mode != mode:
                msg = (f"{m.path}: exposure type {exp_type!r} ({this_mode}) does not go with "
                       f"the first member's ({mode}); run each kind of exposure separately.")
                raise InputError(msg, exposure=m.path)
            level = getattr(meta.background, "level", None)
            subtracted = getattr(meta.background, "subtracted", None)
            texp = (getattr(meta.exposure, "measurement_time", None)
                    or getattr(meta.exposure, "exposure_time", None) or 1.0)
            group = m.group_id or _group_id(meta)
            model_type = type(model).__name__
            detector = getattr(meta.instrument, "detector", None)
            instrument = getattr(meta.instrument, "name", None)
        if this_mode == "spec":  # the first member: every member is read as slits
            return _read_spec(members, storage_options, workers)
        arrays = _fits_arrays(m.path, storage_options)
        name = os.path.basename(m.path)
        if this_mode == "ifu":
            if wcs is not None and not hasattr(wcs, "pixel_to_world_values"):
                wcs = None  # transforms of real IFU files need the jwst package
            # The difference method needs no WCS; the cube method refuses a missing one.
            items.append(Exposure(**arrays, wcs=wcs, group_id=group, exposure_time=float(texp),
                                  name=name, detector=detector, instrument=instrument,
                                  meta={"exp_type": exp_type}))
        elif this_mode == "imaging":
            if wcs is None:
                msg = f"{m.path}: has no WCS (meta.wcs); run assign_wcs on it first."
                raise WCSError(msg, exposure=name)
            items.append(Exposure(**arrays, wcs=wcs, group_id=group, exposure_time=float(texp),
                                  background_level=None if level is None else float(level),
                                  background_subtracted=subtracted, name=name))
        else:
            items.append(Cube(**arrays, tso_visit=tso, exp_type=exp_type, name=name))
        info.append({"path": m.path, "model_type": model_type, "exp_type": exp_type})
    assert mode is not None
    log.info("Read %d member(s): mode %s", len(members), mode)
    return items, info, mode
