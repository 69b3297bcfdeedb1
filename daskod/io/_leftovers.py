"""Temporary folders and partial files that name their owner, and removing those whose owner
is gone.

A killed run (SIGKILL, a lost node, a walltime limit) cannot clean up after itself. So every
temporary folder is named ``<prefix><pid>@<host>-<random>`` (``daskod-work-12345@node7-x1y2z3``)
and every partial product ``.<name>.partial-<pid>@<host>-<hex>``: a later run (when it creates
its first temporary folder), :func:`clean_leftovers` and ``daskod clean`` remove those whose
process is gone. A folder is never removed while its process lives:

- on this host, a process id that exists and started before the folder was last modified is
  the owner (a process that started later only reuses the id);
- on another host (a shared ``temp_dir``) nothing can be checked: such folders are kept.

Folders named before owners were recorded (``daskod-work-<hex>-<random>``) carry no owner;
they are removed only when older than ``older_than``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass

__all__ = ["Owner", "host_tag", "owner_prefix", "parse_owner", "owner_alive", "partial_path",
           "remove_stale_partials", "sweep_once", "forget_sweeps", "find_leftovers",
           "clean_leftovers"]

log = logging.getLogger(__name__)

PREFIXES = ("daskod-work-", "daskod-outputs-", "daskod-product-", "daskod-demo-")
_OWNER = r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9.\-]*)"
_FOLDER = re.compile(rf"^(?P<prefix>daskod-(?:work|outputs|product|demo)-){_OWNER}-[A-Za-z0-9_]+$")
_LEGACY = re.compile(r"^daskod-(?:(?:work|outputs|product)-[0-9a-f]{8}|demo)-[A-Za-z0-9_]+$")
_PARTIAL = re.compile(rf"^\.(?P<base>.+)\.partial-(?:{_OWNER}-)?[0-9a-f]+$")
_SWEPT: set[str] = set()
#: Seconds of clock slack between a process's start time and a folder's modification time.
_SLACK = 1.0


@dataclass(frozen=True)
class Owner:
    """The process that created a temporary folder or a partial file."""

    pid: int
    host: str


def host_tag(host: str | None = None) -> str:
    """This host's name (or ``host``) as it appears in names: letters, digits, ``.`` and
    ``-``, at most 40 characters."""
    name = socket.gethostname() if host is None else host
    return re.sub(r"[^A-Za-z0-9.\-]", "-", name)[:40]


def owner_prefix(prefix: str) -> str:
    """``<prefix><pid>@<host>-``: the start of the name of a folder this process owns."""
    return f"{prefix}{os.getpid()}@{host_tag()}-"


def parse_owner(name: str) -> Owner | None:
    """The owner recorded in a temporary folder's or partial file's name (None if none)."""
    m = _FOLDER.match(name) or _PARTIAL.match(name)
    if m is None or m.group("pid") is None:
        return None
    return Owner(pid=int(m.group("pid")), host=m.group("host"))


def owner_alive(owner: Owner, path: str) -> bool:
    """Whether the owner of ``path`` may still be running (True when it cannot be told)."""
    import psutil

    if owner.host != host_tag():
        return True
    try:
        started = psutil.Process(owner.pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, OSError):
        return True
    try:
        touched = os.stat(path).st_mtime
    except OSError:
        return True  # gone already, or not ours to judge
    return started <= touched + _SLACK


def partial_path(dst: str) -> str:
    """Where a copy to ``dst`` is written before its rename: a hidden name beside it."""
    folder, base = os.path.split(os.path.abspath(dst))
    return os.path.join(folder, f".{base}.partial-{os.getpid()}@{host_tag()}-"
                                f"{uuid.uuid4().hex[:8]}")


def remove_stale_partials(dst: str) -> list[str]:
    """Remove the partial copies of ``dst`` left by processes that are gone (and those that
    name no owner). Returns the paths removed."""
    folder, base = os.path.split(os.path.abspath(dst))
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PARTIAL.match(entry.name)
        if m is None or m.group("base") != base or not entry.is_file(follow_symlinks=False):
            continue
        owner = parse_owner(entry.name)
        if owner is not None and owner_alive(owner, entry.path):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(entry.path)
            removed.append(entry.path)
    if removed:
        log.info("Removed %d partial file(s) of %s left by an earlier run", len(removed), dst)
    return removed


def find_leftovers(parent: str, *, older_than: float | None = None,
                   folders: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Temporary folders under ``parent`` (and partial files in ``folders``) whose process
    is gone; those that name no owner when older than ``older_than`` seconds."""
    found = []
    now = time.time()
    places = [(parent, True)] + [(f, False) for f in folders]
    for place, temp in places:
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue
        for entry in entries:
            if temp and not entry.is_dir(follow_symlinks=False):
                continue
            if not temp and (not entry.is_file(follow_symlinks=False)
                             or _PARTIAL.match(entry.name) is None):
                continue
            if temp and _FOLDER.match(entry.name) is None \
                    and _LEGACY.match(entry.name) is None:
                continue
            owner = parse_owner(entry.name)
            if owner is not None:
                if not owner_alive(owner, entry.path):
                    found.append(entry.path)
            elif older_than is not None:
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                        found.append(entry.path)
    return sorted(found)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def sweep_once(parent: str) -> None:
    """Remove leftovers under ``parent`` the first time this process uses it (errors are
    logged, never raised: a sweep must not stop a run)."""
    key = os.path.abspath(parent)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    try:
        found = find_leftovers(key)
        for path in found:
            _remove(path)
    except Exception as err:  # an unreadable entry must not stop the run
        log.debug("Sweeping %s for leftovers failed: %s", key, err)
        return
    if found:
        log.info("Removed %d temporary folder(s) left by processes that are gone: %s",
                 len(found), ", ".join(os.path.basename(p) for p in found))


def forget_sweeps() -> None:
    """Let the next temporary folder sweep its parent again (tests, long sessions)."""
    _SWEPT.clear()


def clean_leftovers(*, temp_dir: str | os.PathLike | None = None,
                    folders: list[str | os.PathLike] | tuple = (),
                    older_than: float | None = None, dry_run: bool = False) -> list[str]:
    """Remove what killed runs left behind: temporary folders and partial products.

    Parameters
    ----------
    temp_dir : path, optional
        The folder to clean (default: the ``temp_dir`` option, see
        :func:`daskod.set_options`).
    folders : list of path, optional
        Output folders whose partial products (``.<name>.partial-*``) are removed too.
    older_than : float, optional
        Seconds; also remove folders and partial files that name no owner (made by daskod
        versions that did not record it) when not modified for this long.
    dry_run : bool, optional
        Only list what would be removed.

    Returns
    -------
    list of str
        The paths removed (or that would be).

    Notes
    -----
    A temporary folder is removed when the process named in it is gone from this host;
    folders of other hosts (a shared ``temp_dir``) and of running processes are kept.
    ``daskod clean`` on the command line calls this function.
    """
    from daskod.io._location import local_path, temp_parent

    parent = local_path(os.fspath(temp_dir)) if temp_dir is not None else temp_parent()
    found = find_leftovers(parent, older_than=older_than,
                           folders=tuple(os.fspath(f) for f in folders))
    if not dry_run:
        for path in found:
            _remove(path)
            log.info("Removed %s", path)
    return found
