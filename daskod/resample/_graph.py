"""Tiled drizzle of exposure groups onto the output frame, and the per-group weight threshold.

Work unit: one (group, output tile). The task reads, for every exposure of the group, only
the detector sub-box that can land in the padded tile, evaluates the pixel map on that
sub-box, drizzles into the padded tile, crops and returns the tile's image and weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile, Tiling
from daskod.io._store import array_of
from daskod.resample._kernels import drizzle_tile
from daskod.resample._weights import build_driz_weight, weight_threshold

__all__ = ["plan_group_tiles", "member_input", "resample_group_tile", "group_weight_threshold"]

#: Output pixels around the padded tile within which input pixel centres are kept.
_SELECT_MARGIN = 3.0


def plan_group_tiles(
    pixel_maps: list[PixelMap], groups: list[list[int]], tiling: Tiling, pad: int
) -> dict[tuple[int, Tile], list[tuple[int, tuple[int, int, int, int]]]]:
    """For every (group, tile) that receives data: its exposures and their detector sub-boxes.

    This is the table of which exposures touch which output tile.
    """
    bounds = [pm.node_bounds() for pm in pixel_maps]
    plan: dict[tuple[int, Tile], list[tuple[int, tuple[int, int, int, int]]]] = {}
    reach = pad + _SELECT_MARGIN + 2.0
    for tile in tiling:
        ox0, ox1 = tile.x0 - pad, tile.x1 + pad
        oy0, oy1 = tile.y0 - pad, tile.y1 + pad
        for g, members in enumerate(groups):
            entries = []
            for k in members:
                bx0, bx1, by0, by1 = bounds[k]
                if bx1 < tile.x0 - reach or bx0 > tile.x1 + reach or (
                        by1 < tile.y0 - reach or by0 > tile.y1 + reach):
                    continue
                box = pixel_maps[k].input_box_for(ox0, ox1, oy0, oy1, margin=_SELECT_MARGIN)
                if box is not None:
                    entries.append((k, box))
            if entries:
                plan[(g, tile)] = entries
    return plan


def _read(source: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    iy0, iy1, ix0, ix1 = box
    return np.asarray(array_of(source)[iy0:iy1, ix0:ix1])


def member_input(member: dict[str, Any], pixel_map: PixelMap, origin: tuple[int, int], *,
                 weight_type: str, bad_mask: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One exposure's drizzle input over its detector ``box``: data (sky removed), weight
    (zero where the whole-frame drizzle drops a pixel), pixel map relative to the padded
    tile's ``origin`` (y, x), exposure time."""
    box = member["box"]
    sci = _read(member["sci"], box).astype(np.float32, copy=False)
    var = member.get("var_rnoise")
    weight = build_driz_weight(_read(member["dq"], box), weight_type=weight_type,
                               bad_mask=bad_mask, var_rnoise=None if var is None else
                               _read(var, box), exposure_time=member["exposure_time"])
    keep = pixel_map.drizzle_mask(*box)  # pixels the whole-frame drizzle drops: weight 0
    weight = weight if keep is None else np.where(keep, weight, np.float32(0))
    data = sci - np.float32(member["sky"]) if member["sky"] else sci
    pixmap = pixel_map.evaluate(*box)
    pixmap[..., 0] -= origin[1]
    pixmap[..., 1] -= origin[0]
    return data, weight, pixmap, member["exposure_time"]


def resample_group_tile(
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
    """Drizzle one group onto one output tile.

    ``members`` (one dict per exposure of the group: its ``sci``, ``dq`` and ``var_rnoise``
    sources, detector ``box``, ``exposure_time`` and ``sky``) is aligned with ``pixel_maps``.

    Returns
    -------
    ndarray, shape (2, ny, nx), float32
        The drizzled image and its weight on the tile.
    """
    origin = (tile.y0 - pad, tile.x0 - pad)
    inputs = [member_input(member, pixel_map, origin, weight_type=weight_type,
                           bad_mask=bad_mask)
              for member, pixel_map in zip(members, pixel_maps, strict=True)]
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    img, wht = drizzle_tile(inputs, out_shape, kernel=kernel, pixfrac=pixfrac, fillval=fillval)
    crop = (slice(pad, pad + tile.shape[0]), slice(pad, pad + tile.shape[1]))
    return np.stack([img[crop], wht[crop]])


class _GroupWeights:
    """The weight image of one group, ``(ny, nx)``, read from the stored
    ``(groups, 2, ny, nx)`` drizzle output (what :func:`weight_threshold` reads in strips)."""

    def __init__(self, resampled: Any, group: int) -> None:
        self.resampled, self.group = resampled, group
        self.shape = tuple(resampled.shape[2:])
        chunks = getattr(resampled, "chunks", None)
        self.chunks = tuple(chunks[2:]) if chunks else None

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.resampled[(self.group, 1, *key)])


def group_weight_threshold(resampled: Any, group: int, maskpt: float) -> np.ndarray:
    """The reference's scalar weight threshold of one group (stcal
    ``compute_weight_threshold``, bit for bit): its whole weight image read in raster order,
    a strip at a time, 4 bytes per weighted pixel held. Tiles the group does not reach were
    never written and read as NaN, which never counts."""
    weights = _GroupWeights(array_of(resampled), group)
    return np.array([weight_threshold(weights, maskpt)])
