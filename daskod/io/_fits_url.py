"""FITS products behind fsspec URLs (``s3://bucket/x_cal.fits``): open, models, block reads.

Opening a FITS file through fsspec reads its headers one small range request at a time, so a
task that reads one tile does not reopen the file: :func:`image_layout` records, once, where
an image extension's pixels start, and :func:`read_block` fetches the rows a tile needs with
one ranged request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from daskod.io._location import is_url, url_filesystem

__all__ = ["open_fits", "open_model", "open_metadata", "image_layout", "read_block",
           "scale_raw"]

log = logging.getLogger(__name__)

RAW_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def open_fits(path: str, storage_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """``astropy.io.fits.open`` of a local path, or of a URL through fsspec (no memory map;
    sections are read on demand)."""
    from astropy.io import fits

    if is_url(path):
        kwargs.pop("memmap", None)
        return fits.open(path, use_fsspec=True, fsspec_kwargs=dict(storage_options or {}),
                         **kwargs)
    return fits.open(path, **kwargs)


@contextlib.contextmanager
def open_model(path: str, *, storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """Open a JWST product with stdatamodels, from a local path or an fsspec URL.

    A URL is opened as an HDUList through fsspec and handed to the model class named by its
    ``DATAMODL`` keyword (``datamodels.open`` takes only local paths).
    """
    from daskod.io._jwst import require_stdatamodels

    datamodels = require_stdatamodels()
    if not is_url(path):
        with datamodels.open(path) as model:
            yield model
        return
    with open_fits(path, storage_options, lazy_load_hdus=True) as hdul:
        name = str(hdul[0].header.get("DATAMODL", "JwstDataModel"))
        cls = getattr(datamodels, name, None) or datamodels.JwstDataModel
        with cls(hdul) as model:
            yield model


@contextlib.contextmanager
def open_metadata(path: str, *, storage_options: dict[str, Any] | None = None,
                  lean: bool = False) -> Iterator[Any]:
    """A JWST product's datamodel with its metadata and WCS but no pixel array.

    Only the headers and the ASDF metadata extension are read (a few kB to MB whatever the
    size of the arrays); the model is built from the primary header and the ASDF tree
    without the nodes that point at image extensions, so ``model.meta`` (``meta.wcs``
    included) holds what ``datamodels.open`` gives while ``model.data`` and the other arrays
    are absent. Local paths and fsspec URLs alike.

    When the file's ``_fits_hash`` matches its headers (a file stdatamodels wrote and nothing
    edited since), stdatamodels reads the metadata from the tree alone, as here. Otherwise it
    also reads the FITS keywords of every extension; their headers are then given too (with
    no data), so edited keywords win as they do in ``datamodels.open``.

    With ``lean`` and a matching ``_fits_hash``, a :class:`TreeModel` (``meta`` only, read
    from the tree without building a datamodel: ~30 ms instead of ~250 ms per file) instead.
    """
    from astropy.io import fits

    from daskod.io._asdf_hdu import (
        FITS_HASH_KEY,
        asdf_table_hdu,
        dump_asdf,
        headers_hash,
        load_tree,
        split_asdf,
        without_fits_arrays,
    )
    from daskod.io._fits_stream import open_source, scan_hdus
    from daskod.io._jwst import require_stdatamodels

    hdus = scan_hdus(path, storage_options)
    asdf_hdu = next((h for h in hdus if h.name == "ASDF"), None)
    primary = fits.PrimaryHDU(header=hdus[0].header)
    hdul = fits.HDUList([primary])
    if asdf_hdu is not None:
        header = asdf_hdu.header
        with open_source(path, storage_options) as source:
            raw = source.read(asdf_hdu.data_offset, int(header["NAXIS1"]) * int(header["NAXIS2"]))
        yaml_part, blocks = split_asdf(raw)
        tree = load_tree(yaml_part)
        others = [h for h in hdus if h.name != "ASDF"]
        matched = tree.get(FITS_HASH_KEY) == headers_hash(h.header for h in others)
        tree = without_fits_arrays(tree)
        if matched and lean:
            yield TreeModel(dump_asdf(tree, blocks, like=yaml_part), hdus[0].header,
                            os.path.basename(path))
            return
        if matched:
            tree[FITS_HASH_KEY] = headers_hash([primary.header])
        else:
            for h in others[1:]:
                hdul.append(fits.ImageHDU(header=h.header, name=h.name, ver=h.ver))
        hdul.append(asdf_table_hdu(dump_asdf(tree, blocks, like=yaml_part)))
    datamodels = require_stdatamodels()
    name = str(hdus[0].header.get("DATAMODL", "JwstDataModel"))
    cls = getattr(datamodels, name, None) or datamodels.JwstDataModel
    with cls(hdul) as model:
        model.meta.filename = os.path.basename(path)  # as datamodels.open(path) sets it
        yield model


#: Metadata objects a schema always has (an unset one reads as empty, as in stdatamodels).
_META_OBJECTS = frozenset({"exposure", "visit", "background", "instrument", "observation",
                           "wcsinfo", "cal_step", "program", "target", "subarray"})


class MetaNode:
    """Attribute access to one level of an ASDF metadata tree, as a datamodel's ``meta``
    reads: an unset value is None, an unset metadata object an empty node."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._values.get(name, {} if name in _META_OBJECTS else None)
        return MetaNode(value) if isinstance(value, dict) else value


