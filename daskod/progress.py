"""Labelled progress per phase: a terminal line on stderr, a notebook widget, or the
distributed progress bar with the dashboard link.

A run computes one Dask graph that holds every phase; each task's key names its phase by its
prefix (a key's name is ``key[0]`` for a tuple key, else the key; the prefix is that name up to
its trailing ``-<hex token>``). :class:`PhaseProgress` takes a mapping
``{key-name prefix: phase label}`` and counts finished tasks per phase; prefixes it does not
know are counted as ``"other"``.

- Local schedulers (synchronous, threads, processes): ``with PhaseProgress(phases):
  dask.compute(...)`` (a public :class:`dask.callbacks.Callback`). In a terminal it redraws
  one line on **stderr**; when stderr is not a terminal (a log file, a pipe) it prints
  nothing; in a Jupyter kernel with ipywidgets it shows one bar per phase.
- A distributed client: :func:`track_futures` shows distributed's own progress bar (one bar
  per phase in a notebook, grouped with the same mapping) and the dashboard link.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from dask.callbacks import Callback

__all__ = ["PhaseProgress", "PhaseNamer", "key_prefix", "track_futures", "in_notebook",
           "DEFAULT_PHASES"]

log = logging.getLogger(__name__)

OTHER = "other"
#: Key-name prefixes of daskod's tasks (the phase names the modes give them; the IFU ones
#: carry the detector after the prefix) and the phase each belongs to. A prefix also labels
#: longer names that start with it.
DEFAULT_PHASES = {
    "src": "ingest", "check": "checks", "usable": "results", "drizzle": "resample",
    "cube": "single cubes",
    "threshold": "threshold", "median": "median", "difference": "differences",
    "floor": "normalise", "normalise": "normalise", "percentile": "normalise",
    "flag": "blot + flag", "medianframe": "results", "dq": "results", "count": "results",
    "minarr": "results", "minnorm": "results", "diffarr": "results", "normarr": "results",
    "nfloor": "results", "pct": "results",
}
_TOKEN = re.compile(r"-[0-9a-f]{6,}$")


def key_prefix(key: Any) -> str:
    """The name of a Dask key without its trailing ``-<hex token>`` parts.

    ``("drizzle-4f3a9c...", 0, 1)`` -> ``"drizzle"``; ``"median-tile-8be1...-77ac..."`` ->
    ``"median-tile"``; a name without a token is returned whole.
    """
    name = key[0] if isinstance(key, tuple) and key else key
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    name = str(name)
    while True:
        stripped = _TOKEN.sub("", name)
        if stripped == name or not stripped:
            return name
        name = stripped


class PhaseNamer:
    """Maps a Dask key to its phase label (picklable: distributed runs it on the scheduler).

    A key's prefix is looked up as given; failing that, the longest known prefix it starts
    with (``"drizzle"`` also labels ``"drizzle-tile"``); failing that, ``"other"``.
    """

    def __init__(self, phases: Mapping[str, str] | None = None) -> None:
        self.phases = dict(phases or {})
        self._longest_first = sorted(self.phases, key=len, reverse=True)

    def __call__(self, key: Any) -> str:
        prefix = key_prefix(key)
        label = self.phases.get(prefix)
        if label is not None:
            return label
        for known in self._longest_first:
            if prefix.startswith(known):
                return self.phases[known]
        return OTHER

    def labels(self) -> list[str]:
        """Phase labels in the mapping's order (each once)."""
        return list(dict.fromkeys(self.phases.values()))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached)."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    shell = ipython_module.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _seconds(t: float) -> str:
    return f"{t:.1f} s" if t < 60 else f"{int(t // 60)} min {t % 60:04.1f} s"


class _Phase:
    __slots__ = ("done", "first", "label", "last", "total")

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0
        self.done = 0
        self.first: float | None = None
        self.last: float | None = None

    def elapsed(self, now: float) -> float:
        if self.first is None:
            return 0.0
        end = self.last if self.done >= self.total and self.last is not None else now
        return end - self.first


