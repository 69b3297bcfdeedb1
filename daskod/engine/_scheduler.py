"""Which scheduler runs the graph, and how wide.

``scheduler=`` when given (``"synchronous"``, ``"threads"``, ``"processes"``, a
``tcp://host:port`` address or a ``distributed.Client``); otherwise the active distributed
client; otherwise the scheduler set with ``dask.config.set(scheduler=...)`` (how notebook users
debug); otherwise daskod's default: a pool of processes for imaging with resampling on
inputs read in place (the drizzle C code holds the GIL) when the memory budget affords two
worker processes, else threads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Scheduler", "resolve_scheduler", "SCHEDULER_NAMES"]

_ALIASES = {"sync": "synchronous", "single-threaded": "synchronous",
            "synchronous": "synchronous", "threads": "threads", "threading": "threads",
            "processes": "processes", "multiprocessing": "processes"}
SCHEDULER_NAMES = ("synchronous", "threads", "processes")


@dataclass
class Scheduler:
    """A resolved scheduler: a local kind (``name``, ``num_workers``) or a client."""

    name: str
    num_workers: int
    client: Any = None
    owns_client: bool = False
    pool: Any = None
    #: Chosen by daskod (no ``scheduler=``, no client, nothing in ``dask.config``).
    by_default: bool = False

    @property
    def shares_memory(self) -> bool:
        """Tasks run in this process (numpy inputs are read in place)."""
        return self.client is None and self.name in ("synchronous", "threads")

    def compute_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``dask.compute`` for this scheduler.

        Local schedulers are given as dask's own get functions rather than by name: dask
        resolves a name by first importing ``distributed`` to look for an active client
        (~0.3 s of a short run), which daskod has already done (:func:`resolve_scheduler`).
        """
        import dask

        if self.client is not None:
            return {"scheduler": self.client}
        if self.name == "synchronous":
            import dask.local

            return {"scheduler": dask.local.get_sync}
        if self.name == "threads":
            import dask.threaded

            get: Any = dask.threaded.get
        else:
            import dask.multiprocessing

            get = dask.multiprocessing.get
        kwargs: dict[str, Any] = {"scheduler": get}
        if self.name == "processes" and dask.config.get("chunksize", None) is None:
            # dask batches a process pool's ready tasks six at a time unless told otherwise,
            # so when a phase's few tasks become ready together (the median tiles after the
            # last weight threshold) one worker runs them all while the others wait.
            # Submitted one by one, they spread over the workers: 8 x 2048^2 files, 8 pairs,
            # median 8.63 -> 8.21 s (7 of 8 faster). A "chunksize" the user set is kept.
            kwargs["chunksize"] = 1
        if self.pool is not None:
            return {**kwargs, "pool": self.pool}
        return {**kwargs, "num_workers": self.num_workers}

    def close(self) -> None:
        """Close a client daskod opened from an address."""
        if self.owns_client and self.client is not None:
            self.client.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[Scheduler]:
        """Resources for one run: a pool of threads, or of processes forked from a server that
        imported the task modules once; leaving waits for every task still running (a failed
        run then removes its temporary files after the last write), and closes a client
        opened from an address."""
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

        try:
            if self.pool is not None or self.name not in ("threads", "processes"):
                yield self
                return
            if self.name == "threads":
                pool: Any = ThreadPoolExecutor(max_workers=self.num_workers)
            else:
                ctx = _worker_server()
                # The forkserver keeps the environment of the moment it started; workers take
                # this run's (credentials, endpoints and settings set since then).
                pool = ProcessPoolExecutor(max_workers=self.num_workers, mp_context=ctx,
                                           initializer=_adopt_environment,
                                           initargs=(dict(os.environ),))
            with pool:
                self.pool = pool
                try:
                    yield self
                finally:
                    self.pool = None
        finally:
            self.close()

    def warm_up(self, *, writes_products: bool = False) -> None:
        """Start what the workers of a ``processes`` scheduler are forked from now, so that
        its imports (~2 s) run while this process still builds the run (nothing for other
        schedulers). ``writes_products``: the workers will write JWST products, so the
        server imports the product writer's modules too. The server lives as long as this
        process: what the first start imports is what every later run's workers get."""
        if self.name == "processes" and self.pool is None:
            import multiprocessing.forkserver

            _worker_server(writes_products=writes_products)
            multiprocessing.forkserver.ensure_running()


def _worker_server(*, writes_products: bool = False) -> Any:
    """The multiprocessing context of the ``processes`` scheduler: workers forked from a
    server that imported the task modules once (and the product writer's, when asked
    before it starts; it is started once per process)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["daskod._worker_imports_products" if writes_products
                                else "daskod._worker_imports", "daskod._worker_memory",
                                "daskod._worker_gc"])
    return ctx


def _adopt_environment(environ: dict[str, str]) -> None:
    """Give a worker process the parent's environment as it is when the pool starts."""
    os.environ.clear()
    os.environ.update(environ)


def _active_client() -> Any:
    if "distributed" not in sys.modules:  # no client without it (and its import costs ~0.8 s)
        return None
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


def _client_width(client: Any) -> int:
    info = client.scheduler_info()
    return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))


def _connect(address: str) -> Any:
    from distributed import Client
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, loc = parse_address(address)
        host, port = parse_host_port(loc) if scheme in ("tcp", "tls") else (None, None)
    except ValueError as err:
        msg = f"scheduler={address!r} is not a valid address ({err}); give 'tcp://host:port'."
        raise ValueError(msg) from err
    try:
        if host is not None:  # fail at once instead of retrying until the client's timeout
            socket.create_connection((host, port), timeout=10).close()
        return Client(address, timeout="10s", set_as_default=False)
    except OSError as err:
        msg = (f"Could not reach the Dask scheduler at {address!r} ({err}); start it or pass "
               "scheduler='threads' to run locally.")
        raise ConnectionError(msg) from err


def resolve_scheduler(scheduler: Any = None, *, num_workers: int | None = None) -> Scheduler:
    """Turn ``scheduler=`` (or the environment, when None) into a :class:`Scheduler`.

    Raises
    ------
    ValueError
        An unknown scheduler name or a malformed address.
    ConnectionError
        Nothing listens at a ``tcp://`` address.
    """
    workers = max(1, int(num_workers or os.cpu_count() or 1))
    if scheduler is None:
        client = _active_client()
        if client is not None:
            return Scheduler("distributed", _client_width(client), client)
        import dask

        configured = dask.config.get("scheduler", None)
        if configured is None:
            return Scheduler("threads", workers, by_default=True)
        scheduler = configured if isinstance(configured, str) else "threads"
    if isinstance(scheduler, str):
        name = scheduler.strip().lower()
        if name in _ALIASES:
            kind = _ALIASES[name]
            return Scheduler(kind, 1 if kind == "synchronous" else workers)
        if "://" in name or ":" in name:
            client = _connect(scheduler)
            return Scheduler("distributed", _client_width(client), client, owns_client=True)
        msg = (f"scheduler must be 'synchronous', 'threads', 'processes', a 'tcp://' address "
               f"or a distributed.Client, got {scheduler!r}.")
        raise ValueError(msg)
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler_info"):
        return Scheduler("distributed", _client_width(scheduler), scheduler)
    msg = f"scheduler must be a string or a distributed.Client, got {type(scheduler).__name__}."
    raise ValueError(msg)
