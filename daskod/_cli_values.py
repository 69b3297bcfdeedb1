"""Option values of the ``daskod`` command, checked while the arguments are parsed.

Plain Python only (no numpy, Dask or astropy): a bad value is refused in command-line terms
("--scheduler must be one of ...") before any heavy import. Each function is an argparse
``type=``; its message starts with "must" or "is" and the parser puts the option's name in
front (:class:`daskod.cli` ``_Parser.error``). The rules are the library's own (the same
ranges as :class:`daskod.modes._params.ImagingParams` and the cube and IFU parameters).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

__all__ = ["scheduler", "memory_size", "tile_size", "pair", "good_bits", "pixfrac",
           "non_negative", "finite", "fillval", "kernel_size", "percent", "window",
           "storage_options"]

SCHEDULER_NAMES = ("synchronous", "sync", "single-threaded", "threads", "threading",
                   "processes", "multiprocessing")
_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?[A-Za-z0-9.\-\[\]:]*[A-Za-z0-9\]]:"
                      r"\d{1,5}$")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
          "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
          "ti": 2**40, "tib": 2**40, "pi": 2**50, "pib": 2**50}
_SIZE = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*(?P<unit>[a-z]*)\s*$",
                   re.IGNORECASE)


def _refuse(msg: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(msg)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def scheduler(text: str) -> str:
    """``synchronous``, ``threads``, ``processes`` (and Dask's synonyms) or an address."""
    name = text.strip()
    if name.lower() in SCHEDULER_NAMES or (" " not in name and _ADDRESS.match(name)):
        return name
    msg = ("must be one of synchronous, threads, processes or tcp://host:port, "
           f"got {text!r}")
    raise _refuse(msg)


def memory_size(text: str) -> int:
    """A byte count: ``2GiB``, ``512MB``, ``1e9`` (Dask's units)."""
    m = _SIZE.match(text)
    unit = m.group("unit").lower() if m else None
    if m is None or unit not in _UNITS or float(m.group("number")) <= 0:
        msg = f"must be a size like 2GiB or 512MB, got {text!r}"
        raise _refuse(msg)
    return int(float(m.group("number")) * _UNITS[unit])


def tile_size(text: str) -> int:
    """A tile edge in pixels (the engine's smallest is 8)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 8:
        msg = f"must be a whole number of pixels >= 8, got {text!r}"
        raise _refuse(msg)
    return value


def pair(text: str) -> str:
    """Two finite numbers (``--snr``, ``--scale``); the text is passed on as given."""
    parts = text.replace(",", " ").split()
    if len(parts) != 2 or any(_number(p) is None for p in parts):
        msg = f"must be two finite numbers like '5.0 4.0', got {text!r}"
        raise _refuse(msg)
    return text


def good_bits(text: str) -> str:
    """DQ flag names and/or integers, as the reference's ``good_bits``."""
    from daskod.flag._dq import interpret_good_bits  # plain Python, no imports

    if text.strip().upper() in ("NONE", ""):
        return text
    try:
        interpret_good_bits(text)
    except ValueError as err:
        raise _refuse(f"is not understood: {err}".replace("good_bits has", "it has")) from None
    return text


def pixfrac(text: str) -> float:
    """A number in (0, 1]."""
    value = _number(text)
    if value is None or not 0 < value <= 1:
        msg = f"must be a number in (0, 1], got {text!r}"
        raise _refuse(msg)
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (``--maskpt``)."""
    value = _number(text)
    if value is None or value < 0:
        msg = f"must be a finite number >= 0, got {text!r}"
        raise _refuse(msg)
    return value


def finite(text: str) -> float:
    """A finite number (``--backg``)."""
    value = _number(text)
    if value is None:
        msg = f"must be a finite number, got {text!r}"
        raise _refuse(msg)
    return value


def fillval(text: str) -> str:
    """``NAN``, ``INDEF`` or a number."""
    if text.strip().upper() in ("NAN", "INDEF", "NONE") or _number(text) is not None:
        return text
    msg = f"must be NAN, INDEF or a number, got {text!r}"
    raise _refuse(msg)


def kernel_size(text: str) -> str:
    """Two positive integers (``"7 7"``)."""
    parts = text.replace(",", " ").split()
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        msg = f"must be two positive integers like '7 7', got {text!r}"
        raise _refuse(msg)
    return text


def percent(text: str) -> float:
    """A number in [0, 100]."""
    value = _number(text)
    if value is None or not 0 <= value <= 100:
        msg = f"must be a number in [0, 100], got {text!r}"
        raise _refuse(msg)
    return value


def window(text: str) -> int:
    """A whole number >= 0 (``--rolling-window-width``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be a whole number >= 0, got {text!r}"
        raise _refuse(msg)
    return value


def storage_options(text: str) -> dict[str, Any]:
    """A JSON object. Messages never repeat the text: it may hold credentials."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        msg = (f"is not valid JSON (line {err.lineno}, column {err.colno}: "
               f"{err.msg.lower()}); the value is not shown because it may hold credentials")
        raise _refuse(msg) from None
    if not isinstance(value, dict):
        msg = (f"must be a JSON object such as '{{\"anon\": true}}', got a JSON "
               f"{type(value).__name__}")
        raise _refuse(msg)
    return value
