"""Checkpoints: resumable runs in the Zarr working store.

A run that writes into a store the user named (``store=``) records in the store's root
attributes a *fingerprint* of everything that decides its results: the mode and parameters,
the identity of every input array, the geometry (pixel maps) and the chunk layout. Each
expensive task records its small return value in a per-phase array that has one chunk per
task (``checkpoints/<phase>``, ``[done, value]`` rows) right after it has written its own
data chunks, so a run killed at any moment leaves only finished tasks marked.

Running the same call on the same store again skips the marked tasks and reuses their
values: finished tiles are not recomputed and the result is the same as an uninterrupted
run. A store whose fingerprint differs (other parameters, other inputs, another tile size)
is refused with a :class:`~daskod.StoreError` that names what differs, before anything is
written, unless ``overwrite_store=True``; checkpoints are never silently reused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskod._exceptions import StoreError
from daskod.engine._tasks import new_task

__all__ = ["Checkpoints", "read_record", "recorded_tiles", "input_token", "wcs_token",
           "container_token", "record_result"]

log = logging.getLogger(__name__)

#: Root attribute of the working store that holds the run record.
RECORD_KEY = "daskod_run"
#: Fingerprint parts, in the order messages name them.
PARTS = ("mode", "parameters", "inputs", "geometry", "layout", "daskod version")


def _tokenize(*args: Any) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def wcs_token(wcs: Any, shape: tuple[int, int]) -> str:
    """Identity of a detector WCS by what it does: its forward transform evaluated on a
    9 x 9 grid of pixels (pickles of WCS objects are not stable from one process to the
    next)."""
    if wcs is None:
        return "none"
    ny, nx = shape
    y, x = np.meshgrid(np.linspace(0, ny - 1, 9), np.linspace(0, nx - 1, 9), indexing="ij")
    forward = getattr(wcs, "forward_transform", None)
    world = forward(x, y) if forward is not None else wcs.pixel_to_world_values(x, y)
    if not isinstance(world, tuple | list):
        world = (world,)
    return _tokenize("wcs", [np.round(np.asarray(w, dtype=np.float64), 10) for w in world])


def _zarr_array_token(array: Any) -> str:
    """Identity of a zarr array's content without reading its pixels.

    Local stores: the size and modification time of every chunk file; fsspec stores: each
    object's size and ETag or modification time. Other stores: the content itself.
    """
    store = array.store
    meta = (str(array.shape), str(array.dtype), str(array.chunks), array.path)
    root = getattr(store, "root", None)
    if root is not None:
        folder = os.path.join(os.fspath(root), array.path)
        entries = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                st = os.stat(os.path.join(dirpath, name))
                entries.append((os.path.relpath(os.path.join(dirpath, name), folder),
                                st.st_size, st.st_mtime_ns))
        return _tokenize("zarr-local", os.path.realpath(folder), meta, sorted(entries))
    fs = getattr(store, "fs", None)
    if fs is not None:
        base = f"{store.path.rstrip('/')}/{array.path}"
        if getattr(fs, "asynchronous", False):  # zarr's fsspec stores are asynchronous
            from zarr.core.sync import sync

            listing = sync(fs._find(base, detail=True))
        else:
            listing = fs.find(base, detail=True)
        entries = sorted((key, info.get("size"), str(info.get("ETag") or info.get("mtime")
                                                     or info.get("LastModified")))
                         for key, info in listing.items())
        return _tokenize("zarr-fsspec", base, meta, entries)
    return _tokenize("zarr-content", meta, np.asarray(array[...]))


def input_token(value: Any) -> str:
    """A token that changes whenever an input array's content may have changed.

    numpy arrays are hashed (about 10 ms per 16 MiB); zarr arrays are identified by their
    chunk files' sizes and modification times; Dask arrays by their graph name; lazy FITS
    extensions by the file's path, size and modification time. Reads no pixel of a file.
    """
    if value is None:
        return "none"
    if isinstance(value, np.ndarray):
        return _tokenize("numpy", value)
    from daskod.io._store import is_zarr_array

    if is_zarr_array(value):
        return _zarr_array_token(value)
    if hasattr(value, "dask") and hasattr(value, "name"):
        return f"dask-{value.name}"
    path = getattr(value, "path", None)
    if isinstance(path, str):
        from daskod.io._location import file_stamp

        stamp = file_stamp(path, getattr(value, "storage_options", None))
        return _tokenize("file", path, getattr(value, "extname", None), stamp,
                         str(getattr(value, "shape", None)))
    return _tokenize("object", value)


def container_token(container: Any, *meta: Any) -> str:
    """Identity of an Exposure's or Cube's arrays (see :func:`input_token`) and ``meta``."""
    from daskod.io._store import INPUT_ARRAYS

    return _tokenize(*meta, [input_token(getattr(container, name, None))
                             for name in INPUT_ARRAYS])


def read_record(root: Any) -> dict[str, Any] | None:
    """The run record of a working store, or None when it holds none (or does not exist)."""
    import zarr

    try:
        group = zarr.open_group(store=root, mode="r")
    except Exception:  # missing, or no zarr group at all
        return None
    record = group.attrs.get(RECORD_KEY)
    return dict(record) if isinstance(record, dict) else None


def recorded_tiles(root: Any) -> tuple[int, int] | None:
    """Tile and median tile of the imaging run recorded in a store (None when none)."""
    record = read_record(root)
    if record is None:
        return None
    try:
        layout = json.loads(record["describe"]["layout"])
        tile = int(layout["tile"])
        return tile, int(layout.get("median_tile", tile))
    except (KeyError, TypeError, ValueError):
        return None


def _store_has_content(root: Any) -> bool:
    """Whether a local store folder holds anything (object stores: whether it has a group)."""
    if isinstance(root, str | os.PathLike) and "://" not in os.fspath(root):
        path = os.fspath(root)
        if not os.path.isdir(path):
            return False
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    import zarr

    try:
        zarr.open_group(store=root, mode="r")
    except Exception:
        return False
    return True


def _is_zarr_hierarchy(root: Any) -> bool:
    if isinstance(root, str | os.PathLike) and "://" not in os.fspath(root):
        return os.path.exists(os.path.join(os.fspath(root), "zarr.json"))
    return True


def record_result(value: Any, record: Any, index: int, encode: Any) -> Any:
    """Task: mark task ``index`` of a phase done with its encoded value; pass ``value`` on."""
    number = encode(value)
    record[index] = np.array([1.0, np.nan if number is None else float(number)])
    return value


def _as_float(value: Any) -> float:
    return 1.0 if value is None else float(value)


@dataclass
class Checkpoints:
    """The checkpoints of one run in one working store (or none: ``enabled=False``).

    Use :meth:`open` to check the store's record and start or resume a run.
    """

    root: Any
    enabled: bool = False
    resuming: bool = False
    reused: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def disabled(cls, root: Any) -> Checkpoints:
        """No checkpoints (temporary stores, lazy graphs): arrays are created afresh."""
        return cls(root=root)

    @classmethod
    def open(cls, root: Any, *, parts: dict[str, Any], overwrite: bool,
             describe: dict[str, str] | None = None) -> Checkpoints:
        """Start or resume a checkpointed run in ``root``.

        Parameters
        ----------
        root : str or zarr store
            The working store.
        parts : dict
            The fingerprint parts (keys of :data:`PARTS`); each is tokenized.
        overwrite : bool
            Discard a store left by a run with another fingerprint instead of refusing it.
        describe : dict, optional
            Human-readable values of parts quoted in errors; by default a mapping part is
            shown key by key and any other part as text.

        Raises
        ------
        StoreError
            The store holds another run, or data that daskod did not write.
        """
        import zarr

        from daskod import __version__

        parts = {**parts, "daskod version": __version__}
        tokens = {name: _tokenize(name, parts.get(name)) for name in PARTS}
        describe = {**{name: describe_mapping(value) if isinstance(value, dict) else str(value)
                       for name, value in parts.items()},
                    **{k: str(v) for k, v in (describe or {}).items()}}
        record = read_record(root)
        if record is not None and record.get("tokens") == tokens:
            status = record.get("status", "running")
            log.info("Resuming the run in the working store (%s)", status)
            notes = dict(record.get("notes", {}))
            cls._write_record(root, tokens, describe, "running", __version__, notes)
            return cls(root=root, enabled=True, resuming=True, notes=notes)
        if record is not None and not overwrite:
            old = record.get("tokens", {})
            differ = [name for name in PARTS if old.get(name) != tokens[name]]
            before = record.get("describe", {})
            detail = "; ".join(_difference(name, before.get(name), describe.get(name))
                               for name in differ)
            msg = (f"The working store {_name(root)} holds a run with other {', '.join(differ)} "
                   f"({detail}); its checkpoints cannot be reused. Rerun with the same inputs "
                   "and parameters to resume, pass overwrite_store=True (daskod run: "
                   "--overwrite-store) to discard it, or choose another store.")
            raise StoreError(msg)
        if record is None and _store_has_content(root) and not (
                overwrite and _is_zarr_hierarchy(root)):
            what = ("a Zarr hierarchy that records no daskod run" if _is_zarr_hierarchy(root)
                    else "files that are not a Zarr store")
            fix = ("pass overwrite_store=True (daskod run: --overwrite-store) to discard it, "
                   "or choose an empty folder" if _is_zarr_hierarchy(root)
                   else "choose an empty or new folder")
            msg = f"The working store {_name(root)} already holds {what}; {fix}."
            raise StoreError(msg)
        if record is not None or _store_has_content(root):
            log.warning("Discarding the previous contents of the working store %s",
                        _name(root))
            zarr.open_group(store=root, mode="w")
        cls._write_record(root, tokens, describe, "running", __version__)
        return cls(root=root, enabled=True, resuming=False)

    @staticmethod
    def _write_record(root: Any, tokens: dict[str, str], describe: dict[str, str],
                      status: str, version: str, notes: dict[str, Any] | None = None) -> None:
        import zarr

        group = zarr.open_group(store=root, mode="a")
        group.attrs[RECORD_KEY] = {"tokens": tokens, "describe": describe, "status": status,
                                   "daskod_version": version, "notes": notes or {}}

    def note(self, **values: Any) -> None:
        """Record choices made during the run (e.g. a chunk layout derived from the memory
        budget) that a resumed run must repeat; read back with :meth:`noted`."""
        self.notes.update(values)
        if not self.enabled:
            return
        import zarr

        group = zarr.open_group(store=self.root, mode="a")
        record = dict(group.attrs[RECORD_KEY])
        record["notes"] = dict(self.notes)
        group.attrs[RECORD_KEY] = record

    def noted(self, key: str) -> Any:
        """A choice noted by the run being resumed (None when not resuming)."""
        return self.notes.get(key) if self.resuming else None

    def complete(self) -> None:
        """Mark the run complete (every phase finished and its outputs written)."""
        if not self.enabled:
            return
        import zarr

        group = zarr.open_group(store=self.root, mode="a")
        record = dict(group.attrs[RECORD_KEY])
        record["status"] = "complete"
        group.attrs[RECORD_KEY] = record

    def array(self, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...],
              fill_value: Any, **kwargs: Any) -> Any:
        """An array of the run: reopened when resuming (same shape, dtype and chunks), else
        created (overwriting)."""
        from daskod.io._store import create_array

        if self.resuming:
            import zarr

            try:
                existing = zarr.open_array(store=self.root, path=name, mode="r+")
            except Exception:
                existing = None
            shards = kwargs.get("shards") or chunks
            if existing is not None and (tuple(existing.shape) == tuple(shape)
                                         and existing.dtype == np.dtype(dtype)
                                         and tuple(existing.chunks) == tuple(chunks)
                                         and tuple(existing.shards or chunks) == tuple(shards)):
                return existing
        return create_array(self.root, name, shape, dtype, chunks, fill_value, **kwargs)

    def tasks(self, phase: str, tasks: list[Any], *, encode: Any = _as_float,
              decode: Any = None) -> list[Any]:
        """Checkpoint one phase's tasks.

        Each task is followed by a record of ``encode(result)``; a task recorded by an earlier
        run of the same fingerprint is replaced by ``decode(value)`` (not recomputed).
        """
        if not self.enabled or not tasks:
            return tasks

        n = len(tasks)
        name = f"checkpoints/{phase}"
        record = None
        done = np.zeros((n, 2))
        if self.resuming:
            record = self._open_record(name, n)
            if record is not None:
                done = np.asarray(record[...])
        if record is None:
            from daskod.io._store import create_array

            record = create_array(self.root, name, (n, 2), np.float64, (1, 2), 0.0,
                                  attributes={"kind": f"completion record of phase {phase}"},
                                  dimension_names=("task", "field"))
        decode = decode or (lambda v: v)
        out = []
        reused = 0
        for i, task in enumerate(tasks):
            if done[i, 0] == 1.0:
                out.append(decode(done[i, 1]))
                reused += 1
            else:
                out.append(new_task(record_result, task, record, i, encode))
        self.reused[phase] = (reused, n)
        if reused:
            log.info("Phase %s: %d of %d tasks done by an earlier run, reused", phase, reused,
                     n)
        return out

    def _open_record(self, name: str, n: int) -> Any:
        import zarr

        try:
            record = zarr.open_array(store=self.root, path=name, mode="r+")
        except Exception:
            return None
        return record if tuple(record.shape) == (n, 2) else None

    def summary(self) -> dict[str, dict[str, int]]:
        """Tasks reused from an earlier run, per phase."""
        return {phase: {"reused": r, "total": n} for phase, (r, n) in self.reused.items()}


def _name(root: Any) -> str:
    if isinstance(root, str | os.PathLike):
        return repr(os.fspath(root))
    return repr(str(root))


def describe_mapping(values: dict[str, Any]) -> str:
    """A mapping as stable JSON text (values as strings), for the record's descriptions."""
    return json.dumps({str(k): str(v) for k, v in values.items()}, sort_keys=True)


def _difference(name: str, old: str | None, new: str | None) -> str:
    """What changed in one fingerprint part, as far as the descriptions tell."""
    try:
        a, b = json.loads(old or ""), json.loads(new or "")
    except (TypeError, ValueError):
        a = b = None
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if keys and name == "inputs":
            shown = ", ".join(repr(k) for k in keys[:4])
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            return f"inputs {shown}{more} are not the same arrays"
        if keys:
            shown = ", ".join(f"{k}: {a.get(k, '-')} in the store, {b.get(k, '-')} now"
                              for k in keys[:4])
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            return f"{name} {shown}{more}"
    if old is not None and new is not None and old != new:
        return f"{name}: {old} in the store, {new} now"
    return f"{name} changed"
