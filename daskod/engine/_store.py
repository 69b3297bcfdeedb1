"""The Zarr working store: stored phases, their manifests, the run record and the lock.

A phase that must be stored (the median is read at random by the blot; expensive phases a
rerun should skip) writes into a :class:`StoredArray`, one block per task. The task returns the
:class:`StoredArray` itself, so every task that reads the block depends on the one that wrote it
(the same contract as ``dask.array.store(..., return_stored=True, load_stored=False)``).
After its data, a block's task writes a checksum of it into the array's *manifest* (one small
chunk per block): a block is trusted only when its manifest entry is set and, for a resumed
run, when its data still has that checksum. Chunks are also stored with zarr's crc32c codec, so
a damaged chunk fails loudly wherever it is read; a missing chunk (read back as fill values)
fails the checksum. A task whose block is already in the manifest does no work, so computing
lazy results one after another, or rerunning after a kill, never repeats a finished block.

Each stored array carries the fingerprint of what decides its content (inputs, geometry and the
parameters of its phase and those before it): a rerun with other flagging parameters reuses the
drizzled groups and the median and recomputes the flags. The root attribute ``daskod_run``
records the inputs, parameters and layout; a store left by other *inputs* is refused unless
``overwrite_store``. One process writes a store at a time: :meth:`WorkingStore.lock`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from daskod._exceptions import StoreError

__all__ = ["StoredArray", "WorkingStore", "RECORD_KEY"]

log = logging.getLogger(__name__)

RECORD_KEY = "daskod_run"
LOCK_SUFFIX = ".daskod-lock"
_DIMS = {1: ("block",), 2: ("y", "x"), 3: ("plane", "y", "x"), 4: ("group", "plane", "y", "x"),
         5: ("exposure", "plane", "wavelength", "y", "x")}


def _codecs(dtype: Any) -> list[Any]:
    """crc32c on every chunk; integer arrays (DQ, counts) compressed too. Drizzled images and
    medians are noise-dominated floats that compress little (lz4 saved ~10 % at three times
    the write time)."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    if np.dtype(dtype).kind in "ui":
        return [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"), Crc32cCodec()]
    return [Crc32cCodec()]


def _checksum(block: np.ndarray) -> int:
    """Non-zero 33-bit tag of a block's content (its crc32 with bit 32 set)."""
    data = np.ascontiguousarray(block)
    return (zlib.crc32(data.view(np.uint8).ravel()) & 0xFFFFFFFF) | (1 << 32)


class StoredArray:
    """One stored phase: a zarr array written in blocks of ``block``, and its manifest.

    Picklable: tasks on other processes or cluster workers reopen the same arrays. The
    temporary store's ``keepalive`` stays in the process that made it.
    """

    def __init__(self, array: Any, manifest: Any, block: tuple[int, ...],
                 keepalive: Any = None) -> None:
        self.array = array
        self.manifest = manifest
        self.block = tuple(int(b) for b in block)
        self.keepalive = keepalive

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoredArray, (self.array, self.manifest, self.block))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.array.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Zarr's chunk shape (a sharded array's inner chunks): the least one read decodes.
        Readers align their regions to it so that no chunk is decoded twice."""
        return tuple(int(c) for c in self.array.chunks)

    @property
    def shards(self) -> tuple[int, ...] | None:
        """Zarr's shard shape (what one task writes), or None for an unsharded array."""
        shards = self.array.shards
        return None if shards is None else tuple(int(c) for c in shards)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.array[key]

    def region(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(i * b, min((i + 1) * b, n))
                     for i, b, n in zip(index, self.block, self.shape, strict=True))

    def done(self, index: tuple[int, ...]) -> bool:
        return bool(self.manifest[tuple(index)])

    def write(self, index: tuple[int, ...], value: Any) -> None:
        region = self.region(index)
        block = np.asarray(value, dtype=self.dtype).reshape(
            tuple(s.stop - s.start for s in region))
        self.array[region] = block
        self.manifest[tuple(index)] = _checksum(block)

    def verify(self) -> tuple[int, int]:
        """Check every block the manifest lists against its checksum; forget the bad ones.

        Returns (blocks kept, blocks forgotten). Damaged chunks (crc32c errors) and missing
        chunks (fill values) are forgotten and recomputed by the run.
        """
        marks = np.asarray(self.manifest[...])
        kept = bad = 0
        for index in zip(*np.nonzero(marks), strict=True):
            index = tuple(int(i) for i in index)
            try:
                ok = _checksum(np.asarray(self.array[self.region(index)])) == int(marks[index])
            except Exception:  # crc32c mismatch, truncated or unreadable chunk
                ok = False
            if ok:
                kept += 1
            else:
                bad += 1
                self.manifest[index] = 0
        return kept, bad


