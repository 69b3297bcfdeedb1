"""New JWST products from arrays of any size: stdatamodels writes a small template (the model's
metadata and WCS, each array one row or plane long), then the template's headers and ASDF
tree are given the arrays' full shapes and the pixels are streamed in block by block.

Used for the intermediate products (median, blot, drizzled groups: images, or cubes for time
series) and by :func:`daskod.datasets.write_cube_file` to write cubes larger than memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from daskod.io._asdf_hdu import FITS_HASH_KEY, asdf_table_hdu, dump_asdf, headers_hash
from daskod.io._fits_stream import (
    DEFAULT_BLOCK_BYTES,
    FitsWriter,
    ImageCodec,
    open_source,
    stream_image,
)
from daskod.io._location import publish, temp_folder

__all__ = ["write_model_streamed"]


def _placeholder(values: Any, dtype: Any) -> np.ndarray:
    shape = tuple(np.shape(values))
    return np.zeros((1, *shape[1:]) if shape else (1,), dtype=dtype)


def write_model_streamed(dst: str, arrays: dict[str, Any], *, model_class: str | None = None,
                         dtypes: dict[str, Any] | None = None, wcs: Any = None,
                         like: str | None = None, setup: Callable[[Any], None] | None = None,
                         storage_options: dict[str, Any] | None = None,
                         block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
    """Write a datamodel whose arrays (``{"data": ..., "wht": ...}``) are read a block at a
    time: numpy, Dask, Zarr or any object with ``shape`` and ``__getitem__`` over slices.

    Parameters
    ----------
    dst : str
        Output path or fsspec URL (written under the ``temp_dir`` option, then moved).
    arrays : dict
        Model attribute -> values; each is stored as float32 unless ``dtypes`` says otherwise.
    model_class : str, optional
        stdatamodels class name; default ``ImageModel`` for 2-D data, ``CubeModel`` for 3-D.
    wcs : optional
        ``meta.wcs``.
    like : str, optional
        A product whose primary-header metadata is copied (``model.update(..., only="PRIMARY")``).
    setup : callable, optional
        Called with the model before it is saved, to set more metadata.
    """
    from daskod.io._fits_url import open_metadata
    from daskod.io._jwst import require_stdatamodels
    from daskod.io._products import ProductLayout

    datamodels = require_stdatamodels()
    dtypes = {name: np.dtype(np.float32) for name in arrays} | dict(dtypes or {})
    if model_class is None:
        model_class = "CubeModel" if len(np.shape(arrays["data"])) == 3 else "ImageModel"
    cls = getattr(datamodels, model_class)
    model = cls(**{name: _placeholder(v, dtypes[name]) for name, v in arrays.items()})
    try:
        if like is not None:
            with open_metadata(like, storage_options=storage_options) as ref:
                model.update(ref, only="PRIMARY")
        if wcs is not None:
            model.meta.wcs = wcs
        if setup is not None:
            setup(model)
        with temp_folder("daskod-product-") as tmp:
            template = os.path.join(tmp, "template.fits")
            model.save(template)
            staged = os.path.join(tmp, os.path.basename(dst))
            _fill_template(ProductLayout(template, None), staged, os.path.basename(dst), arrays,
                           block_bytes=block_bytes)
            publish([staged], [dst], storage_options=storage_options)
    finally:
        model.close()


def _fill_template(template: Any, path: str, filename: str, arrays: dict[str, Any], *,
                   block_bytes: int) -> None:
    """``template`` with each array's extension resized to the array and filled from it."""
    tree = template.tree
    tree.setdefault("meta", {})["filename"] = filename
    nodes = dict(_top_level_nodes(tree))
    fill: dict[int, tuple[ImageCodec, tuple[int, ...], Any]] = {}
    headers = []
    for hdu in template.hdus:
        if hdu.name == "ASDF":
            continue
        header = hdu.header.copy()
        if hdu.index == 0:
            header["FILENAME"] = filename
        for name, values in arrays.items():
            if template.arrays.get(name) is hdu:
                shape = tuple(int(n) for n in np.shape(values))
                for axis, n in enumerate(reversed(shape), start=1):
                    header[f"NAXIS{axis}"] = n
                nodes[name]["shape"] = list(shape)
                codec = ImageCodec.from_header(header)
                assert codec is not None  # stdatamodels writes plain images
                fill[hdu.index] = (codec, shape, values)
        headers.append((hdu, header))
    missing = set(arrays) - {name for name, hdu in template.arrays.items()
                             if hdu.index in fill}
    if missing:
        msg = f"{filename}: no image extension for {sorted(missing)} in this model's schema."
        raise ValueError(msg)
    tree[FITS_HASH_KEY] = headers_hash(h for _, h in headers)
    asdf_bytes = dump_asdf(tree, template.blocks, like=template.yaml_part)
    with open_source(template.src, None) as source, FitsWriter(path) as writer:
        index = {}
        for hdu, header in headers:
            if hdu.index in fill:
                codec, shape, _ = fill[hdu.index]
                nbytes = int(np.prod(shape)) * codec.raw.itemsize
                index[hdu.index] = writer.add(header, nbytes)
            else:
                index[hdu.index] = writer.add(header, hdu.data_span,
                                              copy_from=(source, hdu.data_offset))
        writer.add(asdf_table_hdu(asdf_bytes).header, len(asdf_bytes), payload=asdf_bytes)
        writer.create()
        for hdu_index, (codec, shape, values) in fill.items():
            stream_image(writer, index[hdu_index], codec, shape, values,
                         block_bytes=block_bytes)


def _top_level_nodes(tree: dict[str, Any]) -> list[tuple[str, Any]]:
    from daskod.io._asdf_hdu import fits_array_nodes

    return [(str(path[0]), node) for path, node in fits_array_nodes(tree) if len(path) == 1]
