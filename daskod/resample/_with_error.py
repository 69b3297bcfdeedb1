"""Drizzle one group onto one output tile with extra planes for the imaging options: the
drizzled ERR (``noise_model="median"``: spec mode's drizzle of data and ERR) and the
propagated variance of the drizzled values (``combine="minmed"``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.resample._kernels import drizzle_tile_with_variance
from daskod.resample._weights import build_driz_weight
from daskod.spec._tasks import SpecMember, drizzle_spec_group_tile

__all__ = ["PLANES", "resample_group_tile_planes"]

#: Planes a drizzle task may write, in this order: ``data`` and ``weight`` always.
PLANES = ("data", "weight", "error", "variance")
_ARRAYS = ("sci", "err", "dq", "var_rnoise")


def _read(source: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    iy0, iy1, ix0, ix1 = box
    return np.asarray(array_of(source)[iy0:iy1, ix0:ix1])


def _with_error(members: list[dict[str, Any]], pixel_maps: list[PixelMap], tile: Tile,
                **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, weight and drizzled ERR through spec mode's group drizzle (each member whole
    within its detector, as imaging's drizzle: the same image and weight)."""
    spec_members = []
    for k, member in enumerate(members):
        ny, nx = member["shape"]
        sources = {name: array_of(member[name]) for name in _ARRAYS
                   if member.get(name) is not None}
        spec_members.append(SpecMember(index=k, sources=sources, box=member["box"],
                                       pixel_range=(0, nx - 1, 0, ny - 1),
                                       exposure_time=member["exposure_time"],
                                       sky=member["sky"]))
    return drizzle_spec_group_tile(spec_members, pixel_maps, tile, **kwargs)


def _with_variance(members: list[dict[str, Any]], pixel_maps: list[PixelMap], tile: Tile, *,
                   pad: int, kernel: str, pixfrac: float, fillval: str, weight_type: str,
                   bad_mask: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, weight and the propagated variance (ERR squared) of the drizzled values."""
    oy0, ox0 = tile.y0 - pad, tile.x0 - pad
    inputs = []
    for member, pixel_map in zip(members, pixel_maps, strict=True):
        box = member["box"]
        var = member.get("var_rnoise")
        weight = build_driz_weight(_read(member["dq"], box), weight_type=weight_type,
                                   bad_mask=bad_mask,
                                   var_rnoise=None if var is None else _read(var, box),
                                   exposure_time=member["exposure_time"])
        sci = _read(member["sci"], box).astype(np.float32, copy=False)
        data = sci - np.float32(member["sky"]) if member["sky"] else sci
        err = _read(member["err"], box).astype(np.float32, copy=False)
        pixmap = pixel_map.evaluate(*box)
        pixmap[..., 0] -= ox0
        pixmap[..., 1] -= oy0
        inputs.append((data, err * err, weight, pixmap, member["exposure_time"]))
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    img, wht, var = drizzle_tile_with_variance(inputs, out_shape, kernel=kernel,
                                               pixfrac=pixfrac, fillval=fillval)
    crop = np.s_[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    return img[crop], wht[crop], var[crop]


def resample_group_tile_planes(
    members: list[dict[str, Any]],
    pixel_maps: list[PixelMap],
    tile: Tile,
    *,
    planes: tuple[str, ...],
    pad: int,
    kernel: str,
    pixfrac: float,
    fillval: str,
    weight_type: str,
    bad_mask: int,
) -> np.ndarray:
    """Drizzle one group onto one output tile: the planes named in ``planes``.

    ``members`` are imaging's member dicts (sources, detector ``box``, ``exposure_time``,
    ``sky``) with ``err`` and the detector ``shape``. ``data`` and ``weight`` equal those of
    :func:`~daskod.resample._graph.resample_group_tile`; ``error`` is the drizzled ERR (the
    reference's ``compute_err="driz_err"``, a weighted linear mean, through
    :func:`~daskod.spec._tasks.drizzle_spec_group_tile`); ``variance`` the variance of each
    drizzled value propagated from ERR squared
    (:func:`~daskod.resample._kernels.drizzle_tile_with_variance`, one drizzle pass).

    Returns
    -------
    ndarray, shape (len(planes), ny, nx), float32
    """
    kwargs = {"pad": pad, "kernel": kernel, "pixfrac": pixfrac, "fillval": fillval,
              "weight_type": weight_type, "bad_mask": bad_mask}
    out: dict[str, np.ndarray] = {}
    if "error" in planes:
        out["data"], out["weight"], out["error"] = _with_error(members, pixel_maps, tile,
                                                               **kwargs)
    if "variance" in planes:
        img, wht, out["variance"] = _with_variance(members, pixel_maps, tile, **kwargs)
        out.setdefault("data", img)
        out.setdefault("weight", wht)
    return np.stack([out[name] for name in planes]).astype(np.float32, copy=False)
