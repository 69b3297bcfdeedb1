"""What the ``daskod`` command shows: log levels, a log file, warnings as one line each.

By default the console shows warnings and errors only, one line each, as
``daskod run: warning: <message>`` (no source paths, no repeated text: a message that a Python
warning and a log record both carry is shown once). ``-v`` adds daskod's INFO log (phases,
budget, versions; not the per-exposure results, which the command prints itself).
``--log-level`` sets the console level; ``--log-file`` receives the full log (INFO unless
``--log-level`` says otherwise) with timestamps; ``--quiet`` leaves errors only.
:func:`console` undoes everything it set when the command ends, so ``main()`` can be called
more than once in one process (tests, notebooks).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["console", "LEVELS"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TIMESTAMPED = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class _OneLine(logging.Formatter):
    """Warnings and errors as ``daskod <command>: warning: <first line>``; lower levels with
    a timestamp and the logger's name."""

    def __init__(self, command: str) -> None:
        super().__init__(_TIMESTAMPED)
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:  # one line: no traceback, no source path
            text = record.getMessage().strip().splitlines()
            return f"daskod {self.command}: {record.levelname.lower()}: {text[0] if text else ''}"
        return super().format(record)


class _Once(logging.Filter):
    """Drop a warning whose text was already shown (or contains, or is contained in, one
    that was): daskod often both warns and logs the same sentence."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:  # errors always show
            return True
        text = record.getMessage().strip()
        if any(text in old or old in text for old in self.shown):
            return False
        self.shown.append(text)
        return True


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command: into the log, without the source path."""
    from daskod._exceptions import DaskodWarning

    text = str(message)
    if not issubclass(category, DaskodWarning):
        text = f"{category.__name__}: {text}"
    logging.getLogger("daskod.warnings").warning("%s", text)


@contextlib.contextmanager
def console(command: str, *, verbose: bool = False, quiet: bool = False,
            log_level: str | None = None, log_file: str | None = None) -> Iterator[None]:
    """Set up logging and warning display for one command, and undo it afterwards."""
    from daskod._exceptions import DaskodWarning

    if log_level is not None:
        level = getattr(logging, log_level)
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.INFO if verbose else logging.WARNING
    once = _Once()
    handlers: list[logging.Handler] = []
    screen = logging.StreamHandler()
    screen.setLevel(level)
    screen.setFormatter(_OneLine(command) if level >= logging.WARNING
                        else logging.Formatter(_TIMESTAMPED))
    screen.addFilter(once)
    # The command prints one line per result itself; the log's copies go to the file only.
    screen.addFilter(lambda r: not (r.name == "daskod._result" and r.levelno < logging.WARNING))
    handlers.append(screen)
    file_level = level if log_level is not None else min(level, logging.INFO)
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(file_level)
        to_file.setFormatter(logging.Formatter(_TIMESTAMPED))
        handlers.append(to_file)
    root, ours = logging.getLogger(), logging.getLogger("daskod")
    saved = (root.level, ours.level)
    root.setLevel(max(logging.WARNING, level) if not log_file else logging.WARNING)
    ours.setLevel(min(h.level for h in handlers))
    for handler in handlers:
        root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            # daskod's own warnings show once per message; other filters stay as they are
            # (Python's defaults hide third-party deprecation warnings).
            warnings.simplefilter("default", DaskodWarning)
            warnings.showwarning = _show_warning
            yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
