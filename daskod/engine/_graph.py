"""The run's task graph, built with Dask's public graph API (``dask.task_spec``,
``dask.highlevelgraph``).

Every mode adds its tasks to one :class:`RunGraph`; a task names the tasks whose values it
needs with :class:`Ref` placeholders anywhere inside plain lists, tuples and dicts of its
arguments (nothing else is looked into, so zarr arrays and dataclasses pass untouched and
graphs build in linear time). Output arrays (:meth:`RunGraph.array`) are
:class:`GraphArray` s over the whole graph: Dask collections (Dask's public collection
protocol) that ``dask.compute`` computes as they are, without ``dask.array`` (an import of
~0.8 s, with the xarray it loads, at the start of every command-line run), and that become
``dask.array`` objects (:func:`as_dask`) where a user or a mode needs one. Either way a
``compute`` of any of them runs exactly the tasks they depend on, and
``dask.compute(*outputs)`` shares every common task.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

__all__ = ["GraphArray", "Ref", "RunGraph", "as_dask"]


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

    def array(self, phase: str, chunks: tuple[tuple[int, ...], ...], dtype: Any
              ) -> GraphArray:
        """The array whose block ``index`` is the task ``(phase-token, *index)``."""
        return GraphArray(self, self.key(phase)[0], chunks, dtype)


class GraphArray:
    """Blocks of a :class:`RunGraph` as an array: a Dask collection that ``dask.compute``
    computes (to one numpy array) without importing ``dask.array``.

    :meth:`to_dask` (or :func:`as_dask`) gives the equivalent ``dask.array.Array`` over the
    same keys and graph, for users and for modes that slice their outputs.
    """

    def __init__(self, graph: RunGraph, name: str, chunks: tuple[tuple[int, ...], ...],
                 dtype: Any) -> None:
        self.graph, self.name, self.chunks = graph, name, chunks
        self.dtype = np.dtype(dtype)
        self._dask: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(sum(c) for c in self.chunks)

    @property
    def ndim(self) -> int:
        return len(self.chunks)

    def __repr__(self) -> str:
        return f"GraphArray<{self.name}, shape={self.shape}, dtype={self.dtype}>"

    def to_dask(self) -> Any:
        """This array as a ``dask.array.Array`` (made once, then the same object)."""
        if self._dask is None:
            import dask.array as da

            meta = np.empty((0,) * self.ndim, dtype=self.dtype)
            self._dask = da.Array(self.__dask_graph__(), self.name, self.chunks,
                                  dtype=self.dtype, meta=meta)
        return self._dask

    # -- Dask's collection protocol ------------------------------------------------------
    def __dask_graph__(self) -> Any:
        from dask.highlevelgraph import HighLevelGraph

        return HighLevelGraph.from_collections(self.name, self.graph.tasks,
                                               dependencies=self.graph.collections)

    def __dask_keys__(self) -> list[Any]:
        def keys(prefix: tuple[int, ...], axis: int) -> list[Any]:
            if axis == self.ndim:
                return (self.name, *prefix)  # type: ignore[return-value]
            return [keys((*prefix, i), axis + 1) for i in range(len(self.chunks[axis]))]

        return keys((), 0)

    def __dask_layers__(self) -> tuple[str, ...]:
        return (self.name,)

    def __dask_tokenize__(self) -> str:
        return self.name

    def __dask_postcompute__(self) -> tuple[Any, tuple[()]]:
        return np.block, ()  # the computed blocks, nested one list level per axis

    @staticmethod
    def __dask_optimize__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return dsk

    @staticmethod
    def __dask_scheduler__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        from dask.threaded import get

        return get(dsk, keys, **kwargs)


def as_dask(value: Any) -> Any:
    """``value`` with every :class:`GraphArray` in it (also inside lists, tuples and dicts)
    replaced by its ``dask.array.Array``."""
    return _map_leaves(value, lambda v: v.to_dask() if isinstance(v, GraphArray) else v)
