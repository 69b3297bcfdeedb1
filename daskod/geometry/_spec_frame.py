"""The rectified output frame of slit spectroscopy (spatial x wavelength), as the reference
builds it (jwst 3.0 ``ResampleSpec.build_nirspec_output_wcs``, pixel scale ratio 1).

What the reference does, step by step (reproduced here with the same astropy models, so the
frame, its shape and its transforms evaluate to the same numbers):

1. The *reference slit* is the first input with more than 100 good pixels (finite, non-zero,
   DQ good under ``good_bits``), else the first; the *wavelength reference* is always the
   first input's WCS (a quirk: the two may differ).
2. Its data minus their minimum, NaN where the slit coordinates or the data are not finite,
   sigma-clipped at 100 sigma, weight the mean slit ``y`` (``wmean_s``); ``wmean_l`` is the
   plain NaN-mean wavelength. The fiducial (tangent point) is ``slit -> world(0, wmean_s,
   wmean_l)``.
3. The sky positions of the reference slit's column ``int(mean of the x bounding box)``
   (an index into the bounding-box grid) are projected on that tangent plane; two straight
   lines (``LinearLSQFitter`` of ``Linear1D``) give tangent x and y per output row; the
   steeper one is the spatial axis (``swap_xy``).
4. Wavelengths: the per-column NaN-medians (columns with any finite wavelength) of each input,
   sorted; the first input's grid is extended by the other inputs' values outside its range,
   inputs taken in order of their overlap with the current range; points closer than a tenth
   of the smallest step of the *first* input's grid (a quirk: later grids never lower it)
   are dropped.
5. Rows: ``ny = ceil(extent / |slope|) + 1`` over the tangent extent of every input pixel,
   intercepts chosen so the data sit in the middle.
6. The wavelength table gets half a pixel extrapolated on the left and, by a quirk, a far
   point on the right: ``lam[-2] + step * (n - 0.5)`` instead of ``lam[-1] + step / 2``, so
   wavelengths past the last column centre compress into ``(n - 1, n - 0.5]``.
7. A ``slit_frame`` is kept: ``x_slit = 0`` and ``y_slit`` tabulated per output row through
   the reference slit's world -> slit transform.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SpecFrame", "nirspec_output_frame", "select_reference_slit",
           "nirspec_sampling_wavelengths", "spatial_extent"]

#: A reference slit needs more than this many good pixels (the reference's rule).
MIN_GOOD_PIXELS = 100


@dataclass
class SpecFrame:
    """The rectified output frame of one source.

    Attributes
    ----------
    wcs : gwcs.WCS
        Output pixel ``(x, y)`` -> world ``(ra, dec, wavelength)``; its backward transform
        maps the inputs' world coordinates to output pixels.
    shape : tuple of int
        ``(ny, nx)`` of the median frame.
    kind : str
        ``"nirspec"`` (wavelength along x) or ``"interpolated"``.
    """

    wcs: Any
    shape: tuple[int, int]
    kind: str

    def world_to_pixel(self, *world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output pixel ``(x, y)`` of world coordinates, without the frame's bounding box
        (as the reference's pixel maps)."""
        x, y = self.wcs.backward_transform(*world)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def select_reference_slit(items: list[tuple[Any, Any]], bad_mask: int) -> int:
    """Index of the reference's reference slit: the first of ``(sci, dq)`` pairs with more
    than 100 finite, non-zero, good pixels; 0 if none. Reads one slit at a time."""
    for k, (sci, dq) in enumerate(items):
        sci = np.asarray(sci)
        good = np.isfinite(sci) & (sci != 0) & ((np.asarray(dq) & np.uint32(bad_mask)) == 0)
        if int(np.sum(good)) > MIN_GOOD_PIXELS:
            return k
    return 0


def _grid(wcs: Any) -> np.ndarray:
    from gwcs import wcstools

    return wcstools.grid_from_bounding_box(wcs.bounding_box)


def _world(wcs: Any) -> tuple[np.ndarray, ...]:
    """``(ra, dec, wavelength)`` of every pixel of a WCS's bounding-box grid."""
    return tuple(np.asarray(v) for v in wcs(*_grid(wcs)))


