"""JWST products out: ``*_crf.fits`` / ``*_crfints.fits`` and intermediate products.

Each product is the input file with the new DQ, the reference's NaN matching (a pixel that is
DO_NOT_USE, or NaN in SCI, ERR or a VAR_* array, becomes DO_NOT_USE and NaN in all of them,
as jwst's ``match_nans_and_flags``) and ``meta.cal_step.outlier_detection`` set. It is
written a block of rows at a time: extensions that do not change are copied by the kernel,
the DQ and the float arrays are read, patched and written block by block, and only the
primary header and the ASDF metadata extension are rewritten (stdatamodels' ``_fits_hash``
of the headers included), so no array is ever whole in memory. The file is written into a
folder under the ``temp_dir`` option and then renamed into place, or uploaded as one object
when the output is an fsspec URL (``s3://...``), so an interrupted run never leaves a
half-written product.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod.flag._dq import DO_NOT_USE
from daskod.io._asdf_hdu import (
    FITS_HASH_KEY,
    asdf_table_hdu,
    dump_asdf,
    fits_array_nodes,
    headers_hash,
    load_tree,
    split_asdf,
)
from daskod.io._fits_stream import (
    DEFAULT_BLOCK_BYTES,
    FitsWriter,
    HduInfo,
    ImageCodec,
    open_source,
    scan_hdus,
)
from daskod.io._location import is_url, publish, temp_folder
from daskod.io._regions import batches, regions

__all__ = ["output_path", "check_name", "plan_outputs", "write_product", "write_image", "join",
           "stem_of", "ProductLayout"]

log = logging.getLogger(__name__)

#: Pipeline suffixes replaced by the new one (the reference's file naming).
KNOWN_SUFFIXES = ("cal", "calints", "rate", "rateints", "crf", "crfints", "i2d", "s2d",
                  "outlierdetectionstep")
#: The arrays jwst's ``match_nans_and_flags`` keeps consistent with DO_NOT_USE, in its order.
FLOAT_ARRAYS = ("data", "err", "var_rnoise", "var_poisson", "var_flat")
#: The primary-header card stdatamodels writes for ``meta.cal_step.outlier_detection``
#: (keyword and comment from its core schema) and the section it opens when it is the first.
STEP_KEYWORD = ("S_OUTLIR", "Outlier Detection")
_STEP_SECTION = "Calibration step information"
_CHECKSUMS = ("CHECKSUM", "DATASUM")


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


def _now() -> str:
    """UTC now as stdatamodels writes ``meta.date`` (``Time.now().isot``)."""
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return now.isoformat(timespec="milliseconds")


def _set_step_keyword(header: Any, status: str) -> None:
    """``S_OUTLIR = status`` where stdatamodels keeps calibration-step keywords: updated in
    place, else after the last ``S_*`` step keyword, else in a new section at the end."""
    keyword, comment = STEP_KEYWORD
    if keyword in header:
        header[keyword] = status
        return
    steps = [i for i, card in enumerate(header.cards)
             if re.fullmatch(r"S_[A-Z0-9]{2,6}", card.keyword or "")]
    if steps:
        header.insert(steps[-1] + 1, (keyword, status, comment))
        return
    for card in (("", ""), ("", _STEP_SECTION), ("", ""), (keyword, status, comment)):
        header.append(card, useblanks=False, end=True)


def _source_ext(node: Any) -> tuple[str, int] | int:
    """``("SCI", 1)`` from ``source: fits:SCI,1`` (an HDU index for ``fits:3``)."""
    text = str(node["source"])[len("fits:"):]
    name, _, ver = text.rpartition(",")
    return (name, int(ver)) if name else int(ver)


class ProductLayout:
    """An input product's layout: HDUs, the ASDF tree (tagged YAML) and its binary blocks,
    and which image extension holds each top-level array of the model."""

    def __init__(self, src: str, storage_options: dict[str, Any] | None) -> None:
        self.src = src
        self.hdus = scan_hdus(src, storage_options)
        asdf_hdus = [h for h in self.hdus if h.name == "ASDF"]
        if len(asdf_hdus) != 1:
            msg = f"{src}: not a JWST product (no single ASDF metadata extension)."
            raise InputError(msg)
        self.asdf = asdf_hdus[0]
        header = self.asdf.header
        with open_source(src, storage_options) as source:
            raw = source.read(self.asdf.data_offset,
                              int(header["NAXIS1"]) * int(header["NAXIS2"]))
        self.yaml_part, self.blocks = split_asdf(raw)
        self.tree = load_tree(self.yaml_part)
        self.arrays: dict[str, HduInfo] = {}
        for path, node in fits_array_nodes(self.tree):
            if len(path) == 1:
                hdu = self.hdu(_source_ext(node))
                if hdu is not None:
                    self.arrays[str(path[0])] = hdu

    def hdu(self, ext: tuple[str, int] | int) -> HduInfo | None:
        if isinstance(ext, int):
            return self.hdus[ext] if ext < len(self.hdus) else None
        return next((h for h in self.hdus if (h.name, h.ver) == ext), None)

    def headers_matched(self) -> bool:
        """Whether the input's ``_fits_hash`` matches its headers (stdatamodels then reads
        the metadata from the tree alone)."""
        return self.tree.get(FITS_HASH_KEY) == headers_hash(
            h.header for h in self.hdus if h.name != "ASDF")


def _plan_writes(product: ProductLayout, dq: Any, match: bool
                 ) -> tuple[dict[str, HduInfo], bool]:
    """The arrays written block by block: ``dq`` (when given or matched) and the float
    arrays that match the science array's shape (when matching NaNs); and whether NaNs are
    matched (not when the DQ's shape differs from the science array's, as in jwst)."""
    dq_hdu = product.arrays.get("dq")
    if dq is not None:
        if dq_hdu is None:
            msg = f"{product.src}: has no DQ extension to write the new flags into."
            raise InputError(msg)
        if tuple(np.shape(dq)) != dq_hdu.shape:
            msg = (f"{product.src}: DQ shape {dq_hdu.shape} does not match the result "
                   f"{tuple(np.shape(dq))}.")
            raise InputError(msg)
    out: dict[str, HduInfo] = {}
    if match:
        shape = next((product.arrays[n].shape for n in FLOAT_ARRAYS if n in product.arrays),
                     None)
        for name in FLOAT_ARRAYS:
            hdu = product.arrays.get(name)
            if hdu is not None and hdu.shape == shape:
                out[name] = hdu
            elif hdu is not None:
                log.warning("%s: %s has shape %s, not %s; its NaNs are not matched",
                            product.src, name, hdu.shape, shape)
        if dq_hdu is not None and shape is not None and dq_hdu.shape != shape:
            log.warning("%s: DQ shape %s differs from SCI %s; DQ is not matched to NaNs",
                        product.src, dq_hdu.shape, shape)
            match = False
            out = {}
    if dq_hdu is not None and (dq is not None or out):
        out["dq"] = dq_hdu
    return out, match


def write_product(src: str, dst: str, dq: Any = None, *, status: str = "COMPLETE",
                  storage_options: dict[str, Any] | None = None,
                  block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
    """Write ``dst``: the product ``src`` with the new DQ and the reference's NaN matching.

    Parameters
    ----------
    src, dst : str
        Input product and output path; either may be an fsspec URL (opened with
        ``storage_options``).
    dq : array-like, optional
        The new DQ (input DQ with the outlier flags), any object with ``shape`` and
        ``__getitem__`` over slices (numpy, Dask, Zarr): it is read one block at a time.
        None keeps the input's DQ.
    status : str
        ``meta.cal_step.outlier_detection`` (``"SKIPPED"`` when the step was skipped, as the
        reference records it; the arrays are then copied unchanged).
    block_bytes : int
        Bytes of pixels handled per step, summed over the arrays patched together; the
        writer holds about twice this, plus, for a chunked ``dq`` (Dask, Zarr) whose chunks
        are larger than a block, one storage chunk-slab of up to four times this (so that
        no chunk is read twice).
    """
    product = ProductLayout(src, storage_options)
    patched, match = _plan_writes(product, dq, status == "COMPLETE")
    codecs = {name: ImageCodec.from_header(hdu.header) for name, hdu in patched.items()}
    plain = all(patched[name].plain_image and codec is not None
                and (codec.raw.kind == "f") == (name != "dq") for name, codec in codecs.items())
    with temp_folder("daskod-product-") as tmp:
        staged = os.path.join(tmp, os.path.basename(dst))
        if plain:
            _stream_product(product, staged, os.path.basename(dst), dq, patched, codecs,
                            status=status, match=match, storage_options=storage_options,
                            block_bytes=block_bytes)
        else:
            log.warning("%s: compressed or scaled extensions; this product is written whole "
                        "in memory by stdatamodels", src)
            _write_whole(src, staged, dq, status=status, match=match,
                         storage_options=storage_options)
        publish([staged], [dst], storage_options=storage_options)
    log.info("Wrote %s", dst)


def replace_atomically(model: Any, final: str,
                       storage_options: dict[str, Any] | None = None) -> None:
    """Save a whole datamodel under the temporary folder, then move or upload it to
    ``final`` (products of encodings or layouts the block writer does not cover, e.g. slit
    products)."""
    with temp_folder("daskod-product-") as tmp:
        staged = os.path.join(tmp, os.path.basename(final))
        model.save(staged)
        publish([staged], [final], storage_options=storage_options)


def _write_whole(src: str, path: str, dq: Any, *, status: str, match: bool,
                 storage_options: dict[str, Any] | None) -> None:
    """The same product through stdatamodels, every array in memory (for the encodings
    block writes do not handle: tile-compressed or BSCALE-scaled extensions)."""
    from daskod.io._fits_url import open_model

    with open_model(src, storage_options=storage_options) as model:
        new = np.array(model.dq if dq is None else np.asarray(dq), dtype=np.uint32)
        if match:
            arrays = [n for n in FLOAT_ARRAYS
                      if model.hasattr(n) and getattr(model, n).shape == new.shape]
            invalid = (new & DO_NOT_USE) != 0
            for name in arrays:
                invalid |= np.isnan(getattr(model, name))
            new[invalid] |= np.uint32(DO_NOT_USE)
            for name in arrays:
                values = np.array(getattr(model, name))
                values[invalid] = np.nan
                setattr(model, name, values)
        model.dq = new
        model.meta.cal_step.outlier_detection = status
        model.save(path)


def _stream_product(product: ProductLayout, path: str, filename: str, dq: Any,
                    patched: dict[str, HduInfo], codecs: dict[str, Any], *, status: str,
                    match: bool, storage_options: dict[str, Any] | None,
                    block_bytes: int) -> None:
    now = _now()
    tree = product.tree
    meta = tree.setdefault("meta", {})
    meta.setdefault("cal_step", {})["outlier_detection"] = status
    meta["filename"] = filename
    meta["date"] = now
    headers = []
    changed = {h.index for h in patched.values()}
    for hdu in product.hdus:
        if hdu.name == "ASDF":
            continue
        header = hdu.header.copy()
        if hdu.index == 0:
            header["DATE"] = now
            header["FILENAME"] = filename
            _set_step_keyword(header, status)
        if hdu.index == 0 or hdu.index in changed:
            for key in _CHECKSUMS:
                header.remove(key, ignore_missing=True)
        headers.append((hdu, header))
    if product.headers_matched():
        tree[FITS_HASH_KEY] = headers_hash(h for _, h in headers)
    asdf_bytes = dump_asdf(tree, product.blocks, like=product.yaml_part)
    table = asdf_table_hdu(asdf_bytes)
    with open_source(product.src, storage_options) as source, FitsWriter(path) as writer:
        index = {}
        for hdu, header in headers:
            nbytes = hdu.data_span
            index[hdu.index] = writer.add(
                header, nbytes,
                copy_from=None if hdu.index in changed else (source, hdu.data_offset))
        writer.add(table.header, len(asdf_bytes), payload=asdf_bytes)
        writer.create()
        if patched:
            _patch_blocks(source, writer, index, dq, patched, codecs, match=match,
                          block_bytes=block_bytes)


def _patch_blocks(source: Any, writer: FitsWriter, index: dict[int, int], dq: Any,
                  patched: dict[str, HduInfo], codecs: dict[str, Any], *, match: bool,
                  block_bytes: int) -> None:
    """New DQ and NaN-matched float arrays, one batch of contiguous runs at a time."""
    floats = [n for n in FLOAT_ARRAYS if n in patched]
    dq_hdu = patched.get("dq")
    shape = (dq_hdu or patched[floats[0]]).shape
    # Per element: the float blocks read, the DQ read and encoded (4 + 8 B), the mask.
    per_element = sum(codecs[n].raw.itemsize for n in floats) + 13
    max_elements = max(1, block_bytes // per_element)
    buffers = {n: np.empty(min(max_elements, int(np.prod(shape))), dtype=codecs[n].raw)
               for n in floats}
    # A chunked DQ (Dask, Zarr) is read a storage chunk at a time (each chunk once when it
    # holds at most two blocks' bytes), tiles side by side together while they hold at
    # most one block's bytes; other sources a block at a time. (Larger regions cost far
    # more than their size: zarr decodes their chunks in parallel threads.)
    for key, runs in regions(shape, dq, max_elements, max(max_elements, block_bytes // 2),
                             max_widened=max(max_elements, block_bytes // 4)):
        region = None if dq is None else np.asarray(dq[key]).reshape(-1)
        for batch in batches(runs, max_elements):
            n = sum(r[1] for r in batch)
            new = None
            if region is not None:
                new = np.concatenate([region[o:o + k] for _, k, o in batch]).astype(np.uint32)
            elif dq_hdu is not None:
                raw = np.empty(n, dtype=codecs["dq"].raw)
                _read_runs(source, dq_hdu, batch, raw)
                new = codecs["dq"].decode(raw)
            if match:
                invalid = np.zeros(n, dtype=bool) if new is None else (new & DO_NOT_USE) != 0
                for name in floats:
                    raw = buffers[name][:n]
                    _read_runs(source, patched[name], batch, raw)
                    invalid |= np.isnan(raw)
                if new is not None:
                    new[invalid] |= np.uint32(DO_NOT_USE)
                for name in floats:
                    raw = buffers[name][:n]
                    raw[invalid] = np.nan
                    _write_runs(writer, index[patched[name].index], batch, raw)
            if new is not None:
                _write_runs(writer, index[dq_hdu.index], batch, codecs["dq"].encode(new))


def _read_runs(source: Any, hdu: HduInfo, batch: list[tuple[int, int, int]],
               out: np.ndarray) -> None:
    """The raw values of a batch of runs of ``hdu``'s data, one after the other."""
    at = 0
    for first, n, _ in batch:
        source.read_into(hdu.data_offset + first * out.itemsize, out[at:at + n])
        at += n


def _write_runs(writer: FitsWriter, hdu: int, batch: list[tuple[int, int, int]],
                raw: np.ndarray) -> None:
    at = 0
    for first, n, _ in batch:
        writer.write_block(hdu, first, raw[at:at + n])
        at += n


def write_image(dst: str, data: Any, *, wcs: Any = None, extra: dict | None = None,
                like: str | None = None, storage_options: dict[str, Any] | None = None,
                block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
    """An intermediate product (ImageModel, or CubeModel for a cube) with a WCS: median,
    blot, drizzled group. ``data`` and the ``extra`` arrays (e.g. ``wht``) are read one
    block at a time (numpy, Dask or Zarr) and stored as float32."""
    from daskod.io._image_products import write_model_streamed

    write_model_streamed(dst, {"data": data, **(extra or {})}, wcs=wcs, like=like,
                         storage_options=storage_options, block_bytes=block_bytes)
    log.info("Wrote %s", dst)
