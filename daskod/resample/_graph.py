"""Tiled drizzle of exposure groups onto the output frame, and the per-group weight threshold.

Work unit: one (group, output tile). The task reads, for every exposure of the group, only
the detector sub-box that can land in the padded tile, evaluates the pixel map on that
sub-box, drizzles into the padded tile, crops and writes the chunk of
``resampled/data`` and ``resampled/wht``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile, Tiling
from daskod.resample._kernels import drizzle_tile
from daskod.resample._weights import build_driz_weight, compute_weight_threshold

__all__ = ["GroupMember", "plan_group_tiles", "resample_group_tile", "group_weight_threshold"]

#: Output pixels around the padded tile within which input pixel centres are kept.
_SELECT_MARGIN = 3.0


@dataclass(frozen=True)
class GroupMember:
    """What a resample task needs of one exposure: sources, box and small metadata."""

    index: int
    sources: dict[str, Any]
    box: tuple[int, int, int, int]
    exposure_time: float
    sky: float


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
    return np.asarray(source[iy0:iy1, ix0:ix1])


def resample_group_tile(
    members: list[GroupMember],
    pixel_maps: list[PixelMap],
    tile: Tile,
    group: int,
    *,
    pad: int,
    kernel: str,
    pixfrac: float,
    fillval: str,
    weight_type: str,
    bad_mask: int,
    out_data: Any,
    out_wht: Any,
    after: Any = None,
) -> int:
    """Drizzle one group onto one output tile and write it; returns the non-zero weight count.

    ``pixel_maps`` is aligned with ``members``.
    """
    inputs = []
    oy0, ox0 = tile.y0 - pad, tile.x0 - pad
    for member, pixel_map in zip(members, pixel_maps, strict=True):
        box = member.box
        sci = _read(member.sources["sci"], box).astype(np.float32, copy=False)
        dq = _read(member.sources["dq"], box)
        var = member.sources.get("var_rnoise")
        var = None if var is None else _read(var, box)
        weight = build_driz_weight(dq, weight_type=weight_type, bad_mask=bad_mask,
                                   var_rnoise=var, exposure_time=member.exposure_time)
        keep = pixel_map.drizzle_mask(*box)  # pixels the whole-frame drizzle drops: weight 0
        weight = weight if keep is None else np.where(keep, weight, np.float32(0))
        data = sci - np.float32(member.sky) if member.sky else sci
        pixmap = pixel_map.evaluate(*box)
        pixmap[..., 0] -= ox0
        pixmap[..., 1] -= oy0
        inputs.append((data, weight, pixmap, member.exposure_time))
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    img, wht = drizzle_tile(inputs, out_shape, kernel=kernel, pixfrac=pixfrac, fillval=fillval)
    img = img[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    wht = wht[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    region = (group, *tile.slices)
    out_data[region] = img
    out_wht[region] = wht
    return int(np.count_nonzero(wht))


def group_weight_threshold(wht: Any, group: int, tiles: list[Tile], maskpt: float,
                           *after: Any) -> float:
    """The reference's scalar weight threshold of one group, gathered tile by tile.

    Only non-zero finite weights enter ``compute_weight_threshold`` (zeros and NaN never
    count), so gathering the tiles the group touched equals thresholding the whole frame.
    """
    parts = []
    for tile in tiles:
        block = np.asarray(wht[(group, *tile.slices)])
        parts.append(block[np.isfinite(block) & (block != 0)])
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)
    return float(compute_weight_threshold(values, maskpt))
