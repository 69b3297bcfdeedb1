"""Regular tilings of a 2-D frame: the unit of work of every phase."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Tile", "Tiling"]


@dataclass(frozen=True)
class Tile:
    """One tile: block index ``(i, j)`` and half-open pixel bounds."""

    i: int
    j: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))


@dataclass(frozen=True)
class Tiling:
    """A frame of ``shape`` cut in tiles of ``tile`` pixels (last row/column may be smaller)."""

    shape: tuple[int, int]
    tile: tuple[int, int]

    @property
    def nblocks(self) -> tuple[int, int]:
        return (-(-self.shape[0] // self.tile[0]), -(-self.shape[1] // self.tile[1]))

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask-style chunks."""
        return tuple(
            tuple(min(t, n - k) for k in range(0, n, t))
            for n, t in zip(self.shape, self.tile, strict=True)
        )

    def __iter__(self) -> Iterator[Tile]:
        ny, nx = self.shape
        ty, tx = self.tile
        for i, y0 in enumerate(range(0, ny, ty)):
            for j, x0 in enumerate(range(0, nx, tx)):
                yield Tile(i, j, y0, min(y0 + ty, ny), x0, min(x0 + tx, nx))

    def __len__(self) -> int:
        a, b = self.nblocks
        return a * b

    def containing(self, y: int, x: int) -> Tile:
        """The tile that holds pixel ``(y, x)``."""
        ny, nx = self.shape
        ty, tx = self.tile
        i, j = y // ty, x // tx
        return Tile(i, j, i * ty, min((i + 1) * ty, ny), j * tx, min((j + 1) * tx, nx))
