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
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.io._fits_url import RAW_DTYPES
from daskod.io._location import is_url, url_filesystem
from daskod.io._regions import regions

__all__ = ["HduInfo", "ImageCodec", "scan_hdus", "open_source", "FitsWriter", "stream_image",
           "BLOCK", "DEFAULT_BLOCK_BYTES"]

#: FITS block size: headers and data are padded to a multiple of it.
BLOCK = 2880
#: Default bytes of pixels read per step (summed over the arrays handled together).
DEFAULT_BLOCK_BYTES = 16 * 2**20
_COPY_CHUNK = 8 * 2**20


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
                or "BLANK" in header or int(header.get("BITPIX", 0)) not in RAW_DTYPES:
            return None
        raw = np.dtype(RAW_DTYPES[int(header["BITPIX"])])
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
                 values: Any, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
    """Fill an image HDU from ``values`` (any object with ``shape`` and ``__getitem__`` over
    slices: numpy, Dask, Zarr, :class:`~daskod.io._jwst.FitsArray`), one region at a time:
    blocks of about ``block_bytes``, or for chunked values each storage chunk once (up to
    twice that)."""
    itemsize = max(np.dtype(getattr(values, "dtype", np.float32)).itemsize, codec.raw.itemsize)
    most = max(1, block_bytes // (2 * itemsize))
    for key, runs in regions(shape, values, most, 2 * most, max_widened=most):
        raw = codec.encode(np.asarray(values[key]).reshape(-1))
        for first, n, offset in runs:
            writer.write_block(hdu, first, raw[offset:offset + n])
