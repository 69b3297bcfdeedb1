"""The ASDF extension of a JWST FITS product, edited without loading any pixel array.

stdatamodels stores a product's metadata as an ASDF file inside a one-row ``ASDF`` binary
table: a YAML tree (``meta``, the WCS, references such as ``source: fits:SCI,1`` to the image
extensions) followed by binary blocks (e.g. WCS polynomial coefficients). The tree also holds
``_fits_hash``, the SHA-256 of every other extension's header; when it matches, stdatamodels
takes the metadata from the tree alone.

Here the tree is read as plain tagged YAML (no converters, so no gwcs object and no array is
built), edited, and written back followed by the original binary blocks. Blocks are addressed
by their order, so they keep their meaning; the optional block index is left out (readers
then walk the blocks in order, as the ASDF standard allows).
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["split_asdf", "load_tree", "dump_asdf", "fits_array_nodes", "without_fits_arrays",
           "headers_hash", "asdf_table_hdu", "FITS_HASH_KEY"]

#: Where stdatamodels keeps the hash of the FITS headers in the tree.
FITS_HASH_KEY = "_fits_hash"
_BLOCK_MAGIC = b"\xd3BLK"
_DEFAULT_COMMENTS = b"#ASDF 1.0.0\n#ASDF_STANDARD 1.6.0\n"
_FITS_SOURCE = "fits:"


def split_asdf(raw: bytes) -> tuple[bytes, bytes]:
    """``(yaml_part, blocks)`` of an ASDF file: the comment lines and the YAML tree, then
    every binary block, in order, without the block index that may follow them."""
    start = raw.find(_BLOCK_MAGIC)  # 0xD3 0x42 never occurs in UTF-8 text
    if start < 0:
        return raw, b""
    pos = start
    while raw[pos:pos + 4] == _BLOCK_MAGIC:
        (header_size,) = struct.unpack(">H", raw[pos + 4:pos + 6])
        flags, _compression, allocated = struct.unpack(">I4sQ", raw[pos + 6:pos + 22])
        if flags & 1:  # a streamed block runs to the end of the file
            pos = len(raw)
            break
        pos += 6 + header_size + allocated
    return raw[:start], raw[start:pos]


def _comment_lines(yaml_part: bytes) -> bytes:
    """The ``#ASDF x`` and ``#ASDF_STANDARD y`` lines that open an ASDF file."""
    end = 0
    while yaml_part.startswith(b"#", end):
        end = yaml_part.index(b"\n", end) + 1
    return yaml_part[:end] or _DEFAULT_COMMENTS


def load_tree(raw: bytes) -> dict[str, Any]:
    """The ASDF tree of ``raw`` as tagged YAML nodes (``asdf.tagged`` dicts, lists, strings):
    nothing is converted, so no array is read and no WCS object is built."""
    import asdf

    return asdf.util.load_yaml(io.BytesIO(raw), tagged=True)


def dump_asdf(tree: dict[str, Any], blocks: bytes, *, like: bytes = b"") -> bytes:
    """An ASDF file: the opening lines of ``like`` (the file the tree came from), ``tree``
    (tagged YAML nodes, written as they are, with asdf's own YAML dumper) then ``blocks``.

    The tree is not validated again (it came from a valid file with a few values edited);
    ``asdf.AsdfFile(tree).write_to`` would spend ~0.3 s per product walking the schemas.
    """
    import asdf
    import yaml
    from asdf.yamlutil import AsdfDumper

    library = tree.get("asdf_library")
    if isinstance(library, dict):
        library["version"] = asdf.__version__  # the library that wrote this file
    buffer = io.BytesIO()
    buffer.write(_comment_lines(like))
    yaml.dump_all([tree], stream=buffer, Dumper=AsdfDumper, explicit_start=True,
                  explicit_end=True, version=(1, 1), allow_unicode=True, encoding="utf-8",
                  tags={"!": "tag:stsci.edu:asdf/"}, sort_keys=False)
    return buffer.getvalue() + blocks


def _is_fits_array(node: Any) -> bool:
    from asdf.tagged import get_tag

    if not isinstance(node, dict):
        return False
    tag = get_tag(node) or ""
    return ("/ndarray-" in tag
            and str(node.get("source", "")).startswith(_FITS_SOURCE))


def fits_array_nodes(tree: Any, path: tuple[Any, ...] = (),
                     seen: set[int] | None = None) -> Iterator[tuple[tuple, Any]]:
    """``(path, node)`` of every array stored in an image extension (``source: fits:SCI,1``):
    the node's ``shape`` and ``datatype`` describe it, ``path`` leads to it in the tree.
    Shared nodes (YAML aliases, which may be cyclic) are visited once."""
    seen = set() if seen is None else seen
    if _is_fits_array(tree):
        yield path, tree
    elif isinstance(tree, dict | list):
        if id(tree) in seen:
            return
        seen.add(id(tree))
        pairs = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for key, value in pairs:
            yield from fits_array_nodes(value, (*path, key), seen)


def without_fits_arrays(tree: Any, memo: dict[int, Any] | None = None) -> Any:
    """A copy of the tree's containers without the nodes that point at image extensions
    (a model opened from it has metadata and no pixel array). Shared nodes (YAML aliases,
    cyclic ones too: some spectroscopic WCSs have them) stay shared in the copy."""
    from asdf.tagged import TaggedDict, TaggedList, get_tag

    memo = {} if memo is None else memo
    if not isinstance(tree, dict | list):
        return tree
    if id(tree) in memo:
        return memo[id(tree)]
    tag = get_tag(tree)
    if isinstance(tree, dict):
        out: Any = TaggedDict({}, tag) if tag else {}
        memo[id(tree)] = out
        for key, value in tree.items():
            if not _is_fits_array(value):
                out[key] = without_fits_arrays(value, memo)
        return out
    out = TaggedList([], tag) if tag else []
    memo[id(tree)] = out
    out.extend(without_fits_arrays(v, memo) for v in tree if not _is_fits_array(v))
    return out


def headers_hash(headers: Iterable[Any]) -> str:
    """stdatamodels' ``_fits_hash``: SHA-256 of the text of every header but the ASDF one's,
    in file order."""
    return hashlib.sha256("".join(str(h) for h in headers).encode()).hexdigest()


def asdf_table_hdu(asdf_bytes: bytes) -> Any:
    """The ``ASDF`` extension holding ``asdf_bytes`` (a one-row table of one byte column),
    built as stdatamodels builds it."""
    from astropy.io import fits

    data = np.frombuffer(asdf_bytes, dtype=np.uint8)[None, :]
    column = fits.Column(array=data, format=f"{data.shape[1]}B", name="ASDF_METADATA")
    return fits.BinTableHDU.from_columns([column], name="ASDF")
