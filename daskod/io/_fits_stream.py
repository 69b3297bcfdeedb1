"""FITS files read and written a block at a time: header scans, image encodings, and a writer
that lays a file out from its headers and fills the image data with positioned writes.

A FITS file is a sequence of HDUs, each a header (2880-byte blocks of 80-character cards)
followed by its data, padded to 2880 bytes. Image data are contiguous C-order arrays in
big-endian order (integers may carry BZERO, e.g. uint32 DQ stored as int32 with
BZERO = 2**31). Knowing where each HDU's data start, a block of rows is read with one
``pread`` and written with one ``pwrite``: no array is ever whole in memory, and unchanged
extensions are copied by the kernel (``copy_file_range``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.io._location import is_url, url_filesystem

__all__ = ["HduInfo", "ImageCodec", "scan_hdus", "open_source", "row_blocks", "block_axis",
           "chunk_length", "ChunkReader", "FitsWriter", "stream_image", "BLOCK",
           "DEFAULT_BLOCK_BYTES"]

#: FITS block size: headers and data are padded to a multiple of it.
BLOCK = 2880
#: Default bytes of pixels read per step (summed over the arrays handled together).
DEFAULT_BLOCK_BYTES = 16 * 2**20
_COPY_CHUNK = 8 * 2**20
_RAW = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def padded(nbytes: int) -> int:
    """``nbytes`` rounded up to whole FITS blocks."""
    return -(-nbytes // BLOCK) * BLOCK


@dataclass
class HduInfo:
    """One HDU of an existing file: its header and where its header and data lie."""

    index: int
    name: str
    ver: int
    header: Any
    header_offset: int
    data_offset: int
    data_span: int
    #: A plain (uncompressed) image extension: its data are the pixels themselves.
    plain_image: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        h = self.header
        return tuple(int(h[f"NAXIS{i}"]) for i in range(int(h.get("NAXIS", 0)), 0, -1))


def scan_hdus(path: str, storage_options: dict[str, Any] | None = None) -> list[HduInfo]:
    """Every HDU's header and position; no data is read."""
    from astropy.io import fits

    from daskod.io._fits_url import open_fits

    out = []
    with open_fits(path, storage_options, memmap=False, lazy_load_hdus=True) as hdul:
        for i, hdu in enumerate(hdul):
            info = hdul.fileinfo(i)
            plain = isinstance(hdu, fits.ImageHDU) and not isinstance(hdu, fits.CompImageHDU)
            out.append(HduInfo(index=i, name=hdu.name, ver=int(hdu.ver),
                               header=hdu.header.copy(), header_offset=int(info["hdrLoc"]),
                               data_offset=int(info["datLoc"]), data_span=int(info["datSpan"]),
                               plain_image=plain))
    return out


@dataclass(frozen=True)
class ImageCodec:
    """How an image extension's values are stored: raw big-endian dtype, BZERO, BSCALE."""

    raw: np.dtype
    bzero: int | float
    bscale: int | float

    @classmethod
    def from_header(cls, header: Any) -> ImageCodec | None:
        """The codec of a plain image header; None for what block writes do not handle
        (compressed or table extensions, BLANK, scaled floats, non-unit BSCALE)."""
        if header.get("XTENSION", "IMAGE") != "IMAGE" or "ZIMAGE" in header \
                or "BLANK" in header or int(header.get("BITPIX", 0)) not in _RAW:
            return None
        raw = np.dtype(_RAW[int(header["BITPIX"])])
        bzero, bscale = header.get("BZERO", 0), header.get("BSCALE", 1)
        if bscale != 1 or (bzero != 0 and raw.kind == "f") or bzero != int(bzero):
            return None
        return cls(raw=raw, bzero=int(bzero), bscale=1)

    @property
    def dtype(self) -> np.dtype:
        """The values' native dtype (uint32 for int32 with BZERO = 2**31)."""
        native = self.raw.newbyteorder("=")
        if self.bzero and self.bzero == 2 ** (8 * self.raw.itemsize - 1):
            return np.dtype(f"u{self.raw.itemsize}")
        if self.bzero and native.kind == "u":  # uint8 stored with BZERO = -128
            return np.dtype(f"i{self.raw.itemsize}")
        return native

    @property
    def _sign_flip(self) -> bool:
        """Unsigned values stored signed with BZERO = 2**(bits-1): a flip of the top bit."""
        return self.raw.kind == "i" and self.bzero == 2 ** (8 * self.raw.itemsize - 1)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Native values from raw values (a new array)."""
        if self._sign_flip:
            unsigned = raw.view(raw.dtype.str.replace("i", "u"))
            return np.bitwise_xor(unsigned, unsigned.dtype.type(self.bzero), dtype=self.dtype)
        if not self.bzero:
            return raw.astype(self.dtype)
        return (raw.astype(np.int64) + self.bzero).astype(self.dtype)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Raw big-endian values from native ones (a new array)."""
        values = np.asarray(values)
        if self._sign_flip:
            unsigned = np.dtype(self.raw.str.replace("i", "u"))
            out = np.empty(values.shape, dtype=unsigned)
            np.bitwise_xor(values.astype(self.dtype, copy=False), self.dtype.type(self.bzero),
                           out=out)
            return out.view(self.raw)
        if not self.bzero:
            return values.astype(self.raw)
        return (values.astype(np.int64) - self.bzero).astype(self.raw)


