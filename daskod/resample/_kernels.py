"""Drizzle one output tile (pure numpy + the drizzle C library; no Dask)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["KERNEL_PAD", "drizzle_tile", "drizzle_tile_with_error", "drizzle_tile_with_variance",
           "pad_for_kernel"]

#: Output pixels of padding per kernel that make tile-by-tile drizzling equal to a
#: whole-frame run (measured: notes/resampling.md section 2.2; doubled for distortion).
KERNEL_PAD = {"square": 4, "point": 4, "turbo": 4, "gaussian": 8, "lanczos2": 8, "lanczos3": 8}


def pad_for_kernel(kernel: str) -> int:
    """Tile padding (output pixels) for a drizzle kernel."""
    try:
        return KERNEL_PAD[kernel]
    except KeyError:
        msg = f"kernel must be one of {sorted(KERNEL_PAD)}, got {kernel!r}."
        raise ValueError(msg) from None


def drizzle_tile(
    inputs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, float]],
    out_shape: tuple[int, int],
    *,
    kernel: str = "square",
    pixfrac: float = 1.0,
    fillval: str | float = "NAN",
) -> tuple[np.ndarray, np.ndarray]:
    """Drizzle several input sub-images onto one (padded) output tile.

    Parameters
    ----------
    inputs : iterable of (data, weight, pixmap, exptime)
        ``data`` and ``weight`` are 2-D float32 sub-images, ``pixmap`` their
        ``(ny, nx, 2)`` map into *tile* pixel coordinates, ``exptime`` > 0.
    out_shape : tuple of int
        Padded tile shape.
    kernel, pixfrac, fillval
        As the reference's drizzle parameters.

    Returns
    -------
    img, wht : ndarray of float32
        Weighted-mean image (``fillval`` where nothing landed) and summed weight.
    """
    from drizzle.resample import Drizzle

    driz = Drizzle(kernel=kernel, fillval=fillval, out_shape=out_shape, disable_ctx=True)
    for data, weight, pixmap, exptime in inputs:
        driz.add_image(
            np.ascontiguousarray(data, dtype=np.float32),
            exptime=float(exptime) if exptime > 0 else 1.0,
            pixmap=pixmap,
            weight_map=np.ascontiguousarray(weight, dtype=np.float32),
            wht_scale=1.0,
            pixfrac=pixfrac,
            in_units="cps",
            iscale=1.0,
        )
    return driz.out_img, driz.out_wht


def drizzle_tile_with_error(
    inputs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float,
                           tuple[int, int, int, int] | None]],
    out_shape: tuple[int, int],
    *,
    kernel: str = "square",
    pixfrac: float = 1.0,
    fillval: str | float = "NAN",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drizzle data and their errors onto one (padded) output tile, as the reference's
    ``compute_err="driz_err"`` (spectroscopic mode).

    The errors go through a second, independent drizzle with the same pixel map, weights,
    kernel, ``pixfrac`` and ``fillval``: the result is the weighted *linear* mean of the
    errors (not a variance propagation), ``fillval`` where nothing landed. The reference
    then divides it by ``1 / sqrt(pixel_scale_ratio)``, which is 1 in outlier detection.

    Parameters
    ----------
    inputs : iterable of (data, err, weight, pixmap, exptime, pixel_range)
        2-D float32 sub-images, their ``(ny, nx, 2)`` map into *tile* pixel coordinates,
        ``exptime`` > 0, and ``pixel_range`` = ``(xmin, xmax, ymin, ymax)`` (inclusive,
        sub-image coordinates; None: all) of the pixels to drizzle: the reference limits
        each input to its WCS bounding box (``resample_range``). Do not crop the sub-image
        to that range instead: drizzle places a pixel's corners by interpolating the pixel
        map between neighbouring pixel centres (extrapolating at the array's edge), and the
        reference's neighbours just outside the bounding box are NaN, which drops or moves
        the border pixels; a sub-image must keep one pixel around what it drizzles.
    out_shape : tuple of int
        Padded tile shape.
    kernel, pixfrac, fillval
        As the reference's drizzle parameters.

    Returns
    -------
    img, wht, err : ndarray of float32
        Weighted-mean data, summed weight (of the data drizzle) and weighted-mean error.
    """
    from drizzle.resample import Drizzle

    driz = Drizzle(kernel=kernel, fillval=fillval, out_shape=out_shape, disable_ctx=True)
    driz_err = Drizzle(kernel=kernel, fillval=fillval, out_shape=out_shape, disable_ctx=True)
    for data, err, weight, pixmap, exptime, pixel_range in inputs:
        if pixel_range is not None:
            xmin, xmax, ymin, ymax = pixel_range
            if xmin > xmax or ymin > ymax:
                continue
        kwargs = {"exptime": float(exptime) if exptime > 0 else 1.0, "pixmap": pixmap,
                  "weight_map": np.ascontiguousarray(weight, dtype=np.float32),
                  "wht_scale": 1.0, "pixfrac": pixfrac, "in_units": "cps", "iscale": 1.0,
                  "pixel_scale_ratio": 1.0}
        if pixel_range is not None:
            kwargs.update(xmin=int(xmin), xmax=int(xmax), ymin=int(ymin), ymax=int(ymax))
        driz.add_image(np.ascontiguousarray(data, dtype=np.float32), **kwargs)
        driz_err.add_image(np.ascontiguousarray(err, dtype=np.float32), **kwargs)
    return driz.out_img, driz.out_wht, driz_err.out_img


def drizzle_tile_with_variance(
    inputs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]],
    out_shape: tuple[int, int],
    *,
    kernel: str = "square",
    pixfrac: float = 1.0,
    fillval: str | float = "NAN",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drizzle data onto one (padded) output tile and propagate their variance.

    One drizzle pass: the variance goes through drizzle's squared-weight co-add
    (``data2``), ``sum((a w)^2 v) / sum(a w)^2`` per output pixel, the variance of the
    drizzled weighted mean (an output pixel that averages several input pixels is less
    noisy than each). The image and weight are those of :func:`drizzle_tile`.

    Parameters
    ----------
    inputs : iterable of (data, variance, weight, pixmap, exptime)
        As :func:`drizzle_tile`, with each sub-image's variance.
    out_shape : tuple of int
        Padded tile shape.
    kernel, pixfrac, fillval
        As the reference's drizzle parameters.

    Returns
    -------
    img, wht, var : ndarray of float32
    """
    from drizzle.resample import Drizzle

    driz = Drizzle(kernel=kernel, fillval=fillval, fillval2=fillval, out_shape=out_shape,
                   disable_ctx=True, out_img2=[np.zeros(out_shape, dtype=np.float32)])
    for data, variance, weight, pixmap, exptime in inputs:
        driz.add_image(
            np.ascontiguousarray(data, dtype=np.float32),
            exptime=float(exptime) if exptime > 0 else 1.0,
            pixmap=pixmap,
            data2=[np.ascontiguousarray(variance, dtype=np.float32)],
            weight_map=np.ascontiguousarray(weight, dtype=np.float32),
            wht_scale=1.0,
            pixfrac=pixfrac,
            in_units="cps",
            iscale=1.0,
        )
    return driz.out_img, driz.out_wht, driz.out_img2[0]
