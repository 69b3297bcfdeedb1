"""Tiny graph helpers shared by the modes (kept import-light for worker processes)."""

from __future__ import annotations

from typing import Any

__all__ = ["barrier", "first"]


def barrier(*_args: Any) -> None:
    """A task that only waits for its arguments."""
    return None


def first(value: Any, *_after: Any) -> Any:
    """Return ``value`` once the other arguments are computed."""
    return value