def fill_block(targets: tuple[StoredArray, ...], index: Any, func: Any,
               *args: Any, **kwargs: Any) -> Any:
    """Task: compute block ``index`` of ``targets`` with ``func`` unless it is stored already.

    ``index`` is one block index for all targets or a list of one per target; ``func``
    returns one block per target. Returns the target (the tuple of targets when there are
    several): readers depend on this task.
    """
    indices = index if isinstance(index, list) else [index] * len(targets)
    if not all(t.done(i) for t, i in zip(targets, indices, strict=True)):
        values = func(*args, **kwargs)
        if len(targets) == 1:
            values = (values,)
        for target, i, value in zip(targets, indices, values, strict=True):
            target.write(i, value)
    return targets[0] if len(targets) == 1 else targets


def read_block(targets: tuple[StoredArray, ...] | StoredArray, region: tuple[slice, ...],
               which: int = 0) -> np.ndarray:
    """Task: a region of a stored array, read after the task that wrote it."""
    target = targets[which] if isinstance(targets, tuple) else targets
    return np.asarray(target[region])


class _TemporaryFolder:
    """Removes a temporary store when the last object that uses it is garbage collected."""

    def __init__(self, path: str) -> None:
        import shutil
        import weakref

        self.path = path
        self._finalizer = weakref.finalize(self, shutil.rmtree, path, True)

    def remove(self) -> None:
        self._finalizer()

    def keep(self) -> None:
        self._finalizer.detach()

    @property
    def pending(self) -> bool:
        return self._finalizer.alive


