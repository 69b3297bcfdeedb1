"""Spectroscopic-mode kernels on one group, one tile or one slit (pure numpy + drizzle).

The reference's spec mode (jwst 3.0 ``outlier_detection/spec.py``) differs from imaging in
the noise term: the ERR arrays are drizzled beside the data (``compute_err="driz_err"``: the
same pixel map, weights, kernel and ``pixfrac``; a weighted *linear* mean of the errors),
masked with the data's weight threshold, NaN-median-combined into ``median_err``, blotted
beside the median, and the *blotted median error* replaces each exposure's own ERR in the
flag rule. Without resampling, ``median_err`` is the NaN-median of the exposures' own ERR
(masked like the data by each exposure's weight threshold) and the rule is
``|SCI - median| > snr1 * median_err``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.blot._kernels import blot_tile, median_window_for
from daskod.flag._kernels import flag_crs, flag_resampled_crs
from daskod.geometry._spec_pixel_map import input_pixel_range
from daskod.resample._kernels import drizzle_tile_with_error
from daskod.resample._weights import build_driz_weight

__all__ = ["SpecInput", "drizzle_group_with_error", "mask_below_threshold",
           "blot_pair", "flag_spec_resampled", "flag_spec_unresampled"]


class SpecInput:
    """What the drizzle of one slit needs, already read (arrays of the whole slit).

    ``pixel_range`` is the reference's ``resample_range`` of the WCS bounding box
    (inclusive ``xmin, xmax, ymin, ymax``); ``sky`` the level subtracted before drizzling.
    """

    __slots__ = ("dq", "err", "exposure_time", "pixel_range", "sci", "sky", "var_rnoise")

    def __init__(self, sci: np.ndarray, err: np.ndarray, dq: np.ndarray,
                 var_rnoise: np.ndarray | None, *, exposure_time: float, sky: float,
                 pixel_range: tuple[int, int, int, int]) -> None:
        self.sci, self.err, self.dq, self.var_rnoise = sci, err, dq, var_rnoise
        self.exposure_time, self.sky, self.pixel_range = exposure_time, sky, pixel_range

    @classmethod
    def from_exposure(cls, exp: Any) -> SpecInput:
        """Read an :class:`~daskod.Exposure` whole (slits are small)."""
        var = None if exp.var_rnoise is None else np.asarray(exp.var_rnoise[...])
        bbox = getattr(exp.wcs, "bounding_box", None) if exp.wcs is not None else None
        return cls(np.asarray(exp.sci[...]), np.asarray(exp.err[...]),
                   np.asarray(exp.dq[...]), var, exposure_time=float(exp.exposure_time),
                   sky=exp.sky_to_subtract(),
                   pixel_range=input_pixel_range(bbox, exp.shape))


def drizzle_group_with_error(
    inputs: list[SpecInput], pixmaps: list[np.ndarray], out_shape: tuple[int, int], *,
    weight_type: str, bad_mask: int, kernel: str, pixfrac: float, fillval: str | float,
    origin: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drizzle the data and errors of one group (its slits in order) onto ``out_shape``.

    ``pixmaps`` are the members' full pixel maps (whole-frame coordinates); ``origin`` is the
    ``(y0, x0)`` of the output box in the frame (a padded tile), so the same function serves
    a whole frame and a tile. Each slit is drizzled whole, limited to its ``pixel_range``.

    Returns
    -------
    img, wht, err : ndarray of float32
    """
    prepared = []
    for inp, pixmap in zip(inputs, pixmaps, strict=True):
        weight = build_driz_weight(inp.dq, weight_type=weight_type, bad_mask=bad_mask,
                                   var_rnoise=inp.var_rnoise, exposure_time=inp.exposure_time)
        data = inp.sci.astype(np.float32, copy=False)
        if inp.sky:
            data = data - np.float32(inp.sky)
        local = np.array(pixmap, dtype=np.float64, copy=True)
        local[..., 0] -= origin[1]
        local[..., 1] -= origin[0]
        prepared.append((data, inp.err, weight, local, inp.exposure_time, inp.pixel_range))
    return drizzle_tile_with_error(prepared, out_shape, kernel=kernel, pixfrac=pixfrac,
                                   fillval=fillval)


def mask_below_threshold(img: np.ndarray, err: np.ndarray, wht: np.ndarray,
                         threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """NaN in the drizzled data and errors where the weight is below the group's threshold
    (nothing when the threshold is NaN, as ``w < NaN`` is False)."""
    low = np.asarray(wht) < threshold
    img = np.array(img, dtype=np.float32, copy=True)
    err = np.array(err, dtype=np.float32, copy=True)
    img[low] = np.nan
    err[low] = np.nan
    return img, err


def blot_pair(median: np.ndarray, median_err: np.ndarray, pixmap: np.ndarray,
              median_shape: tuple[int, int], origin: tuple[int, int] = (0, 0)
              ) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear blot of the median and of ``median_err`` (windows of the frame starting at
    ``origin``) onto the detector pixels of ``pixmap`` (whole-frame coordinates); NaN
    outside the frame and where the map is NaN."""
    window = median_window_for(pixmap, median_shape)
    if window is None:
        empty = np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
        return empty, empty.copy()
    y0, y1, x0, x1 = window
    oy, ox = origin
    sl = np.s_[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    blot = blot_tile(np.asarray(median[sl]), pixmap, (y0, x0), median_shape)
    blot_err = blot_tile(np.asarray(median_err[sl]), pixmap, (y0, x0), median_shape)
    return blot, blot_err


def flag_spec_resampled(sci: np.ndarray, blot: np.ndarray, blot_err: np.ndarray, *,
                        snr: tuple[float, float], scale: tuple[float, float],
                        backg: float) -> np.ndarray:
    """The resampled rule with the blotted median error as the noise term."""
    return flag_resampled_crs(sci, blot_err, blot, snr1=snr[0], snr2=snr[1], scale1=scale[0],
                              scale2=scale[1], backg=backg)


def flag_spec_unresampled(sci: np.ndarray, median: np.ndarray, median_err: np.ndarray, *,
                          snr1: float) -> np.ndarray:
    """Without resampling: ``|SCI - median| > snr1 * nan_to_num(median_err)``."""
    return flag_crs(sci, median_err, median, snr1=snr1)
