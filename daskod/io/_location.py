"""Where stores and files live: local folders or fsspec URLs (``s3://...``, ``file://...``).

The working store that every mode passes around (``root``) is what zarr 3 accepts as
``store=``: a local folder path (``str``) or a :class:`zarr.storage.FsspecStore` for a URL.
Both pickle cheaply (a path, or a file-system's constructor arguments), so tasks on other
processes and distributed workers open the same store.

Object stores are checked before any work: the bucket must exist and a small probe object
must be writable and deletable with the credentials given in ``storage_options`` or found by
the usual AWS mechanisms (environment variables, config files). Every temporary file goes under
one local folder, the ``temp_dir`` option (:func:`temp_folder`), and is removed on success and
on failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from daskod._exceptions import StoreError
from daskod.io._leftovers import owner_prefix, partial_path, remove_stale_partials, sweep_once
from daskod.options import default_temp_dir

__all__ = ["is_url", "local_path", "url_filesystem", "explain_location_error", "open_store",
           "remove_store", "sync_filesystem", "store_location", "file_stamp", "free_bytes",
           "folder_bytes", "ensure_free_space", "temp_parent", "temp_folder", "publish"]

log = logging.getLogger(__name__)

_PROBE_PREFIX = ".daskod-probe-"


def is_url(path: Any) -> bool:
    """True for an fsspec URL other than ``file://`` (``s3://bucket/key``, ``gs://...``)."""
    if not isinstance(path, str) or "://" not in path:
        return False
    return path.split("://", 1)[0].lower() not in ("file", "local")


def local_path(path: str | os.PathLike) -> str:
    """A local path from a path or a ``file://`` URL."""
    text = os.fspath(path)
    for scheme in ("file://", "local://"):
        if text.lower().startswith(scheme):
            return text[len(scheme):]
    return text


def _check_options(storage_options: Any) -> dict[str, Any]:
    if storage_options is None:
        return {}
    if not isinstance(storage_options, dict):
        msg = (f"storage_options must be a dict of fsspec file-system options, got "
               f"{type(storage_options).__name__}; e.g. {{'key': ..., 'secret': ...}}.")
        raise TypeError(msg)
    return dict(storage_options)


def explain_location_error(err: BaseException, url: str, what: str) -> str:
    """A message for a failure to reach ``url``, naming the likely cause and the fix."""
    name = type(err).__name__
    text = f"{name}: {err}"
    if "NoCredentials" in name or "Unable to locate credentials" in str(err):
        return (f"The {what} {url!r} needs credentials and none were found; pass "
                "storage_options={'key': ..., 'secret': ...} (daskod run: --storage-options) "
                "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (anon=True for public "
                "buckets).")
    if isinstance(err, FileNotFoundError) or "NoSuchBucket" in text \
            or "bucket does not exist" in text:
        return (f"The {what} {url!r} is not reachable: its bucket does not exist ({text}); "
                "create the bucket or fix the URL.")
    if isinstance(err, PermissionError) or "AccessDenied" in text or "InvalidAccessKey" in text \
            or "SignatureDoesNotMatch" in text or "Forbidden" in text:
        return (f"The {what} {url!r} refused a test write ({text}); check the credentials "
                "(storage_options or AWS_* variables) and that they may write there.")
    return f"Cannot write to the {what} {url!r} ({text}); check the URL and storage_options."


def url_filesystem(url: str, storage_options: dict[str, Any] | None = None, *,
                   what: str = "location") -> tuple[Any, str]:
    """The (synchronous) fsspec file system and path of ``url``.

    Raises
    ------
    StoreError
        The protocol needs a package that is not installed (``s3fs`` for ``s3://``), or the
        options are not accepted.
    """
    import fsspec

    options = _check_options(storage_options)
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as err:
        msg = (f"The {what} {url!r} needs an fsspec driver that is not installed ({err}); "
               "for s3:// run pip install 'daskod[s3]'.")
        raise StoreError(msg) from err
    except (TypeError, ValueError) as err:
        # Option names only: their values may be credentials.
        msg = (f"Cannot open the {what} {url!r} with the storage_options given (keys "
               f"{sorted(options)}): {err}.")
        raise StoreError(msg) from err


def _probe_local(path: str, what: str) -> None:
    probe = os.path.join(path, f"{_PROBE_PREFIX}{uuid.uuid4().hex}")
    try:
        with open(probe, "wb") as f:
            f.write(b"daskod")
        os.remove(probe)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(probe)
        msg = (f"The {what} {path!r} is not writable ({err.strerror or err}); choose another "
               "folder or fix its permissions.")
        raise StoreError(msg) from err


