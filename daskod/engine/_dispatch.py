"""The one dispatcher: scheduler choice, worker count from the memory budget, working stores.

Every phase of every mode computes through :func:`compute` so that one place decides how
work runs: ``synchronous``, ``threads``, ``processes`` or a ``distributed`` cluster (an active
client, a ``Client`` object, or a ``tcp://`` address).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dask

__all__ = ["Scheduler", "PhaseRunner", "resolve_scheduler", "compute", "working_directory"]

log = logging.getLogger(__name__)

_LOCAL = {"synchronous", "sync", "single-threaded", "threads", "threading", "processes",
          "multiprocessing"}


@dataclass
class Scheduler:
    """How to run a graph: a dask scheduler name or a distributed client, and its width."""

    name: str
    num_workers: int
    client: Any = None
    pool: Any = None
    owns_client: bool = False
    #: Lower concurrency for named phases on local schedulers (set by the memory budget).
    phase_workers: dict[str, int] = field(default_factory=dict)

    @property
    def is_distributed(self) -> bool:
        return self.client is not None

    @property
    def shares_memory(self) -> bool:
        """True when tasks run in this process (numpy inputs need no copy)."""
        return self.client is None and self.name in {"synchronous", "threads"}

    def compute_kwargs(self, phase: str | None = None) -> dict[str, Any]:
        if self.client is not None:
            return {"scheduler": self.client}
        if self.name == "synchronous":
            return {"scheduler": "synchronous"}
        width = min(self.num_workers, self.phase_workers.get(phase or "", self.num_workers))
        if self.pool is not None:
            pool = self.pool if width >= self.num_workers else _NarrowPool(self.pool, width)
            return {"scheduler": self.name, "pool": pool}
        return {"scheduler": self.name, "num_workers": width}

    def close(self) -> None:
        """Close the client daskod opened from an address (for runs that end before
        :meth:`session`, e.g. a refused budget); anything else is left alone."""
        if self.owns_client and self.client is not None:
            self.client.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[Scheduler]:
        """Resources held for one run: a worker pool for ``processes`` (workers are forked
        from a ``forkserver`` that imported the task modules once, so a run pays interpreter
        start-up once, not per phase and worker), or the client opened from an address."""
        if self.owns_client:
            # A client daskod opened from an address is closed when the run ends.
            try:
                yield self
            finally:
                self.client.close()
            return
        if self.name != "processes" or self.pool is not None:
            yield self
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["daskod._worker_imports"])
        with ProcessPoolExecutor(max_workers=self.num_workers, mp_context=ctx) as pool:
            self.pool = pool
            try:
                yield self
            finally:
                self.pool = None


def _active_client() -> Any:
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


def resolve_scheduler(scheduler: Any = None, *, num_workers: int | None = None) -> Scheduler:
    """Turn the user's ``scheduler=`` into a :class:`Scheduler`.

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        None: an active distributed client if there is one, else ``"threads"``.
        ``"synchronous"``, ``"threads"``, ``"processes"``, a ``tcp://host:port`` address, or a
        ``distributed.Client``.
    num_workers : int, optional
        Worker threads/processes for local schedulers (default: the CPU count).
    """
    workers = max(1, int(num_workers or os.cpu_count() or 1))
    if scheduler is None:
        client = _active_client()
        if client is not None:
            return Scheduler("distributed", _client_width(client), client)
        return Scheduler("threads", workers)
    if isinstance(scheduler, str):
        name = scheduler.strip().lower()
        if name in {"sync", "single-threaded", "synchronous"}:
            return Scheduler("synchronous", 1)
        if name in {"threads", "threading"}:
            return Scheduler("threads", workers)
        if name in {"processes", "multiprocessing"}:
            return Scheduler("processes", workers)
        if "://" in name or ":" in name:
            from distributed import Client

            _check_reachable(scheduler)
            try:
                client = Client(scheduler, timeout="10s", set_as_default=False)
            except OSError as err:
                msg = (f"Could not reach the Dask scheduler at {scheduler!r} ({err}); start "
                       "it or pass scheduler='threads' to run locally.")
                raise ConnectionError(msg) from err
            return Scheduler("distributed", _client_width(client), client, owns_client=True)
        msg = (f"scheduler must be 'synchronous', 'threads', 'processes', a 'tcp://' address "
               f"or a distributed.Client, got {scheduler!r}.")
        raise ValueError(msg)
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler_info"):
        return Scheduler("distributed", _client_width(scheduler), scheduler)
    msg = f"scheduler must be a string or a distributed.Client, got {type(scheduler).__name__}."
    raise ValueError(msg)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once with ConnectionError when nothing listens at a TCP scheduler address
    (a refused connection would otherwise be retried until the client's timeout)."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, loc = parse_address(address)
        if scheme not in {"tcp", "tls"}:
            return
        host, port = parse_host_port(loc)
    except ValueError as err:
        msg = (f"scheduler={address!r} is not a valid address ({err}); give "
               "'tcp://host:port'.")
        raise ValueError(msg) from err
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        msg = (f"Could not reach the Dask scheduler at {address!r} ({err}); start it or pass "
               "scheduler='threads' to run locally.")
        raise ConnectionError(msg) from err


def _client_width(client: Any) -> int:
    try:
        info = client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))
    except Exception:
        return 1


class _NarrowPool:
    """A process pool seen by dask as having fewer workers (dask keeps at most
    ``_max_workers`` tasks in flight), so one phase runs fewer tasks at once."""

    def __init__(self, pool: Any, width: int) -> None:
        self._pool = pool
        self._max_workers = max(1, width)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(*args, **kwargs)


def compute(*collections: Any, scheduler: Scheduler, phase: str | None = None
            ) -> tuple[Any, ...]:
    """``dask.compute`` on the chosen scheduler (``phase`` may lower local concurrency)."""
    return dask.compute(*collections, **scheduler.compute_kwargs(phase))


class PhaseRunner:
    """Runs each phase at once (eager: bounded memory, one log line per phase) or hands its
    Delayed objects on unchanged (lazy), so one graph-building code path serves both."""

    def __init__(self, scheduler: Scheduler, eager: bool, timings: dict[str, float]) -> None:
        self.scheduler = scheduler
        self.eager = eager
        self.timings = timings

    def run(self, name: str, tasks: list[Any]) -> list[Any]:
        if not self.eager or not tasks:
            return tasks
        import time

        start = time.perf_counter()
        results = list(compute(*tasks, scheduler=self.scheduler, phase=name))
        self.timings[name] = time.perf_counter() - start
        log.info("Phase %s: %d tasks in %.2f s", name, len(tasks), self.timings[name])
        return results


@contextlib.contextmanager
def working_directory(store: str | os.PathLike | None, *, keep: bool,
                      storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """Yield the root of the Zarr working store, creating a temporary one if needed.

    The root is what zarr accepts as ``store=``: a local folder (``str``) or, for an fsspec URL
    (``s3://bucket/prefix``), a :class:`zarr.storage.FsspecStore` opened with
    ``storage_options``. A store given by the user is checked (created, a probe object written
    and deleted) before any work, and never removed. A temporary store (``store=None``) lives
    under the ``temp_dir`` option and is removed on failure, and on success unless ``keep``.

    Raises
    ------
    StoreError
        The store cannot be created or written, its bucket does not exist, or credentials are
        missing or refused.
    """
    from daskod.io._location import open_store, store_location, temp_folder

    if store is not None:
        root = open_store(store, storage_options=storage_options)
        log.info("Working store: %s", store_location(root))
        yield root
        return
    with temp_folder("daskod-work-", keep=keep) as path:
        log.info("Working store: %s", path)
        yield path