class _TextDisplay:
    """One line, redrawn in place on a terminal stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False

    def draw(self, phases: list[_Phase], elapsed: float, *, final: bool = False) -> None:
        now = time.perf_counter()
        parts = []
        for p in phases:
            if final:
                parts.append(f"{p.label} {p.done}/{p.total} ({_seconds(p.elapsed(now))})")
            elif p.done >= p.total:
                parts.append(f"{p.label} done")
            else:
                parts.append(f"{p.label} {p.done}/{p.total}")
        line = " | ".join(parts) + f" | {_seconds(elapsed)}"
        if not final:  # one redrawn line must not wrap
            width = shutil.get_terminal_size((100, 24)).columns - 1
            if len(line) > width:
                line = "..." + line[len(line) - width + 3:]
        with contextlib.suppress(ValueError, OSError):
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
            self.stream.flush()
        self.drawn = True


class _WidgetDisplay:
    """One ipywidgets bar per phase in a notebook."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[Any, Any]] = {}
        self.box: Any = None
        self.drawn = False

    def draw(self, phases: list[_Phase], elapsed: float, *, final: bool = False) -> None:
        import ipywidgets as widgets

        if self.box is None:
            from IPython.display import display

            self.box = widgets.VBox()
            display(self.box)
        now = time.perf_counter()
        for p in phases:
            if p.label not in self.rows:
                bar = widgets.IntProgress(min=0, max=max(p.total, 1),
                                          description=p.label[:20])
                text = widgets.Label()
                self.rows[p.label] = (bar, text)
                self.box.children = (*self.box.children, widgets.HBox([bar, text]))
            bar, text = self.rows[p.label]
            bar.max = max(p.total, 1)
            bar.value = p.done
            bar.bar_style = "success" if p.done >= p.total and p.total else ""
            text.value = f"{p.done}/{p.total} tasks, {_seconds(p.elapsed(now))}"
        self.drawn = True


