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

from daskod.engine._tasks import new_task

__all__ = ["INPUT_ARRAYS", "create_array", "is_zarr_array", "write_block", "ingest_tasks",
           "array_sources", "ingested_bytes", "store_bytes"]

#: The arrays of an Exposure or Cube that tasks read.
INPUT_ARRAYS = ("sci", "err", "dq", "var_rnoise", "var_poisson", "var_flat")


def is_zarr_array(obj: Any) -> bool:
    """True for a ``zarr.Array`` (read directly, never copied)."""
    try:
        import zarr
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, zarr.Array)


_DIMS = {2: ("y", "x"), 3: ("plane", "y", "x")}


def create_array(root: str, name: str, shape: tuple[int, ...], dtype: Any,
                 chunks: tuple[int, ...], fill_value: Any, *,
                 attributes: dict | None = None,
                 dimension_names: tuple[str, ...] | None = None,
                 shards: tuple[int, ...] | None = None) -> Any:
    """Create (overwrite) one uncompressed array in the working store.

    Arrays carry dimension names, so ``xarray.open_zarr(store, group=...)`` reads them.
    ``shards`` groups chunks into shard objects; every task must then write whole shards
    (never two tasks into one shard: dask#12583), while reads may take single chunks.
    """
    import zarr

    return zarr.create_array(
        dimension_names=dimension_names or _DIMS.get(len(shape)),
        store=root,
        name=name,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        compressors=None,
        fill_value=fill_value,
        overwrite=True,
        attributes=attributes or {},
        **({"shards": shards} if shards is not None and tuple(shards) != tuple(chunks)
           else {}),
    )


def write_block(target: Any, region: tuple[slice, ...], block: Any, *_after: Any) -> None:
    """Write one chunk-aligned block; extra arguments only order the task after others."""
    target[region] = np.asarray(block)


def copy_block(target: Any, region: tuple[slice, ...], source: Any) -> None:
    """Read ``source[region]`` inside the task (lazy sources) and write it."""
    target[region] = np.asarray(source[region])


def ingest_tasks(source: Any, target: Any, chunks: tuple[int, ...]) -> list[Any]:
    """Delayed tasks that copy an array into ``target`` block by block.

    Dask arrays are stored (rechunked to ``chunks``); numpy arrays are sliced now (views);
    any other sliceable (a lazy FITS extension, a zarr array) is read inside each task.
    """
    import itertools


    if hasattr(source, "dask") and hasattr(source, "chunks"):
        import dask.array as da

        arr = source if source.chunksize == tuple(chunks) else source.rechunk(chunks)
        return [da.store(arr, target, lock=False, compute=False, return_stored=False)]
    shape = tuple(np.shape(source))
    starts = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    tasks = []
    for corner in itertools.product(*starts):
        region = tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, chunks, shape,
                                                                  strict=True))
        if isinstance(source, np.ndarray):
            tasks.append(new_task(write_block, target, region, source[region]))
        else:
            tasks.append(new_task(copy_block, target, region, source))
    return tasks


def array_sources(container: Any, root: str, prefix: str, chunks: tuple[int, ...], *,
                  shares_memory: bool, create: Any = None) -> tuple[dict[str, Any], list[Any]]:
    """Where tasks read each array of an Exposure/Cube from, and the tasks that ingest it.

    Zarr arrays are read in place; numpy arrays are read in place when tasks share this
    process's memory; everything else (Dask arrays, lazy FITS extensions, numpy arrays bound
    for other processes) is copied into ``<prefix>/<name>`` of the working store block by
    block. ``create(name, shape, dtype, chunks, fill_value)``, when given, makes the target
    arrays instead of :func:`create_array` (``root`` is then unused).
    """
    entry: dict[str, Any] = {}
    tasks: list[Any] = []
    for name in INPUT_ARRAYS:
        value = getattr(container, name, None)
        if value is None:
            continue
        if is_zarr_array(value) or (isinstance(value, np.ndarray) and shares_memory):
            entry[name] = value
            continue
        dtype = np.uint32 if name == "dq" else np.float32
        if create is None:
            target = create_array(root, f"{prefix}/{name}", tuple(np.shape(value)), dtype,
                                  chunks, 0 if name == "dq" else np.nan)
        else:  # the run's checkpoints reopen the arrays of a resumed run
            target = create(f"{prefix}/{name}", tuple(np.shape(value)), dtype, chunks,
                            0 if name == "dq" else np.nan)
        tasks.extend(ingest_tasks(value, target, chunks))
        entry[name] = target
    return entry, tasks


def ingested_bytes(container: Any, *, shares_memory: bool) -> int:
    """Bytes :func:`array_sources` will copy into the store for one Exposure/Cube (4 per
    pixel of every array that is not read in place). Reads no pixel."""
    total = 0
    for name in INPUT_ARRAYS:
        value = getattr(container, name, None)
        if value is None or is_zarr_array(value) or (isinstance(value, np.ndarray)
                                                     and shares_memory):
            continue
        total += 4 * int(np.prod(np.shape(value)))
    return total


def store_bytes(containers: list[Any], *, shares_memory: bool, frame_pixels: int = 0,
                n_groups: int = 0, median_pixels: int = 0) -> int:
    """Bytes a run writes into its working store (arrays are uncompressed).

    Ingested copies of inputs, the new DQ of every input (4 bytes per pixel), the drizzled
    groups (data and weight: ``n_groups * frame_pixels * 8``) and the median
    (``median_pixels * 4``).
    """
    total = 8 * n_groups * int(frame_pixels) + 4 * int(median_pixels)
    for item in containers:
        total += ingested_bytes(item, shares_memory=shares_memory)
        total += 4 * int(np.prod(np.shape(item.dq)))
    return total
