"""Flag tasks with the imaging options (``noise_model``, ``source_noise``): one detector tile
of one exposure."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.blot._kernels import median_window_for
from daskod.flag._graph import FLAG_HALO, UsableRule, blot_region, halo_box, update_dq_block
from daskod.flag._kernels import flag_resampled_crs, local_error, with_source_noise
from daskod.geometry._pixel_map import PixelMap
from daskod.geometry._tiles import Tile
from daskod.io._store import array_of
from daskod.spec._kernels import blot_pair

__all__ = ["blot_and_flag_tile_with_options"]


def _median_pair(median: Any) -> tuple[Any, Any]:
    """The median frame and median error a median task wrote (it returns both)."""
    while isinstance(median, list):
        median = median[0]
    return median[0], median[1]


def _blot_with_error(pixel_map: PixelMap, box: tuple[int, int, int, int], median: Any,
                     median_shape: tuple[int, int], allowed: tuple[int, int, int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Blot of the median and of the median error on detector pixels ``box`` (spec mode's
    :func:`~daskod.spec._kernels.blot_pair`), reading only the planned window."""
    pixmap = pixel_map.evaluate(*box)
    window = median_window_for(pixmap, median_shape)
    if window is None:
        empty = np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
        return empty, empty.copy()
    y0, y1, x0, x1 = window
    if not (allowed[0] <= y0 and y1 <= allowed[1] and allowed[2] <= x0 and x1 <= allowed[3]):
        msg = (f"The blot of detector box {box} needs median window {window}, outside the "
               f"planned {allowed}; this is a bug in daskod's planning.")
        raise RuntimeError(msg)
    frame, frame_err = _median_pair(median)
    return blot_pair(np.asarray(frame[y0:y1, x0:x1]), np.asarray(frame_err[y0:y1, x0:x1]),
                     pixmap, median_shape, origin=(y0, x0))


def blot_and_flag_tile_with_options(
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
    noise_model: str,
    source_noise: float,
    usable: UsableRule | None = None,
) -> tuple[np.ndarray, ...]:
    """The resampled flag rule on one detector tile with another noise term:
    ``"exposure"`` the exposure's ERR (the reference), ``"median"`` the blotted median error
    (``median`` then holds the median frame and the median error), ``"local"``
    (:func:`~daskod.flag._kernels.local_error`); ``source_noise`` > 0 adds that fraction of
    the blot in quadrature (:func:`~daskod.flag._kernels.with_source_noise`).

    Returns
    -------
    dq : ndarray of uint32
        The tile's new DQ.
    count : ndarray of int64, shape (1,)
    usable : ndarray of int64, shape (1,)
        Only with ``usable`` (:func:`~daskod.flag._graph.update_dq_block`).
    """
    box = halo_box(tile, shape, FLAG_HALO)
    y0, y1, x0, x1 = box
    sci = np.asarray(array_of(sources["sci"])[y0:y1, x0:x1])
    err = np.asarray(array_of(sources["err"])[y0:y1, x0:x1])
    if noise_model == "median":
        blot, noise = _blot_with_error(pixel_map, box, median, median_shape, window)
    else:
        blot = blot_region(pixel_map, box, median, median_shape, allowed=window)
        noise = err
        if noise_model == "local":
            var = sources.get("var_rnoise")
            var = None if var is None else np.asarray(array_of(var)[y0:y1, x0:x1])
            noise = local_error(err, var)
    if source_noise:
        noise = with_source_noise(noise, blot, source_noise)
    cr = flag_resampled_crs(sci, noise, blot, snr1=snr[0], snr2=snr[1], scale1=scale[0],
                            scale2=scale[1], backg=backg)
    crop = np.s_[tile.y0 - y0:tile.y1 - y0, tile.x0 - x0:tile.x1 - x0]
    return update_dq_block(sources, tile.slices, cr[crop],
                           {"sci": sci[crop], "err": err[crop]}, usable)
