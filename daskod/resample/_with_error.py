"""Drizzle one group onto one output tile with extra planes for the imaging options: the
drizzled ERR (``noise_model="median"``: spec mode's drizzle of data and ERR) and the
propagated variance of the drizzled values (``combine="minmed"``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.resample._graph import member_input
from daskod.resample._kernels import drizzle_tile_with_error, drizzle_tile_with_variance

__all__ = ["PLANES", "resample_group_tile_planes"]

#: Planes a drizzle task may write, in this order: ``data`` and ``weight`` always.
PLANES = ("data", "weight", "error", "variance")
_ARRAYS = ("sci", "err", "dq", "var_rnoise")


def _read(source: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    iy0, iy1, ix0, ix1 = box
    return np.asarray(array_of(source)[iy0:iy1, ix0:ix1])


def _drizzle(members: list[dict[str, Any]], pixel_maps: list[PixelMap], tile: Tile, *,
             squared: bool, pad: int, kernel: str, pixfrac: float, fillval: str,
             weight_type: str, bad_mask: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, weight and either the drizzled ERR (``squared=False``: a second drizzle of ERR
    with the same weights, as spec mode) or the propagated variance of the drizzled values
    (``squared=True``: ERR squared through drizzle's squared-weight co-add)."""
    origin = (tile.y0 - pad, tile.x0 - pad)
    inputs: list[tuple[Any, ...]] = []
    for member, pixel_map in zip(members, pixel_maps, strict=True):
        data, weight, pixmap, texp = member_input(member, pixel_map, origin,
                                                  weight_type=weight_type, bad_mask=bad_mask)
        err = _read(member["err"], member["box"]).astype(np.float32, copy=False)
        if squared:
            inputs.append((data, err * err, weight, pixmap, texp))
        else:  # the whole box is inside the detector: no pixel range to cut
            inputs.append((data, err, weight, pixmap, texp, None))
    out_shape = (tile.shape[0] + 2 * pad, tile.shape[1] + 2 * pad)
    drizzle = drizzle_tile_with_variance if squared else drizzle_tile_with_error
    img, wht, extra = drizzle(inputs, out_shape, kernel=kernel, pixfrac=pixfrac,
                              fillval=fillval)
    crop = np.s_[pad:pad + tile.shape[0], pad:pad + tile.shape[1]]
    return img[crop], wht[crop], extra[crop]


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
    :func:`~daskod.resample._kernels.drizzle_tile_with_error` as spec mode); ``variance`` the
    variance of each
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
        out["data"], out["weight"], out["error"] = _drizzle(members, pixel_maps, tile,
                                                            squared=False, **kwargs)
    if "variance" in planes:
        img, wht, out["variance"] = _drizzle(members, pixel_maps, tile, squared=True, **kwargs)
        out.setdefault("data", img)
        out.setdefault("weight", wht)
    return np.stack([out[name] for name in planes]).astype(np.float32, copy=False)
