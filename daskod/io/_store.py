"""The Zarr working store: layout, array creation and ingest of user arrays.

Layout (one Zarr v3 group per run)::

    inputs/<k>/{sci,err,dq,var_rnoise,...}   ingested exposure arrays (unless already Zarr)
    resampled/data, resampled/wht             (G, ny, nx) drizzled groups, chunk (1, ty, tx)
    median                                    (ny, nx) median frame, chunk (ty, tx)
    outputs/<k>/dq                            updated DQ per exposure

Arrays are never sharded and every write covers whole chunks, so concurrent writers from
Dask never share a chunk (zarr 3 + dask sharded writes can silently corrupt data, dask#12583).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["create_array", "is_zarr_array", "write_block", "ingest_tasks"]


def is_zarr_array(obj: Any) -> bool:
    """True for a ``zarr.Array`` (read directly, never copied)."""
    try:
        import zarr
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, zarr.Array)


def create_array(root: str, name: str, shape: tuple[int, ...], dtype: Any,
                 chunks: tuple[int, ...], fill_value: Any, *,
                 attributes: dict | None = None) -> Any:
    """Create (overwrite) one uncompressed, unsharded array in the working store."""
    import zarr

    return zarr.create_array(
        store=root,
        name=name,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        compressors=None,
        fill_value=fill_value,
        overwrite=True,
        attributes=attributes or {},
    )


def write_block(target: Any, region: tuple[slice, ...], block: Any, *_after: Any) -> None:
    """Write one chunk-aligned block; extra arguments only order the task after others."""
    target[region] = np.asarray(block)


def ingest_tasks(source: Any, target: Any, tile: tuple[int, int]) -> list[Any]:
    """Delayed tasks that copy a numpy or Dask 2-D array into ``target`` block by block."""
    import dask

    if hasattr(source, "dask") and hasattr(source, "chunks"):
        import dask.array as da

        arr = source if source.chunksize == tile else source.rechunk(tile)
        return [da.store(arr, target, lock=False, compute=False, return_stored=False)]
    ny, nx = np.shape(source)
    tasks = []
    for y0 in range(0, ny, tile[0]):
        for x0 in range(0, nx, tile[1]):
            region = (slice(y0, min(y0 + tile[0], ny)), slice(x0, min(x0 + tile[1], nx)))
            tasks.append(dask.delayed(write_block, pure=False)(target, region, source[region]))
    return tasks
