"""Which parts of an array to read and write together: blocks contiguous in C order (a FITS
image's layout), storage chunks of Zarr or Dask arrays read once each, and the contiguous
runs a region covers in the file."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["block_axis", "row_blocks", "chunk_edges", "regions", "box_runs", "batches",
           "Region"]


def block_axis(shape: tuple[int, ...], max_elements: int) -> tuple[int, int, int]:
    """``(k, inner, step)``: blocks of :func:`row_blocks` step ``step`` indices along axis
    ``k``, each index holding ``inner`` elements (the outermost axis whose trailing
    sub-array fits in ``max_elements``)."""
    k = len(shape) - 1
    while k > 0 and math.prod(shape[k:]) <= max_elements:
        k -= 1
    inner = math.prod(shape[k + 1:])
    return k, inner, max(1, max_elements // inner)


def row_blocks(shape: tuple[int, ...], max_elements: int
               ) -> Iterator[tuple[tuple[slice, ...], int, int]]:
    """Cover a C-order array with blocks contiguous in memory of at most ``max_elements``
    (at least one element): ``(key, first_element, n_elements)``, ``key`` a tuple of unit
    slices (whole planes of a cube when they fit, else rows of one plane, else parts of a
    row)."""
    shape = tuple(int(n) for n in shape)
    if not shape or 0 in shape:
        return
    k, inner, step = block_axis(shape, max(1, int(max_elements)))
    for lead in np.ndindex(*shape[:k]):
        base = int(np.ravel_multi_index(lead, shape[:k])) * shape[k] * inner if k else 0
        for a in range(0, shape[k], step):
            b = min(shape[k], a + step)
            key = (*(slice(i, i + 1) for i in lead), slice(a, b),
                   *(slice(0, n) for n in shape[k + 1:]))
            yield key, base + a * inner, (b - a) * inner


def chunk_edges(values: Any, shape: tuple[int, ...]) -> list[list[int]] | None:
    """Per axis, the edges of ``values``' storage chunks (Zarr shards or chunks, Dask
    chunks); None for an array without chunks (numpy) or of another shape."""
    chunks = getattr(values, "shards", None) or getattr(values, "chunks", None)
    if not chunks or len(chunks) != len(shape):
        return None
    edges = []
    for axis, n in zip(chunks, shape, strict=True):
        if isinstance(axis, tuple):  # Dask: each chunk's length
            cuts = [0, *np.cumsum(axis).tolist()]
        else:
            cuts = [*range(0, n, int(axis)), n]
        if cuts[-1] != n:
            return None
        edges.append([int(c) for c in cuts])
    return edges


#: A region of an array read in one go, and the runs it covers in C order: ``(key,
#: [(first_element, n_elements, offset_in_region), ...])``.
Region = tuple[tuple[slice, ...], list[tuple[int, int, int]]]


def regions(shape: tuple[int, ...], values: Any, max_elements: int, max_region: int, *,
            max_widened: int | None = None) -> Iterator[Region]:
    """Cover an array with regions read at once from ``values``, each split into runs that
    are contiguous in C order (a FITS image's layout) of at most ``max_elements``.

    Unchunked ``values`` (numpy, FITS): the blocks of :func:`row_blocks`. Chunked values
    (Dask, Zarr): each storage chunk read once when it holds at most ``max_region``
    elements (else in parts along its first axis), and chunks side by side merged over whole
    trailing axes while the merged region holds at most ``max_widened`` (default
    ``max_region``) elements: whole rows of an image tiled in squares, so that runs are long.
    """
    shape = tuple(int(n) for n in shape)
    if not shape or 0 in shape:
        return
    edges = chunk_edges(values, shape)
    if edges is None:
        for key, first, n in row_blocks(shape, max_elements):
            yield key, [(first, n, 0)]
        return
    widen = max_region if max_widened is None else max_widened
    ndim = len(shape)
    longest = [max(b - a for a, b in itertools.pairwise(e)) for e in edges]
    m = ndim  # axes >= m are read whole
    while m > 0:
        merged = math.prod(longest[:m - 1]) * math.prod(shape[m - 1:])
        if merged > (max_region if longest[m - 1] == shape[m - 1] else widen):
            break
        m -= 1
    spans = [list(itertools.pairwise(e)) for e in edges[:m]]
    for box in itertools.product(*spans):
        full = [*box, *((0, n) for n in shape[m:])]
        for part in _split(full, max_region):
            yield tuple(slice(a, b) for a, b in part), box_runs(part, shape, max_elements)


def _split(box: list[tuple[int, int]], max_region: int) -> Iterator[list[tuple[int, int]]]:
    """``box`` in parts of at most ``max_region`` elements along its outermost axis that
    has more than one index (recursively, down to single rows)."""
    size = math.prod(b - a for a, b in box)
    if size <= max_region:
        yield box
        return
    axis = next(i for i, (a, b) in enumerate(box) if b - a > 1)
    a, b = box[axis]
    inner = size // (b - a)
    step = max(1, max_region // inner)
    for lo in range(a, b, step):
        piece = [*box[:axis], (lo, min(b, lo + step)), *box[axis + 1:]]
        yield from _split(piece, max_region) if inner > max_region else [piece]


def box_runs(box: list[tuple[int, int]], shape: tuple[int, ...], max_elements: int
          ) -> list[tuple[int, int, int]]:
    """The C-order contiguous runs of ``box`` (cut to ``max_elements``), in the box's own
    C order: ``(first_element, n_elements, offset_in_box)``."""
    ndim = len(shape)
    p = ndim - 1  # the last axis the box does not cover whole
    while p >= 0 and box[p] == (0, shape[p]):
        p -= 1
    if p < 0:
        lead: list[tuple[int, ...]] = [()]
        length, start_axis = math.prod(shape), 0
    else:
        lead = list(itertools.product(*(range(a, b) for a, b in box[:p])))
        length = (box[p][1] - box[p][0]) * math.prod(shape[p + 1:])
        start_axis = p
    out = []
    offset = 0
    for index in lead:
        corner = (*index, *(a for a, _ in box[start_axis:]))
        first = int(np.ravel_multi_index(corner, shape)) if ndim else 0
        for cut in range(0, length, max(1, max_elements)):
            n = min(max_elements, length - cut)
            out.append((first + cut, n, offset + cut))
        offset += length
    return out


def batches(runs: list[tuple[int, int, int]], max_elements: int
            ) -> Iterator[list[tuple[int, int, int]]]:
    """Consecutive runs grouped into batches of at most ``max_elements`` elements (a run
    longer than that is a batch of its own)."""
    batch: list[tuple[int, int, int]] = []
    size = 0
    for run in runs:
        if batch and size + run[1] > max_elements:
            yield batch
            batch, size = [], 0
        batch.append(run)
        size += run[1]
    if batch:
        yield batch
