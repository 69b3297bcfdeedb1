"""JWST level-2 products in: associations, ``*_cal.fits`` / ``*_calints.fits`` files.

Metadata and the WCS come through ``stdatamodels`` (extra ``daskod[files]``) from the headers and
the ASDF extension alone (:func:`~daskod.io._fits_url.open_metadata`); pixel arrays are read a
block at a time, so no exposure is ever held whole in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod._exceptions import InputError, StoreError
from daskod.cube import Cube
from daskod.io._datamodel import (
    IMAGING_EXP_TYPES,
    SPEC_EXP_TYPES,
    guess_mode,
    make_item,
    model_fields,
)
from daskod.io._fits_url import (
    image_layout,
    open_fits,
    open_metadata,
    open_model,
    read_block,
    scale_raw,
    trusted_asdf,
)
from daskod.io._location import explain_location_error, is_url, url_filesystem

__all__ = ["Member", "FitsArray", "require_stdatamodels", "gather_members", "read_members",
           "read_jwst", "guess_mode", "open_model", "IMAGING_EXP_TYPES", "SPEC_EXP_TYPES"]

log = logging.getLogger(__name__)

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
    asn_id: str | None = None


def _require_files_extra() -> None:
    """Refuse at once when the ``files`` extra (stdatamodels) is missing, without importing
    it (products whose headers were edited need it; the others are read without it)."""
    import importlib.util

    if importlib.util.find_spec("stdatamodels") is None:
        require_stdatamodels()


def require_stdatamodels() -> Any:
    """Import ``stdatamodels.jwst.datamodels`` or say which extra installs it."""
    try:
        from stdatamodels.jwst import datamodels
    except ImportError as err:
        msg = ("Reading JWST files needs stdatamodels: pip install 'daskod[files]' "
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
    asn_id = _asn_id(asn)
    for name, group_id, product in _science_names(path, asn):
        full = os.path.realpath(os.path.join(folder, name))
        if os.path.commonpath([full, os.path.realpath(folder)]) != os.path.realpath(folder):
            msg = (f"{path}: member {name!r} points outside the association's folder "
                   f"({folder}); members must live beside the association.")
            raise InputError(msg)
        members.append(Member(path=full, group_id=group_id, asn=path, product=product,
                              asn_id=asn_id))
    return members


def _asn_id(asn: Any) -> str | None:
    """The association's ``asn_id`` (the reference inserts it in output names)."""
    value = asn.get("asn_id") if isinstance(asn, dict) else None
    return str(value) if value else None


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
    asn_id = _asn_id(asn)
    for name, group_id, product in _science_names(url, asn):
        full = posixpath.normpath(posixpath.join(folder, name))
        if not full.startswith(folder + "/"):
            msg = (f"{url}: member {name!r} points outside the association's folder; "
                   "members must live beside the association.")
            raise InputError(msg)
        members.append(Member(path=f"{scheme}://{full}", group_id=group_id, asn=url,
                              product=product, asn_id=asn_id))
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


class FitsArray:
    """One image extension of a FITS file, read lazily. Picklable (a path and an extension
    name). With the extension's ``layout`` (:func:`~daskod.io._fits_url.image_layout`) a
    slice of a local file is one positioned read per run of contiguous pixels (no memory map,
    whose pages would count as resident over the whole span a slice crosses), of a URL one
    ranged request through fsspec (``storage_options``); otherwise (compressed extensions)
    astropy reads it, memory-mapped or as a section."""

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
            if raw is not None:  # ours: decoded in place, no second copy
                return scale_raw(raw, self.layout["bzero"], self.layout["bscale"], self.dtype,
                                 inplace=True)
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
                layout = image_layout(hdul, ext)  # None for compressed extensions
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


def _read_spec(members: list[Member], storage_options: dict[str, Any] | None,
               workers: int | None, memory_limit: Any
               ) -> tuple[list[Any], list[dict[str, Any]], str]:
    """Slit spectroscopy members: one Exposure per slit (or MIRI LRS image), in file order."""
    from daskod._heap import return_freed_memory
    from daskod.io._jwst_spec import read_spec_members
    from daskod.io._spec_products import file_processes

    if workers is None:  # files of hundreds of slits are opened by several processes
        workers = file_processes([m.path for m in members], memory_limit, storage_options)

    files = read_spec_members(members, storage_options=storage_options, workers=workers)
    return_freed_memory()
    items = [exp for slits in files for exp in slits]
    info = [{"path": m.path, "model_type": slits[0].meta.get("model_type") if slits else None,
             "exp_type": slits[0].meta.get("exp_type") if slits else None}
            for m, slits in zip(members, files, strict=True)]
    log.info("Read %d member(s), %d slit(s): mode spec", len(members), len(items))
    return items, info, "spec"