class PhaseProgress(Callback):
    """Per-phase progress of local Dask computes (a :class:`dask.callbacks.Callback`).

    Parameters
    ----------
    phases : mapping of str to str, optional
        ``{key-name prefix: phase label}``; tasks of other prefixes count as ``"other"``.
    display : {"auto", "text", "widget", "none"}, optional
        ``"auto"``: a widget in a Jupyter kernel with ipywidgets, else a text line when
        ``stream`` is a terminal, else nothing.
    stream : file, optional
        Where the text line goes (default ``sys.stderr``).
    minimum : float, optional
        Seconds before anything is shown (short computes stay silent).
    dt : float, optional
        Seconds between redraws.

    Examples
    --------
    >>> with PhaseProgress({"drizzle": "resample", "median": "median"}):  # doctest: +SKIP
    ...     dask.compute(*arrays)
    resample 40/40 (2.1 s) | median 16/16 (0.4 s) | other 3/3 (0.0 s) | 2.6 s
    """

    def __init__(self, phases: Mapping[str, str] | None = None, *, display: str = "auto",
                 stream: TextIO | None = None, minimum: float = 1.0, dt: float = 0.2) -> None:
        super().__init__()
        if display not in ("auto", "text", "widget", "none"):
            msg = f"display must be 'auto', 'text', 'widget' or 'none', got {display!r}."
            raise ValueError(msg)
        self.namer = PhaseNamer(phases)
        self.stream = sys.stderr if stream is None else stream
        self.minimum = float(minimum)
        self.dt = float(dt)
        self.display = self._choose(display)
        self.phases: dict[str, _Phase] = {label: _Phase(label) for label in self.namer.labels()}
        self._lock = threading.Lock()
        self._start_time: float | None = None
        self._running = 0
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()

    def _choose(self, display: str) -> _TextDisplay | _WidgetDisplay | None:
        if display == "auto":
            if in_notebook() and _widgets_available():
                display = "widget"
            else:
                isatty = getattr(self.stream, "isatty", None)
                display = "text" if isatty is not None and isatty() else "none"
        if display == "widget":
            return _WidgetDisplay()
        if display == "text":
            return _TextDisplay(self.stream)
        return None

    # -- dask callback hooks (public Callback API)
    def _start_state(self, dsk: Mapping, state: dict) -> None:
        cached = state.get("cache", {})
        with self._lock:
            for key in dsk:
                if key in cached:
                    continue
                self._phase(self.namer(key)).total += 1
            if self._start_time is None:
                self._start_time = time.perf_counter()
            self._running += 1
        if self.display is not None and self._timer is None:
            self._stop.clear()
            self._timer = threading.Thread(target=self._tick, daemon=True,
                                           name="daskod-progress")
            self._timer.start()

    def _pretask(self, key: Any, dsk: Mapping, state: dict) -> None:
        phase = self._phase(self.namer(key))
        if phase.first is None:
            phase.first = time.perf_counter()

    def _posttask(self, key: Any, result: Any, dsk: Mapping, state: dict, worker_id: Any
                  ) -> None:
        with self._lock:
            phase = self._phase(self.namer(key))
            phase.done += 1
            phase.last = time.perf_counter()

    def _finish(self, dsk: Mapping, state: dict, errored: bool) -> None:
        with self._lock:
            self._running -= 1

    # -- context manager: the final line when the block ends
    def __exit__(self, *args: Any) -> None:
        super().__exit__(*args)
        self.close()

    def close(self) -> None:
        """Stop redrawing and draw the final state (if anything was shown)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        if self.display is not None and self._start_time is not None:
            elapsed = time.perf_counter() - self._start_time
            if self.display.drawn or elapsed >= self.minimum:
                self.display.draw(self.snapshot(), elapsed, final=True)
        log.debug("Progress: %s", {p.label: (p.done, p.total) for p in self.snapshot()})

    # -- state
    def _phase(self, label: str) -> _Phase:
        phase = self.phases.get(label)
        if phase is None:
            phase = self.phases[label] = _Phase(label)
        return phase

    def snapshot(self) -> list[_Phase]:
        """Phases with at least one task, in the mapping's order (``"other"`` last)."""
        with self._lock:
            items = [p for p in self.phases.values() if p.total]
        return sorted(items, key=lambda p: p.label == OTHER)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{phase label: (tasks done, tasks total)}`` so far."""
        return {p.label: (p.done, p.total) for p in self.snapshot()}

    def _tick(self) -> None:
        while not self._stop.wait(self.dt):
            if self._start_time is None or self.display is None:
                continue
            elapsed = time.perf_counter() - self._start_time
            if elapsed >= self.minimum:
                self.display.draw(self.snapshot(), elapsed)


def track_futures(futures: Any, *, client: Any, phases: Mapping[str, str] | None = None,
                  stream: TextIO | None = None) -> Any:
    """Show the distributed progress of ``futures`` and the dashboard link.

    In a Jupyter kernel: distributed's widget with one bar per phase (grouped with
    :class:`PhaseNamer`), returned at once. In a terminal (``stream``, default stderr, is a
    tty): the dashboard link and distributed's text bar, drawn on ``stream``; this blocks
    until the futures finish. Otherwise only a log line with the dashboard link.

    Parameters
    ----------
    futures : list of distributed.Future or persisted collections
        What the run waits for (``client.compute(...)`` of the graph).
    client : distributed.Client
        The client computing them.
    phases : mapping of str to str, optional
        ``{key-name prefix: phase label}``, as for :class:`PhaseProgress`.
    stream : file, optional
        Terminal stream (default ``sys.stderr``).

    Returns
    -------
    The widget in a notebook, else None.
    """
    from distributed import progress

    stream = sys.stderr if stream is None else stream
    link = getattr(client, "dashboard_link", None)
    namer = PhaseNamer(phases)
    if in_notebook():
        if link:
            from IPython.display import HTML, display

            display(HTML(f'Dask dashboard: <a href="{html.escape(link)}" target="_blank">'
                         f"{html.escape(link)}</a>"))
        return progress(futures, notebook=True, multi=True, group_by=namer)
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        log.info("Computing on %s; dashboard: %s", client, link)
        return None
    if link:
        stream.write(f"Dask dashboard: {link}\n")
        stream.flush()
    with contextlib.redirect_stdout(stream):  # distributed's text bar writes to stdout
        progress(futures, notebook=False)
    return None