def _column_wavelengths(wcs: Any, world: tuple[np.ndarray, ...] | None = None) -> list[float]:
    lam = (world or _world(wcs))[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return sorted(np.nanmedian(lam[:, np.any(np.isfinite(lam), axis=0)], axis=0))


def nirspec_sampling_wavelengths(wcs_list: list[Any],
                                 worlds: list[tuple[np.ndarray, ...]] | None = None
                                 ) -> list[float]:
    """The output wavelength grid merged from every input (step 4 of the module notes);
    ``worlds`` are the inputs' :func:`_world` when already evaluated."""
    worlds = worlds or [None] * len(wcs_list)
    ref_lam = _column_wavelengths(wcs_list[0], worlds[0])
    lam1, lam2 = ref_lam[0], ref_lam[-1]
    min_delta = np.fabs(np.ediff1d(ref_lam).min())
    others = []
    for wcs, world in zip(wcs_list[1:], worlds[1:], strict=True):
        lam = _column_wavelengths(wcs, world)
        others.append((lam, np.min(lam), np.max(lam)))
    while others:
        overlaps = [min(lam2, hi) - max(lam1, lo) for _, lo, hi in others]
        best = 0
        for k, overlap in enumerate(overlaps):
            if overlap > overlaps[best]:
                best = k
        lam, lo, hi = others.pop(best)
        if hi < lam1:
            ref_lam = lam + ref_lam
            lam1 = lo
        elif lo > lam2:
            ref_lam.extend(lam)
            lam2 = hi
        else:
            arr = np.array(lam)
            if lo < lam1:
                ref_lam = arr[arr < lam1].tolist() + ref_lam
                lam1 = ref_lam[0]
            if hi > lam2:
                ref_lam = ref_lam + arr[arr > lam2].tolist()
                lam2 = ref_lam[-1]
    step = np.fabs(np.ediff1d(ref_lam))
    for i in np.flatnonzero(step < max(0.1 * min_delta, 1e2 * np.finfo(1.0).eps))[::-1]:
        del ref_lam[i]
    return ref_lam


def spatial_extent(wcs_list: list[Any], sky_to_tan: Any,
                   worlds: list[tuple[np.ndarray, ...]] | None = None
                   ) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` on the tangent plane of every input pixel's sky position
    (``worlds``: the inputs' :func:`_world` when already evaluated)."""
    lim_x, lim_y = [np.inf, -np.inf], [np.inf, -np.inf]
    for wcs, world in zip(wcs_list, worlds or [None] * len(wcs_list), strict=True):
        ra, dec, _ = world or _world(wcs)
        good = np.isfinite(ra) & np.isfinite(dec)
        xt, yt = sky_to_tan(ra[good], dec[good])
        for values, lim in ((xt, lim_x), (yt, lim_y)):
            lim[0] = min(lim[0], np.min(values))
            lim[1] = max(lim[1], np.max(values))
    return lim_x[0], lim_x[1], lim_y[0], lim_y[1]


def _fiducial(ref_wcs: Any, ref_data: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted mean slit ``y`` and mean wavelength of the reference slit."""
    from astropy.stats import sigma_clip
    from astropy.utils.exceptions import AstropyUserWarning

    data = np.array(ref_data, dtype=np.asarray(ref_data).dtype, copy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data -= np.nanmin(data)
    d2s = ref_wcs.get_transform(ref_wcs.available_frames[0], "slit_frame")
    _, s, lam = np.array(d2s(*_grid(ref_wcs)))
    good = np.isfinite(s) & np.isfinite(lam) & np.isfinite(data)
    data[~good] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        weights = np.ma.filled(sigma_clip(data, masked=True, sigma=100.0), fill_value=0.0)
    if not np.all(weights == 0.0):
        wmean_s = np.average(s[good], weights=weights[good])
    else:
        wmean_s = np.nanmean(s)
    return wmean_s, np.nanmean(lam)


def _wavelength_table(ref_lam: list[float]) -> Any:
    from astropy.modeling.models import Tabular1D

    ref_lam = list(ref_lam)
    points = list(range(len(ref_lam)))
    if len(points) > 1:
        slope = (ref_lam[1] - ref_lam[0]) / points[1]
        ref_lam.insert(0, -0.5 * slope + ref_lam[0])
        points.insert(0, -0.5)
        slope = (ref_lam[-1] - ref_lam[-2]) / (points[-1] - points[-2])
        ref_lam.append(slope * (points[-1] + 0.5) + ref_lam[-2])   # the reference's quirk
        points.append(points[-1] + 0.5)
    else:
        ref_lam = 3 * ref_lam
        points = [-0.5, 0, 0.5]
    return Tabular1D(points=points, lookup_table=ref_lam, bounds_error=False,
                     fill_value=np.nan)


def nirspec_output_frame(wcs_list: list[Any], ref_index: int, ref_data: np.ndarray, *,
                         pixel_scale_ratio: float = 1.0) -> SpecFrame:
    """The reference's NIRSpec output frame for one source.

    Parameters
    ----------
    wcs_list : list of gwcs.WCS
        Every input slit's WCS (``detector -> slit_frame -> world``), in input order.
    ref_index : int
        The reference slit (:func:`select_reference_slit`).
    ref_data : ndarray
        That slit's SCI array.
    pixel_scale_ratio : float
        Output rows per input row (the reference's outlier detection uses 1).

    Returns
    -------
    SpecFrame
    """
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import (
        Const1D,
        Linear1D,
        Mapping,
        Pix2Sky_TAN,
        RotateNative2Celestial,
        Tabular1D,
    )
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    ref = wcs_list[ref_index]
    frame0 = ref.available_frames[0]
    s2w = ref.get_transform("slit_frame", "world")
    w2s = ref.get_transform("world", "slit_frame")
    wmean_s, wmean_l = _fiducial(ref, ref_data)
    targ_ra, targ_dec, _ = s2w(0, wmean_s, wmean_l)
    bbox = ref.bounding_box
    grid = _grid(ref)
    centre = int(np.mean(bbox, axis=1)[0])
    ra_ref, dec_ref, _ = np.array(ref(grid[0][:, centre], grid[1][:, centre]))
    undist2sky = Pix2Sky_TAN() | RotateNative2Celestial(targ_ra, targ_dec, 180)
    x_tan, y_tan = undist2sky.inverse(ra_ref, dec_ref)
    keep = ~(np.isnan(x_tan) | np.isnan(y_tan))
    x_tan, y_tan = x_tan[keep], y_tan[keep]
    fitter = LinearLSQFitter()
    x_idx = np.linspace(0, x_tan.shape[0] * pixel_scale_ratio, x_tan.shape[0], endpoint=False)
    y_idx = np.linspace(0, y_tan.shape[0] * pixel_scale_ratio, y_tan.shape[0], endpoint=False)
    to_xtan = fitter(Linear1D(), x_idx, x_tan)
    to_ytan = fitter(Linear1D(), y_idx, y_tan)
    swap_xy = abs(to_xtan.slope) < abs(to_ytan.slope)
    # Each input's grid evaluated once, for the wavelengths and the spatial extent.
    worlds = [_world(wcs) for wcs in wcs_list]
    ref_lam = nirspec_sampling_wavelengths(wcs_list, worlds)
    n_lam = len(ref_lam)
    if not n_lam:
        msg = (f"No finite wavelength in the first input's WCS ({frame0} -> world); the "
               "output frame cannot be built.")
        raise ValueError(msg)
    xmin, xmax, ymin, ymax = spatial_extent(wcs_list, undist2sky.inverse, worlds)
    del worlds
    diff_x, diff_y = np.abs(xmax - xmin), np.abs(ymax - ymin)
    slope_x, sign_x = np.abs(to_xtan.slope), np.sign(to_xtan.slope)
    slope_y, sign_y = np.abs(to_ytan.slope), np.sign(to_ytan.slope)
    ny = int(np.ceil(diff_y / slope_y)) + 1 if swap_xy else int(np.ceil(diff_x / slope_x)) + 1
    offset_y = ny / 2 * slope_y - diff_y / 2
    offset_x = ny / 2 * slope_x - diff_x / 2
    to_ytan.intercept = (ymin if sign_y > 0 else ymax) - sign_y * offset_y
    to_xtan.intercept = (xmin if sign_x > 0 else xmax) - sign_x * offset_x
    wavelength = _wavelength_table(ref_lam)
    mapping = Mapping((1, 1, 0))
    mapping.inverse = Mapping((2, 1)) if swap_xy else Mapping((2, 0))
    pix2world = mapping | (to_xtan & to_ytan | undist2sky) & wavelength
    slit_center = w2s(*pix2world(np.full(ny, n_lam // 2), np.arange(ny)))[1]
    slit_t = Tabular1D(points=np.arange(ny), lookup_table=slit_center, bounds_error=False,
                       fill_value=None)
    mapping = Mapping((0, 1, 0))
    inv_mapping = Mapping((2, 1), n_inputs=3)
    inv_mapping.inverse = mapping
    mapping.inverse = inv_mapping
    zero = Const1D(0)
    zero.inverse = zero
    det2slit = mapping | zero & slit_t & wavelength
    slit2world = det2slit.inverse | pix2world
    det = cf.Frame2D(name="detector", axes_order=(0, 1))
    slit_spatial = cf.Frame2D(name="slit_spatial", axes_order=(0, 1), unit=("", ""),
                              axes_names=("x_slit", "y_slit"))
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,),
                            axes_names=("wavelength",))
    slit_frame = cf.CompositeFrame([slit_spatial, spec], name="slit_frame")
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    world = cf.CompositeFrame([sky, spec], name="world")
    wcs = WCS([(det, det2slit), (slit_frame, slit2world), (world, None)])
    wcs.bounding_box = ((-0.5, n_lam - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, n_lam)
    return SpecFrame(wcs=wcs, shape=(ny, n_lam), kind="nirspec")