class TreeModel:
    """A product's metadata (and WCS) straight from its ASDF tree, for files whose headers
    stdatamodels would not override (``_fits_hash`` matches): no schema is walked, and
    stdatamodels is not even imported. ``model_type`` is the product's DATAMODL."""

    def __init__(self, asdf_bytes: bytes, primary: Any, filename: str) -> None:
        import io
        import warnings

        import asdf
        from asdf.exceptions import AsdfConversionWarning

        with trusted_asdf(), warnings.catch_warnings(record=True) as caught:
            # A WCS whose transforms need the jwst package stays raw (IFU files).
            warnings.simplefilter("always", AsdfConversionWarning)
            with asdf.open(io.BytesIO(asdf_bytes), lazy_load=False, memmap=False) as af:
                meta = af.tree.get("meta", {})
        for w in caught:
            log.debug("%s: %s", filename, w.message)
        meta = dict(meta) if isinstance(meta, dict) else {}
        wcs = meta.get("wcs")
        if wcs is not None and not hasattr(wcs, "forward_transform"):
            meta["wcs"] = None
        meta["filename"] = filename
        self.meta = MetaNode(meta)
        self.model_type = str(primary.get("DATAMODL", "JwstDataModel"))


@contextlib.contextmanager
def trusted_asdf() -> Iterator[None]:
    """ASDF trees read without schema validation (stdatamodels validated them when it wrote
    them). A new asdf configuration costs ~75 ms (it rebuilds its converter index), so one
    context serves every file read inside it: wrap a loop over files in it."""
    import asdf

    if not asdf.get_config().validate_on_read:
        yield
        return
    with asdf.config_context() as config:
        config.validate_on_read = False
        yield


def image_layout(hdul: Any, extname: str) -> dict[str, Any] | None:
    """Where an uncompressed image extension's pixels start in the file, and their encoding
    (``offset``, ``bitpix``, ``bzero``, ``bscale``); None for anything else (compressed,
    BLANK-masked integers), which is then read through astropy."""
    from astropy.io import fits

    index = hdul.index_of(extname)
    header = hdul[index].header
    if isinstance(hdul[index], fits.CompImageHDU) or header.get("XTENSION", "IMAGE") != "IMAGE" \
            or "ZIMAGE" in header or "BLANK" in header or int(header["BITPIX"]) not in RAW_DTYPES:
        return None
    return {"offset": int(hdul.fileinfo(index)["datLoc"]), "bitpix": int(header["BITPIX"]),
            "bzero": header.get("BZERO", 0), "bscale": header.get("BSCALE", 1),
            "extname": extname}


