"""Graph helpers shared by the modes (kept import-light for worker processes).

:func:`new_task` is how every mode makes a task. ``dask.delayed(f)(...)`` walks its arguments to
find Dask collections, and it walks dataclasses field by field: a zarr 3 ``Array`` is a
dataclass whose metadata tree holds hundreds of nested fields, so each call cost milliseconds
and a 64-exposure run spent most of a minute building its graph. :func:`new_task` looks only into
plain lists, tuples and dicts for the Delayed objects a task depends on (pixel maps, earlier
tasks), hands every other argument to the task untouched, and builds the task spec itself.
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["barrier", "first", "new_task"]


def barrier(*_args: Any) -> None:
    """A task that only waits for its arguments."""
    return None


def first(value: Any, *_after: Any) -> Any:
    """Return ``value`` once the other arguments are computed."""
    return value


#: Layers above which a task's graph is folded into one (see :func:`new_task`).
_MAX_LAYERS = 64


class _Slot:
    """Where the value of the n-th dependency goes in a task's arguments."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def _map_leaves(value: Any, leaf: Any) -> Any:
    """``value`` with ``leaf`` applied inside plain lists, tuples and dicts (nothing else is
    looked into)."""
    typ = type(value)
    if typ is list or typ is tuple:
        items = [_map_leaves(v, leaf) for v in value]
        return items if typ is list else tuple(items)
    if typ is dict:
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return leaf(value)


def _template(value: Any, deps: list[Any]) -> Any:
    """``value`` with each Delayed replaced by a slot; the Delayed objects go to ``deps``."""
    from dask.delayed import Delayed

    def slot(v: Any) -> Any:
        if not isinstance(v, Delayed):
            return v
        deps.append(v)
        return _Slot(len(deps) - 1)

    return _map_leaves(value, slot)


def _fill(value: Any, values: tuple[Any, ...]) -> Any:
    """``value`` with each slot replaced by the computed dependency."""
    return _map_leaves(value, lambda v: values[v.n] if isinstance(v, _Slot) else v)


def _run_task(payload: tuple[Any, Any, Any, bool], *values: Any) -> Any:
    func, args, kwargs, has_slots = payload
    if has_slots:
        args, kwargs = _fill(args, values), _fill(kwargs, values)
    return func(*args, **kwargs)


def new_task(func: Any, *args: Any, **kwargs: Any) -> Any:
    """A ``Delayed`` call ``func(*args, **kwargs)`` (impure: a new key every call).

    Delayed values anywhere in plain lists, tuples or dicts of the arguments are computed
    first and passed in; nothing else is inspected or copied.
    """
    from dask._task_spec import DataNode, Task, TaskRef
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    deps: list[Any] = []
    targs = _template(list(args), deps)
    tkwargs = _template(kwargs, deps)
    name = getattr(func, "__name__", "task").replace("_", "-")
    key = f"{name}-{uuid.uuid4().hex}"
    spec = Task(key, _run_task, DataNode(None, (func, targs, tkwargs, bool(deps))),
                *[TaskRef(d.key) for d in deps])
    graph = HighLevelGraph.from_collections(key, {key: spec}, dependencies=deps)
    if len(graph.layers) > _MAX_LAYERS:
        # A task behind many others (a barrier, a threshold over a group's tiles): fold its
        # graph into one layer once, so that the tasks built on it do not each merge
        # thousands of layers (lazy graphs would cost O(tasks^2) to build).
        graph = HighLevelGraph({key: MaterializedLayer(dict(graph))}, {key: set()})
    return Delayed(key, graph)