def _member_fields(m: Member, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`model_fields` of one member's metadata; errors name its path."""
    name = os.path.basename(m.path)
    with contextlib.ExitStack() as stack:
        try:
            model = stack.enter_context(open_metadata(
                m.path, storage_options=storage_options, lean=True))
        except Exception as err:
            msg = f"{m.path}: stdatamodels cannot open it ({type(err).__name__}: {err})."
            raise InputError(msg) from err
        try:
            return model_fields(model, name=name, group_id=m.group_id)
        except InputError as err:
            msg = str(err).replace(f"{name}:", f"{m.path}:", 1)
            raise type(err)(msg, exposure=err.exposure) from None


def read_members(members: list[Member], *, storage_options: dict[str, Any] | None = None,
                 workers: int | None = None, memory_limit: Any = None
                 ) -> tuple[list[Any], list[dict[str, Any]], str]:
    """Open every member (metadata and WCS now, pixels read a block at a time) and check them.

    Members given as URLs are read through fsspec with ``storage_options``. Slit
    spectroscopy files are opened by ``workers`` processes at once (default: as many as
    ``memory_limit`` holds, one for small files); other modes read metadata only, one file
    at a time.

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
    _require_files_extra()
    for m in members:
        _check_fits(m.path, storage_options)
    items: list[Any] = []
    info: list[dict[str, Any]] = []
    mode = None
    with trusted_asdf():  # one asdf configuration for every member (~75 ms each)
        for m in members:
            fields = _member_fields(m, storage_options)
            mode = mode or fields["mode"]
            if fields["mode"] != mode:
                msg = (f"{m.path}: exposure type {fields['exp_type']!r} ({fields['mode']}) does "
                       f"not go with the first member's ({mode}); run each kind of exposure "
                       "separately.")
                raise InputError(msg, exposure=m.path)
            if mode == "spec":  # the first member: every member is read as slits
                return _read_spec(members, storage_options, workers, memory_limit)
            items.append(make_item(fields, _fits_arrays(m.path, storage_options)))
            info.append({"path": m.path, "model_type": fields["model_type"],
                         "exp_type": fields["exp_type"]})
    assert mode is not None
    log.info("Read %d member(s): mode %s", len(members), mode)
    return items, info, mode


def read_jwst(inputs: str | os.PathLike | list[str | os.PathLike], *,
              storage_options: dict[str, Any] | None = None) -> list[Any] | Cube:
    """Read JWST level-2 products the way ``daskod run`` does, for use from Python.

    Parameters
    ----------
    inputs : path, URL or list of them
        Level-3 association(s) (``*_asn.json``: its science members, with their group ids)
        and/or products (``*_cal.fits``, ``*_calints.fits``). URLs (``s3://...``) are read
        through fsspec with ``storage_options``.
    storage_options : dict, optional
        fsspec options for URLs (credentials, endpoint).

    Returns
    -------
    list of Exposure, or Cube
        Imaging and IFU products: one :class:`~daskod.Exposure` per product, with
        everything the run needs (group id, exposure time, background level and whether it
        was subtracted, the pointing metadata ``wcsinfo`` of the output frame, detector,
        instrument, ``meta["exp_type"]``); pixels are read lazily from the files. One
        time-series or coronagraphic product: its :class:`~daskod.Cube` (a list of cubes
        for several).

    Examples
    --------
    >>> exposures = daskod.read_jwst("jw01234-o001_image3_asn.json")  # doctest: +SKIP
    >>> result = daskod.detect_outliers(exposures, memory_limit="2GiB")  # doctest: +SKIP
    """
    members = gather_members(inputs, storage_options=storage_options)
    items, _info, mode = read_members(members, storage_options=storage_options)
    if mode in ("tso", "coron") and len(items) == 1:
        return items[0]
    return items