def chunk_length(values: Any, axis: int) -> int | None:
    """The length of ``values``' storage chunks along ``axis`` (Dask or Zarr), else None."""
    chunks = getattr(values, "chunks", None)
    if not chunks or axis >= len(chunks):
        return None
    first = chunks[axis]
    if isinstance(first, tuple):  # Dask: the chunk lengths along each axis
        first = first[0] if first else None
    return int(first) if first else None


def block_axis(shape: tuple[int, ...], max_elements: int) -> tuple[int, int, int]:
    """``(k, inner, step)``: blocks of :func:`row_blocks` step ``step`` indices along axis
    ``k``, each index holding ``inner`` elements (the outermost axis whose trailing
    sub-array fits in ``max_elements``)."""
    k = len(shape) - 1
    while k > 0 and math.prod(shape[k:]) <= max_elements:
        k -= 1
    inner = math.prod(shape[k + 1:])
    return k, inner, max(1, max_elements // inner)


def row_blocks(shape: tuple[int, ...], max_elements: int, *, like: Any = None
               ) -> Iterator[tuple[tuple[slice, ...], int, int]]:
    """Cover a C-order array with blocks contiguous in memory of at most ``max_elements``
    (at least one element): ``(key, first_element, n_elements)``, ``key`` a tuple of unit
    slices (whole planes of a cube when they fit, else rows of one plane, else parts of a
    row). With ``like`` (a chunked Dask or Zarr array), block edges fall on its chunk edges
    where they can: whole chunks per block, or equal parts of one chunk."""
    shape = tuple(int(n) for n in shape)
    if not shape or 0 in shape:
        return
    k, inner, step = block_axis(shape, max(1, int(max_elements)))
    chunk = chunk_length(like, k) if like is not None else None
    if chunk and chunk <= step:
        step = step // chunk * chunk
    elif chunk:
        step = -(-chunk // -(-chunk // step))  # equal parts of one chunk
    for lead in np.ndindex(*shape[:k]):
        base = int(np.ravel_multi_index(lead, shape[:k])) * shape[k] * inner if k else 0
        for a in range(0, shape[k], step):
            b = min(shape[k], a + step)
            if chunk and chunk > step and a // chunk != (b - 1) // chunk:
                b = (a // chunk + 1) * chunk  # never across a chunk edge
            key = (*(slice(i, i + 1) for i in lead), slice(a, b),
                   *(slice(0, n) for n in shape[k + 1:]))
            yield key, base + a * inner, (b - a) * inner


class ChunkReader:
    """Blocks of a chunked array (Dask, Zarr) read one storage chunk-slab at a time: when
    blocks are parts of one chunk along the block axis, the slab holding that chunk (all
    the other axes) is read once and the blocks are cut from it, provided it holds at most
    ``max_bytes``; anything else is read directly."""

    def __init__(self, values: Any, shape: tuple[int, ...], max_elements: int,
                 max_bytes: int) -> None:
        self.values = values
        self.shape = tuple(int(n) for n in shape)
        self.k, inner, _ = block_axis(self.shape, max(1, int(max_elements)))
        self.chunk = chunk_length(values, self.k)
        itemsize = np.dtype(getattr(values, "dtype", np.float64)).itemsize
        if self.chunk and self.chunk * inner * itemsize > max_bytes:
            self.chunk = None
        self._key: tuple | None = None
        self._slab: np.ndarray | None = None

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        k, chunk = self.k, self.chunk
        a, b = key[k].start, key[k].stop
        if not chunk or b - a >= chunk or a // chunk != (b - 1) // chunk:
            return np.asarray(self.values[key])
        c0 = a // chunk * chunk
        ident = (tuple(s.start for s in key[:k]), c0)
        if ident != self._key:
            self._slab = None  # drop the previous slab before reading the next
            self._slab = np.asarray(self.values[(*key[:k], slice(c0, min(self.shape[k],
                                                                         c0 + chunk)))])
            self._key = ident
        assert self._slab is not None
        return self._slab[(*(slice(None),) * k, slice(a - c0, b - c0))]


class _Source:
    """Random reads (and kernel copies) from a local file or an fsspec URL."""

    def __init__(self, path: str, storage_options: dict[str, Any] | None) -> None:
        self.path = path
        self._stack = contextlib.ExitStack()
        if is_url(path):
            fs, fpath = url_filesystem(path, storage_options, what="input")
            self._file = self._stack.enter_context(fs.open(fpath, "rb"))
            self.fd = None
        else:
            self._file = self._stack.enter_context(open(path, "rb"))
            self.fd = self._file.fileno()

    def read_into(self, offset: int, buffer: np.ndarray) -> None:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            if self.fd is not None:
                n = os.preadv(self.fd, [view[done:]], offset + done)
            else:
                self._file.seek(offset + done)
                n = self._file.readinto(view[done:])
            if not n:
                msg = f"{self.path}: the file ends before byte {offset + len(view)}."
                raise OSError(msg)
            done += n

    def read(self, offset: int, nbytes: int) -> bytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        self.read_into(offset, buffer)
        return buffer.tobytes()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(path: str, storage_options: dict[str, Any] | None = None) -> _Source:
    """A reader of byte ranges of ``path`` (local, or an fsspec URL)."""
    return _Source(path, storage_options)


@dataclass
class _Part:
    header: Any
    data_nbytes: int
    copy_from: tuple[Any, int] | None = None  # (source, offset): raw copy of the data
    payload: bytes | None = None  # data bytes written as they are (then zero padding)
    header_offset: int = 0
    data_offset: int = 0


class FitsWriter:
    """Lays out a new FITS file from its HDU headers and fills it.

    ``add(header, data_nbytes, ...)`` appends an HDU; :meth:`create` writes the headers and
    the copied or given data; :meth:`write_block` then places raw image values at an element
    offset of an HDU's data. Padding is zeros (the file is created at its final size).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.parts: list[_Part] = []
        self._fd: int | None = None

    def add(self, header: Any, data_nbytes: int, *, copy_from: tuple[Any, int] | None = None,
            payload: bytes | None = None) -> int:
        """Append an HDU; returns its index."""
        self.parts.append(_Part(header=header, data_nbytes=int(data_nbytes),
                                copy_from=copy_from, payload=payload))
        return len(self.parts) - 1

    def create(self) -> None:
        offset = 0
        texts = []
        for part in self.parts:
            text = part.header.tostring(padding=True).encode("ascii")
            part.header_offset = offset
            part.data_offset = offset + len(text)
            offset = part.data_offset + padded(part.data_nbytes)
            texts.append(text)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, offset)
        for part, text in zip(self.parts, texts, strict=True):
            os.pwrite(self._fd, text, part.header_offset)
            if part.payload is not None:
                os.pwrite(self._fd, part.payload, part.data_offset)
            elif part.copy_from is not None:
                self._copy(part.copy_from[0], part.copy_from[1], part.data_offset,
                           part.data_nbytes)

    def _copy(self, source: _Source, src_offset: int, dst_offset: int, nbytes: int) -> None:
        assert self._fd is not None
        done = 0
        if source.fd is not None:
            with contextlib.suppress(OSError):  # e.g. a file system without it
                while done < nbytes:
                    n = os.copy_file_range(source.fd, self._fd, nbytes - done,
                                           src_offset + done, dst_offset + done)
                    if n <= 0:
                        break
                    done += n
        buffer = np.empty(min(_COPY_CHUNK, max(nbytes - done, 1)), dtype=np.uint8)
        while done < nbytes:
            n = min(len(buffer), nbytes - done)
            source.read_into(src_offset + done, buffer[:n])
            os.pwrite(self._fd, memoryview(buffer[:n]), dst_offset + done)
            done += n

    def write_block(self, hdu: int, first_element: int, raw: np.ndarray) -> None:
        """Write raw (big-endian, C-order) values starting at element ``first_element``."""
        assert self._fd is not None
        raw = np.ascontiguousarray(raw)
        part = self.parts[hdu]
        start = first_element * raw.itemsize
        if start + raw.nbytes > part.data_nbytes:
            msg = f"block past the end of HDU {hdu} of {self.path}"
            raise ValueError(msg)
        view = memoryview(raw).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], part.data_offset + start + done)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FitsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_image(writer: FitsWriter, hdu: int, codec: ImageCodec, shape: tuple[int, ...],
                 values: Any, *, block_bytes: int = DEFAULT_BLOCK_BYTES,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Fill an image HDU from ``values`` (any object with ``__getitem__`` over slices: numpy,
    Dask, Zarr, :class:`~daskod.io._jwst.FitsArray`), one block of at most ``block_bytes``
    at a time."""
    itemsize = max(np.dtype(getattr(values, "dtype", np.float32)).itemsize, codec.raw.itemsize)
    most = block_bytes // max(1, 2 * itemsize)
    reader = ChunkReader(values, shape, most, max_bytes=2 * block_bytes)
    for key, first, _n in row_blocks(shape, most, like=values):
        block = np.asarray(reader[key]).reshape(-1)
        if transform is not None:
            block = transform(block)
        writer.write_block(hdu, first, codec.encode(block))
