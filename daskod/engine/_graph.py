"""The run's task graph, built with Dask's public graph API (``dask.task_spec``,
``dask.highlevelgraph``).

Every mode adds its tasks to one :class:`RunGraph`; a task names the tasks whose values it
needs with :class:`Ref` placeholders anywhere inside plain lists, tuples and dicts of its
arguments (nothing else is looked into, so zarr arrays and dataclasses pass untouched and
graphs build in linear time). Output arrays (:meth:`RunGraph.array`) are ``dask.array``
objects over the whole graph, so a user's ``compute`` of any of them runs exactly the tasks
they depend on, and ``dask.compute(*outputs)`` shares every common task.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

__all__ = ["Ref", "RunGraph"]


class Ref:
    """The value of another task (by key), used inside a task's arguments."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"


class _Slot:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def _map_leaves(value: Any, leaf: Any) -> Any:
    typ = type(value)
    if typ is list or typ is tuple:
        items = [_map_leaves(v, leaf) for v in value]
        return items if typ is list else tuple(items)
    if typ is dict:
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return leaf(value)


def _call(payload: tuple[Any, Any, Any], *values: Any) -> Any:
    """Run a task: put the dependencies' values where their slots are, then call."""
    func, args, kwargs = payload

    def fill(v: Any) -> Any:
        return values[v.n] if isinstance(v, _Slot) else v

    if values:
        args, kwargs = _map_leaves(args, fill), _map_leaves(kwargs, fill)
    return func(*args, **kwargs)


class RunGraph:
    """All tasks of one run, keyed ``("<phase>-<run token>", *index)``."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:12]
        self.tasks: dict[Any, Any] = {}
        self.collections: list[Any] = []

    def key(self, phase: str, *index: Any) -> tuple[Any, ...]:
        return (f"{phase}-{self.token}", *index)

    def data(self, phase: str, value: Any, *index: Any) -> Ref:
        """A literal value held once in the graph (a pixel map, an array handle)."""
        from dask.task_spec import DataNode

        key = self.key(phase, *index)
        self.tasks[key] = DataNode(key, value)
        return Ref(key)

    def task(self, phase: str, index: tuple[Any, ...], func: Any, *args: Any,
             **kwargs: Any) -> Ref:
        """Add ``func(*args, **kwargs)`` under key ``(phase-token, *index)``; :class:`Ref`
        arguments become dependencies."""
        from dask.task_spec import DataNode, Task, TaskRef

        deps: list[Any] = []

        def slot(v: Any) -> Any:
            if isinstance(v, Ref):
                deps.append(v.key)
                return _Slot(len(deps) - 1)
            return v

        targs, tkwargs = _map_leaves(list(args), slot), _map_leaves(kwargs, slot)
        key = self.key(phase, *index)
        self.tasks[key] = Task(key, _call, DataNode(None, (func, targs, tkwargs)),
                               *[TaskRef(d) for d in deps])
        return Ref(key)

    def block_of(self, array: Any, index: tuple[int, ...]) -> Ref:
        """A block of a user's Dask array as a dependency."""
        if not any(a is array for a in self.collections):
            self.collections.append(array)
        return Ref((array.name, *index))

    def array(self, phase: str, chunks: tuple[tuple[int, ...], ...], dtype: Any) -> Any:
        """The Dask array whose block ``index`` is the task ``(phase-token, *index)``."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        name = self.key(phase)[0]
        hlg = HighLevelGraph.from_collections(name, self.tasks, dependencies=self.collections)
        meta = np.empty((0,) * len(chunks), dtype=dtype)
        return da.Array(hlg, name, chunks, dtype=dtype, meta=meta)
