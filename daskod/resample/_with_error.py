"""Drizzle one group onto one output tile with its errors (imaging ``noise_model="median"``
and ``combine="minmed"``), through spec mode's drizzle of data and ERR."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.spec._tasks import SpecMember, drizzle_spec_group_tile

__all__ = ["resample_group_tile_with_error"]

_ARRAYS = ("sci", "err", "dq", "var_rnoise")


def resample_group_tile_with_error(
    members: list[dict[str, Any]],
    pixel_maps: list[PixelMap],
    tile: Tile,
    *,
    pad: int,
    kernel: str,
    pixfrac: float,
    fillval: str,
    weight_type: str,
    bad_mask: int,
) -> np.ndarray:
    """Drizzle one group's data and ERR onto one output tile.

    ``members`` are imaging's member dicts (sources, detector ``box``, ``exposure_time``,
    ``sky``) with ``err`` and the detector ``shape``; each member is drizzled whole within
    its detector, as :func:`~daskod.resample._graph.resample_group_tile` does (so the image
    and weight planes are the same), and the errors beside them with the same pixel map,
    weights and kernel (the reference's ``compute_err="driz_err"``).

    Returns
    -------
    ndarray, shape (3, ny, nx), float32
        Drizzled image, weight and error on the tile.
    """
    spec_members = []
    for k, member in enumerate(members):
        ny, nx = member["shape"]
        sources = {name: array_of(member[name]) for name in _ARRAYS
                   if member.get(name) is not None}
        spec_members.append(SpecMember(index=k, sources=sources, box=member["box"],
                                       pixel_range=(0, nx - 1, 0, ny - 1),
                                       exposure_time=member["exposure_time"],
                                       sky=member["sky"]))
    img, wht, err = drizzle_spec_group_tile(spec_members, pixel_maps, tile, pad=pad,
                                            kernel=kernel, pixfrac=pixfrac, fillval=fillval,
                                            weight_type=weight_type, bad_mask=bad_mask)
    return np.stack([img, wht, err]).astype(np.float32, copy=False)