def _probe_url(fs: Any, path: str, url: str, what: str) -> None:
    probe = f"{path.rstrip('/')}/{_PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        fs.pipe_file(probe, b"daskod")
        fs.rm_file(probe)
    except Exception as err:  # any driver's error: network, credentials, bucket
        with contextlib.suppress(Exception):
            fs.rm_file(probe)
        raise StoreError(explain_location_error(err, url, what)) from err
    finally:
        with contextlib.suppress(Exception):
            fs.invalidate_cache()


def open_store(store: str | os.PathLike, *, storage_options: dict[str, Any] | None = None,
               what: str = "working store") -> Any:
    """Open (and check) a Zarr store location for writing; no data is written but a probe.

    Parameters
    ----------
    store : str, path-like or zarr Store
        A local folder (created if missing), a ``file://`` URL, or an fsspec URL such as
        ``s3://bucket/prefix``; a zarr Store object is returned unchanged.
    storage_options : dict, optional
        fsspec options for URLs (credentials, ``client_kwargs={'endpoint_url': ...}``, ...).
        Without them, s3fs uses the usual AWS environment variables and config files.
    what : str, optional
        How error messages name the location.

    Returns
    -------
    str or zarr.storage.FsspecStore
        The root to pass as zarr's ``store=``: the local folder, or a store for the URL.

    Raises
    ------
    StoreError
        The folder cannot be created or written; the bucket does not exist; credentials are
        missing or refused. Raised before anything but the probe object is written.
    """
    if not isinstance(store, str | os.PathLike):
        from zarr.abc.store import Store

        if isinstance(store, Store):  # already opened (e.g. by the caller's own check)
            return store
        msg = (f"store must be a folder, an fsspec URL or a zarr Store, got "
               f"{type(store).__name__}.")
        raise TypeError(msg)
    text = os.fspath(store)
    if not is_url(text):
        path = local_path(text)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as err:
            msg = (f"Cannot create the {what} {path!r} ({err.strerror or err}); choose another "
                   "folder.")
            raise StoreError(msg) from err
        _probe_local(path, what)
        return path
    options = _check_options(storage_options)
    fs, path = url_filesystem(text, options, what=what)
    _probe_url(fs, path, text, what)
    from zarr.storage import FsspecStore

    try:
        return FsspecStore.from_url(text, storage_options=options)
    except Exception as err:
        raise StoreError(explain_location_error(err, text, what)) from err


def store_location(root: Any) -> str:
    """A printable location of a store root: the folder, or ``protocol://path``."""
    if isinstance(root, str | os.PathLike):
        return os.fspath(root)
    fs = getattr(root, "fs", None)
    path = getattr(root, "path", "")
    if fs is not None:
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
        return f"{protocol}://{path}"
    return repr(root)


def remove_store(root: Any) -> None:
    """Delete a store (a local folder or everything under an object-store prefix).

    Errors are logged, not raised: this runs while cleaning up after success or failure.
    """
    if isinstance(root, str | os.PathLike):
        shutil.rmtree(os.fspath(root), ignore_errors=True)
        return
    fs, path = sync_filesystem(root), getattr(root, "path", None)
    if fs is None or not path:
        return
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
    except Exception as err:
        log.warning("Could not remove the store %s: %s", store_location(root), err)


def sync_filesystem(store: Any) -> Any:
    """A synchronous fsspec file system equal to the (asynchronous) one of a zarr
    ``FsspecStore`` (None for other stores), for listing and deleting."""
    fs = getattr(store, "fs", None)
    if fs is None:
        return None
    import fsspec

    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    return fsspec.filesystem(protocol, **{**fs.storage_options, "asynchronous": False})