def _bounds(key: Any, shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """``[(start, stop), ...]`` per axis for ``...`` or a tuple of unit-step slices."""
    if key is Ellipsis:
        key = ()
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > len(shape) or not all(isinstance(k, slice) and k.step in (None, 1)
                                        for k in key):
        return None
    out = []
    for k, n in zip(key + (slice(None),) * (len(shape) - len(key)), shape, strict=True):
        start, stop, _ = k.indices(n)
        out.append((start, max(start, stop)))
    return out


#: A box is read in one ``pread`` of the file span from its first to its last pixel when
#: that span is at most this many times the box (one system call instead of one per row).
_SPAN_FACTOR = 4


def _pread_into(fd: int, target: np.ndarray, offset: int, path: str,
                layout: dict[str, Any]) -> None:
    """Fill the contiguous array ``target`` from byte ``offset`` of the open file ``fd``
    (positioned reads until it is full)."""
    view = memoryview(target).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            msg = f"{path}: the file ends inside its {layout.get('extname')} data."
            raise OSError(msg)
        done += got


def _span_read(path: str, layout: dict[str, Any], shape: tuple[int, ...],
               bounds: list[tuple[int, int]], dtype: np.dtype) -> np.ndarray | None:
    """The box ``bounds`` read as one contiguous span of the file and cut out of it (None
    when the span is more than :data:`_SPAN_FACTOR` times the box)."""
    size = math.prod(b - a for a, b in bounds)
    first = int(np.ravel_multi_index([a for a, _ in bounds], shape))
    last = int(np.ravel_multi_index([b - 1 for _, b in bounds], shape))
    count = last - first + 1
    if count > _SPAN_FACTOR * size:
        return None
    buf = np.empty(count, dtype=dtype)
    fd = os.open(path, os.O_RDONLY)
    try:
        _pread_into(fd, buf, layout["offset"] + first * dtype.itemsize, path, layout)
    finally:
        os.close(fd)
    if count == size:  # a contiguous box: the buffer is the block
        return buf.reshape([b - a for a, b in bounds])
    strides = [dtype.itemsize * math.prod(shape[i + 1:]) for i in range(len(shape))]
    box = np.lib.stride_tricks.as_strided(buf, shape=[b - a for a, b in bounds],
                                          strides=strides, writeable=False)
    return box.copy()


def read_block(path: str, storage_options: dict[str, Any] | None, layout: dict[str, Any],
               shape: tuple[int, ...], key: Any) -> np.ndarray | None:
    """The raw (unscaled, big-endian) pixels of ``key``, a new writable array. None when
    ``key`` is not a tuple of unit-step slices.

    A local file is read with one ``pread`` per run of pixels contiguous in the file (no
    memory map, whose pages would count as the process's memory over the whole span the
    slice crosses); a URL with one ranged request of whole rows along the first axis,
    cropped here.
    """
    bounds = _bounds(key, shape)
    if bounds is None:
        return None
    dtype = np.dtype(RAW_DTYPES[layout["bitpix"]])
    if any(b == a for a, b in bounds):
        return np.zeros([b - a for a, b in bounds], dtype=dtype)
    if not is_url(path):
        span = _span_read(path, layout, shape, bounds, dtype)
        if span is not None:
            return span
        from daskod.io._regions import box_runs

        out = np.empty([b - a for a, b in bounds], dtype=dtype)
        flat = out.reshape(-1)
        fd = os.open(path, os.O_RDONLY)
        try:
            for first, n, offset in box_runs(bounds, tuple(shape), flat.size):
                _pread_into(fd, flat[offset:offset + n],
                            layout["offset"] + first * dtype.itemsize, path, layout)
        finally:
            os.close(fd)
        return out
    (a0, b0), rest = bounds[0], bounds[1:]
    inner = tuple(shape[1:])
    row = dtype.itemsize * int(np.prod(inner, dtype=np.int64))
    fs, fpath = url_filesystem(path, storage_options, what="input")
    start = layout["offset"] + a0 * row
    data = fs.cat_file(fpath, start=start, end=start + (b0 - a0) * row)
    slab = np.frombuffer(data, dtype=dtype).reshape((b0 - a0, *inner))
    return slab[(slice(None), *(slice(a, b) for a, b in rest))].copy()


def scale_raw(raw: np.ndarray, bzero: Any, bscale: Any, dtype: np.dtype, *,
              inplace: bool = False) -> np.ndarray:
    """Apply BZERO/BSCALE to raw FITS values, as astropy would, into a native array: a new
    one, or (``inplace``, for a raw array that is the caller's to reuse) the same memory
    when the value type has the raw one's size (floats, unsigned integers stored signed)."""
    dtype = np.dtype(dtype)
    same_size = dtype.itemsize == raw.dtype.itemsize and raw.flags.c_contiguous
    if inplace and same_size and raw.flags.writeable:
        native = raw.byteswap(inplace=True).view(raw.dtype.newbyteorder("="))
        if bscale == 1 and bzero == 0 and native.dtype == dtype:
            return native
        if (bscale == 1 and native.dtype.kind == "i" and dtype.kind == "u"
                and int(bzero) == 2 ** (8 * dtype.itemsize - 1)):
            unsigned = native.view(dtype)
            np.bitwise_xor(unsigned, dtype.type(int(bzero)), out=unsigned)
            return unsigned
        raw = native
    if bscale == 1 and bzero != 0 and np.issubdtype(raw.dtype, np.integer):
        return (raw.astype(np.int64) + int(bzero)).astype(dtype)
    if bscale != 1 or bzero != 0:
        return (raw * bscale + bzero).astype(dtype)
    return np.array(raw, dtype=dtype, copy=True)