class WorkingStore:
    """The run's Zarr store: a temporary folder, or a folder / URL the user named."""

    def __init__(self, root: Any, *, temporary: bool, location: str,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.root = root
        self.storage_options = storage_options
        self.temporary = temporary
        self.location = location
        self.keepalive = _TemporaryFolder(root) if temporary else None
        self.reused: dict[str, tuple[int, int]] = {}

    @classmethod
    def create(cls, store: Any = None, *, storage_options: dict[str, Any] | None = None
               ) -> WorkingStore:
        """A temporary store under the ``temp_dir`` option, or the user's store (checked
        by a probe write before any work)."""
        from daskod.io._location import open_store, store_location, temp_folder

        if store is None:
            with temp_folder("daskod-work-", keep=True) as path:
                return cls(path, temporary=True, location=path)
        root = open_store(store, storage_options=storage_options)
        return cls(root, temporary=False, location=store_location(root),
                   storage_options=storage_options)

    def remove(self) -> None:
        """Delete a temporary store now."""
        if self.keepalive is not None:
            self.keepalive.remove()

    @property
    def removed_with_its_arrays(self) -> bool:
        """A temporary store that goes when the last array reading it is dropped."""
        return self.keepalive is not None and self.keepalive.pending

    def keep(self) -> None:
        """Keep a temporary store after the run (``save_intermediate_results``)."""
        if self.keepalive is not None:
            self.keepalive.keep()

    # -- the run record -------------------------------------------------------------------
    def _group(self, mode: str = "a") -> Any:
        import zarr

        # Never the consolidated copy: it is rewritten only when a run completes.
        return zarr.open_group(store=self.root, mode=mode, use_consolidated=False)

    def record(self) -> dict[str, Any] | None:
        """The run record left in the store, or None."""
        import zarr

        try:
            group = zarr.open_group(store=self.root, mode="r", use_consolidated=False)
        except Exception:  # missing or not a zarr group
            return None
        record = group.attrs.get(RECORD_KEY)
        return dict(record) if isinstance(record, dict) else None

    def start(self, *, inputs: dict[str, str], parameters: dict[str, Any],
              layout: dict[str, Any], overwrite: bool) -> dict[str, Any]:
        """Check the store against this run and record it as running; returns the layout to
        use (the first run's, when resuming).

        Raises
        ------
        StoreError
            The store holds a run of other inputs (unless ``overwrite``), or files that are
            not a daskod store.
        """
        import daskod

        previous = None if self.temporary else self.record()
        if not self.temporary and previous is None and self._has_foreign_content():
            msg = (f"The store {self.location} holds files that are not a daskod working "
                   "store; give an empty or new folder.")
            raise StoreError(msg)
        if previous is not None and not overwrite:
            old = previous.get("inputs", {})
            if old != inputs:
                changed = sorted(set(old) ^ set(inputs)
                                 | {k for k in set(old) & set(inputs) if old[k] != inputs[k]})
                msg = (f"The store {self.location} holds a run of other inputs (differing: "
                       f"{', '.join(changed[:5])}); pass overwrite_store=True (daskod run: "
                       "--overwrite-store) to discard it, or use another store.")
                raise StoreError(msg)
            layout = previous.get("layout", layout)
        group = self._group("a")
        if overwrite and previous is not None:  # members only: the lock file stays
            for name in list(group.keys()):
                del group[name]
        group.attrs[RECORD_KEY] = {"status": "running", "inputs": inputs,
                                   "parameters": json.loads(json.dumps(parameters, default=str)),
                                   "layout": layout, "daskod_version": daskod.__version__}
        return layout

    def note_layout(self, values: dict[str, Any]) -> None:
        """Add layout choices made while building (a resumed run repeats them)."""
        group = self._group()
        record = dict(group.attrs.get(RECORD_KEY, {}))
        record["layout"] = {**record.get("layout", {}), **values}
        group.attrs[RECORD_KEY] = record

    def complete(self) -> None:
        """Record the run as complete and consolidate the store's metadata, so that
        ``xarray.open_zarr(store)`` reads it at once and without warnings."""
        import warnings

        import zarr

        group = self._group()
        record = dict(group.attrs.get(RECORD_KEY, {}))
        record["status"] = "complete"
        group.attrs[RECORD_KEY] = record
        with warnings.catch_warnings():  # consolidated metadata is not yet in the v3 spec
            warnings.filterwarnings("ignore", message="Consolidated metadata",
                                    category=UserWarning)
            zarr.consolidate_metadata(self.root)

    def _has_foreign_content(self) -> bool:
        if isinstance(self.root, str) and os.path.isdir(self.root):
            names = [n for n in os.listdir(self.root) if not n.startswith(".daskod-probe-")]
            return bool(names) and "zarr.json" not in names
        return False

    # -- stored phases --------------------------------------------------------------------
    def phase_array(self, name: str, shape: tuple[int, ...], dtype: Any,
                    block: tuple[int, ...], fill_value: Any, *, fingerprint: str,
                    chunks: tuple[int, ...] | None = None,
                    attributes: dict[str, Any] | None = None) -> StoredArray:
        """The stored array ``name``: reused (after verifying its blocks) when the store holds
        it with the same fingerprint and layout, else created empty.

        ``block`` is the write unit of one task; ``chunks`` (default ``block``) the read
        unit: with smaller chunks the array is sharded in blocks (one task writes one whole
        shard, never two tasks one shard: dask#12583).
        """
        import zarr

        shape = tuple(int(n) for n in shape)
        block = tuple(max(1, min(int(b), n)) for b, n in zip(block, shape, strict=True))
        chunks = block if chunks is None else tuple(
            max(1, min(int(c), b)) for c, b in zip(chunks, block, strict=True))
        grid = tuple(max(1, math.ceil(n / b)) for n, b in zip(shape, block, strict=True))
        layout = {"fingerprint": fingerprint, "block": list(block), "chunks": list(chunks)}
        if not self.temporary:
            try:
                array = zarr.open_array(store=self.root, path=name, mode="r+")
                manifest = zarr.open_array(store=self.root, path=f"manifest/{name}", mode="r+")
            except Exception:
                array = manifest = None
            if array is not None and dict(array.attrs.get("daskod_phase", {})) == layout \
                    and tuple(array.shape) == shape and manifest.shape == grid:
                stored = StoredArray(array, manifest, block, self.keepalive)
                kept, bad = stored.verify()
                self.reused[name] = (kept, int(np.prod(grid)))
                if bad:
                    log.warning("Store %s: %d damaged or missing block(s) of %s will be "
                                "recomputed", self.location, bad, name)
                return stored
        sharded = chunks != block
        array = zarr.create_array(
            store=self.root, name=name, shape=shape, dtype=dtype, chunks=chunks,
            shards=block if sharded else None, compressors=_codecs(dtype),
            fill_value=fill_value, overwrite=True,
            dimension_names=_DIMS.get(len(shape)), config={"write_empty_chunks": True},
            attributes={**(attributes or {}), "daskod_phase": layout})
        manifest = zarr.create_array(store=self.root, name=f"manifest/{name}", shape=grid,
                                     dtype=np.uint64, chunks=(1,) * len(grid), fill_value=0,
                                     overwrite=True, compressors=None)
        self.reused[name] = (0, int(np.prod(grid)))
        return StoredArray(array, manifest, block, self.keepalive)

    # -- one writer at a time -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's lock while a run writes it (temporary stores need none).

        Raises
        ------
        StoreError
            Another live process holds it.
        """
        if self.temporary:
            yield
            return
        # Beside the store, not in it: zarr would take a file in the store for a broken
        # member of the hierarchy.
        if isinstance(self.root, str):
            fs, path = None, self.root.rstrip(os.sep) + LOCK_SUFFIX
        else:
            from daskod.io._location import url_filesystem

            fs, base = url_filesystem(self.location, self.storage_options, what="store")
            path = base.rstrip("/") + LOCK_SUFFIX
        with _held_lock(fs, path, f"store {self.location}"):
            yield


def fingerprint(*parts: Any) -> str:
    """A stable token of ``parts``."""
    from dask.base import tokenize

    return tokenize(*parts)


def _lock_owner_alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell, assume alive
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def _held_lock(fs: Any, path: str, what: str) -> Iterator[None]:
    """Create ``path`` exclusively (a stale lock of a dead local process is taken over)."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    payload = json.dumps(owner).encode()
    for _attempt in range(2):
        try:
            if fs is None:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
            else:  # object stores: no atomic create; write, then check it is ours
                if fs.exists(path):
                    raise FileExistsError(path)
                fs.pipe_file(path, payload)
                if fs.cat_file(path) != payload:
                    raise FileExistsError(path)
            break
        except FileExistsError:
            try:
                if fs is None:
                    with open(path, "rb") as f:
                        held = json.loads(f.read())
                else:
                    held = json.loads(fs.cat_file(path))
            except Exception:
                held = {}
            if held and not _lock_owner_alive(held):
                log.warning("Taking over the lock of %s left by process %s (gone)", what,
                            held.get("pid"))
                (fs.rm_file(path) if fs else os.remove(path))
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S",
                                  time.localtime(float(held.get("since", 0) or 0)))
            msg = (f"The {what} is in use by process {held.get('pid', '?')} on "
                   f"{held.get('host', '?')} (since {since}); wait for that run to finish or "
                   "use another store. If no such run is alive, delete "
                   f"{path} and retry.")
            raise StoreError(msg) from None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            (fs.rm_file(path) if fs else os.remove(path))
