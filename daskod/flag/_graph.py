"""Flag tasks: one detector tile of one exposure (blot the median, compare, update DQ)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskod.blot._kernels import blot_tile, median_window_for
from daskod.flag._kernels import (
    apply_outlier_flags,
    flag_crs,
    flag_resampled_crs,
    nan_or_unusable_flags,
)
from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.resample._weights import build_driz_weight

__all__ = ["FLAG_HALO", "halo_box", "blot_and_flag_tile", "flag_tile_against_median",
           "blot_region", "update_dq_block", "UsableRule"]

#: Detector pixels around a tile that the rule needs: 1 for the 3x3 growth of the first
#: pass, 1 more for the derivative of the blot behind it.
FLAG_HALO = 2

_VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


def halo_box(tile: Tile, shape: tuple[int, int], halo: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of ``tile`` grown by ``halo`` pixels, clipped to ``shape``."""
    return (max(tile.y0 - halo, 0), min(tile.y1 + halo, shape[0]),
            max(tile.x0 - halo, 0), min(tile.x1 + halo, shape[1]))


def blot_region(pixel_map: PixelMap, box: tuple[int, int, int, int], median: Any,
                median_shape: tuple[int, int],
                allowed: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Blot of the median frame on detector pixels ``box`` (NaN outside the median).

    ``allowed`` is the median window the task may read (what it depends on); reading
    outside it would read blocks nobody promised to have written, so it is an error.
    """
    pixmap = pixel_map.evaluate(*box)
    window = median_window_for(pixmap, median_shape)
    if window is None:
        return np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
    y0, y1, x0, x1 = window
    if allowed is not None and not (allowed[0] <= y0 and y1 <= allowed[1]
                                    and allowed[2] <= x0 and x1 <= allowed[3]):
        msg = (f"The blot of detector box {box} needs median window {window}, outside the "
               f"planned {allowed}; this is a bug in daskod's planning.")
        raise RuntimeError(msg)
    return blot_tile(np.asarray(array_of(median)[y0:y1, x0:x1]), pixmap, (y0, x0),
                     median_shape)


@dataclass(frozen=True)
class UsableRule:
    """What makes an input pixel usable (finite SCI and a non-zero drizzle weight): the flag
    tasks count an exposure's usable pixels with it, for the implausible-flag-fraction check,
    while they hold the block's SCI, DQ and VAR_RNOISE anyway."""

    weight_type: str
    bad_mask: int
    exposure_time: float

    def count(self, sci: np.ndarray, dq: np.ndarray, var_rnoise: np.ndarray | None) -> int:
        """Usable pixels of one block."""
        weight = build_driz_weight(dq, weight_type=self.weight_type, bad_mask=self.bad_mask,
                                   var_rnoise=var_rnoise, exposure_time=self.exposure_time)
        return int(np.count_nonzero(np.isfinite(sci) & (weight > 0)))


def update_dq_block(sources: dict[str, Any], region: tuple[slice, ...], cr: np.ndarray,
                    arrays: dict[str, np.ndarray], usable: UsableRule | None = None
                    ) -> tuple[np.ndarray, ...]:
    """New DQ of one block of an exposure or cube: ``|= 17`` where ``cr``, then DO_NOT_USE
    wherever SCI/ERR/VAR (``arrays`` holds SCI and ERR of the block; the variances are read
    here) is NaN, as the reference's NaN matching.

    Returns
    -------
    dq : ndarray of uint32
        The new DQ block.
    count : ndarray of int64, shape (1,)
        Pixels flagged as outliers.
    usable : ndarray of int64, shape (1,)
        Only with ``usable``: the block's usable pixels before flagging (:class:`UsableRule`).
    """
    dq_in = np.asarray(array_of(sources["dq"])[region])
    dq = apply_outlier_flags(dq_in, cr)  # a new uint32 array
    for key in _VARIANCES:
        if sources.get(key) is not None:
            arrays[key] = np.asarray(array_of(sources[key])[region])
    n_usable = None if usable is None else usable.count(arrays["sci"], dq_in,
                                                         arrays.get("var_rnoise"))
    dq = nan_or_unusable_flags(dq, arrays)
    count = np.array([np.count_nonzero(cr)], dtype=np.int64)
    if usable is None:
        return dq, count
    return dq, count, np.array([n_usable], dtype=np.int64)


def _crop(a: np.ndarray, tile: Tile, y0: int, x0: int) -> np.ndarray:
    return a[tile.y0 - y0:tile.y1 - y0, tile.x0 - x0:tile.x1 - x0]


def blot_and_flag_tile(
    sources: dict[str, Any],
    pixel_map: PixelMap,
    tile: Tile,
    median: Any,
    *,
    shape: tuple[int, int],
    window: tuple[int, int, int, int],
    median_shape: tuple[int, int],
    snr: tuple[float, float],
    scale: tuple[float, float],
    backg: float,
    usable: UsableRule | None = None,
) -> tuple[np.ndarray, ...]:
    """The reference's resampled flag rule on one detector tile: ``(new DQ, count)``, and the
    tile's usable pixels with ``usable`` (:func:`update_dq_block`)."""
    box = halo_box(tile, shape, FLAG_HALO)
    y0, y1, x0, x1 = box
    blot = blot_region(pixel_map, box, median, median_shape, allowed=window)
    sci = np.asarray(array_of(sources["sci"])[y0:y1, x0:x1])
    err = np.asarray(array_of(sources["err"])[y0:y1, x0:x1])
    cr = flag_resampled_crs(sci, err, blot, snr1=snr[0], snr2=snr[1], scale1=scale[0],
                            scale2=scale[1], backg=backg)
    arrays = {"sci": _crop(sci, tile, y0, x0), "err": _crop(err, tile, y0, x0)}
    return update_dq_block(sources, tile.slices, _crop(cr, tile, y0, x0), arrays, usable)


def flag_tile_against_median(sources: dict[str, Any], tile: Tile, median: Any, *,
                             snr1: float, usable: UsableRule | None = None
                             ) -> tuple[np.ndarray, ...]:
    """``resample_data=False``: ``|S - median| > snr1 * err`` on one detector tile."""
    sci = np.asarray(array_of(sources["sci"])[tile.slices])
    err = np.asarray(array_of(sources["err"])[tile.slices])
    med = np.asarray(array_of(median)[tile.slices])
    cr = flag_crs(sci, err, med, snr1=snr1)
    return update_dq_block(sources, tile.slices, cr, {"sci": sci, "err": err}, usable)