def file_stamp(path: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """What changes when a file is replaced, read without its content: ``(size, mtime_ns)``
    of a local file, ``(size, ETag or last-modified)`` of an object; ``()`` when missing.

    For run fingerprints (a resumed run must notice an input that changed).
    """
    if not is_url(path):
        try:
            st = os.stat(local_path(path))
        except OSError:
            return ()
        return (st.st_size, st.st_mtime_ns)
    fs, key = url_filesystem(path, storage_options, what="input")
    fs.invalidate_cache(key)  # never a listing cached before the object changed
    try:
        info = fs.info(key)
    except FileNotFoundError:
        return ()
    stamp = info.get("ETag") or info.get("LastModified") or info.get("mtime") \
        or info.get("created")
    return (info.get("size"), str(stamp))


def free_bytes(path: str) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return int(shutil.disk_usage(probe).free)


def folder_bytes(path: str) -> int:
    """Bytes of the files under a local folder (0 when it does not exist)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def ensure_free_space(root: Any, nbytes: int, *, what: str) -> None:
    """Refuse to start when a local store cannot hold ``nbytes`` more (object stores pass).

    Parameters
    ----------
    root : str or zarr Store
        The store (or folder) about to be written.
    nbytes : int
        Bytes the run will write there; files the store already holds count as reusable
        (they are overwritten in place).
    what : str
        What will be written, for the message (e.g. ``"the working store"``).

    Raises
    ------
    StoreError
        With the bytes needed and free and the fix; attributes ``needed`` and ``free``.
    """
    if not isinstance(root, str | os.PathLike):
        return
    path = local_path(root)
    free = free_bytes(path)
    # Arrays a store already holds (a resumed run, or one it overwrites) are rewritten in
    # place: only the difference needs free space.
    nbytes = max(0, int(nbytes) - folder_bytes(path))
    if nbytes > free:
        msg = (f"Not enough free space for {what} in {path!r}: needs about {_gib(nbytes)} more "
               f"({nbytes} bytes), {_gib(free)} ({free} bytes) free; free some space, pass "
               "another store= (an object store URL needs no local space), or set "
               "daskod.set_options(temp_dir=...) to a larger disk.")
        raise StoreError(msg, needed=int(nbytes), free=int(free))
    log.debug("Free space in %s: %d bytes, %d needed for %s", path, free, nbytes, what)


def temp_parent() -> str:
    """The local folder that holds every temporary file (the ``temp_dir`` option).

    Raises
    ------
    StoreError
        When ``temp_dir`` is an object-store URL (temporary files need a local disk).
    """
    parent = default_temp_dir()
    if is_url(os.fspath(parent)):
        msg = (f"temp_dir must be a local folder, got {parent!r}; put the working store on "
               "object storage with store= instead.")
        raise StoreError(msg)
    return local_path(parent)


@contextlib.contextmanager
def temp_folder(prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new folder under :func:`temp_parent`, removed on failure, and on success unless
    ``keep`` (then the caller owns it).

    Its name carries this process's id and host (``<prefix><pid>@<host>-<random>``); the
    first call of a process removes the folders under the same parent whose process is gone
    (:mod:`daskod.io._leftovers`).
    """
    parent = temp_parent()
    try:
        os.makedirs(parent, exist_ok=True)
        sweep_once(parent)
        path = tempfile.mkdtemp(prefix=owner_prefix(prefix), dir=parent)
    except OSError as err:
        msg = (f"Cannot create a temporary folder under temp_dir={parent!r} "
               f"({err.strerror or err}); set daskod.set_options(temp_dir=...) to a writable "
               "folder.")
        raise StoreError(msg) from err
    log.debug("Temporary folder: %s", path)
    ok = False
    try:
        yield path
        ok = True
    finally:
        if not ok or not keep:
            shutil.rmtree(path, ignore_errors=True)


def publish(staged: list[str], targets: list[str], *,
            storage_options: dict[str, Any] | None = None) -> None:
    """Move finished local files to their final places, all or none.

    Each target appears complete or not at all: local targets are renamed into place (copied
    under a hidden partial name first when the temporary folder is on another disk; partial
    copies of a target left by a killed run are removed first); URL
    targets are uploaded as whole objects. If any fails, the targets already placed are
    removed again before the error propagates.
    """
    done: list[str] = []
    try:
        for src, dst in zip(staged, targets, strict=True):
            if is_url(dst):
                fs, path = url_filesystem(dst, storage_options, what="output")
                fs.put_file(src, path)
            else:
                remove_stale_partials(local_path(dst))
                _move_local(src, local_path(dst))
            done.append(dst)
    except BaseException:
        for dst in done:
            with contextlib.suppress(Exception):
                if is_url(dst):
                    fs, path = url_filesystem(dst, storage_options, what="output")
                    fs.rm_file(path)
                else:
                    os.remove(local_path(dst))
        raise


def _move_local(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        os.replace(src, dst)
        return
    except OSError as err:
        import errno

        if err.errno != errno.EXDEV:
            raise
    partial = partial_path(dst)
    try:
        shutil.copyfile(src, partial)
        os.replace(partial, dst)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
