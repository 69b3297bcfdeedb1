"""The rectified output frame for non-NIRSpec slit spectra (MIRI LRS fixed slit), as the
reference builds it (jwst 3.0 ``ResampleSpec.build_interpolated_output_wcs``, pixel scale
ratio 1).

What the reference does (reproduced with the same astropy models):

1. Every input's WCS is evaluated on the grid of its bounding box. Its wavelengths are the
   NaN-medians along the spatial axis (per detector row when the dispersion runs along y),
   NaNs dropped.
2. The *first* input sets the spatial sampling: at the grid row (or column) index
   ``int((bbox_hi - bbox_lo) / 2)`` of the dispersion axis (an index into the grid, not a
   detector coordinate), the sky positions are projected on a tangent plane at their mean;
   two ``LinearLSQFitter`` lines give tangent x and y per output pixel; the steeper one is
   the spatial axis.
3. Wavelengths: the first input's values, plus each later input's values *outside* the range
   gathered so far; sorted, ``np.unique``; flipped (descending) for ``MIR_LRS-FIXEDSLIT`` so
   the output runs the same way as the detector. A ``Tabular1D`` pixel -> wavelength
   (linear extrapolation past the ends) with an explicit inverse.
4. The tangent point is the middle of the RA and Dec ranges of all finite input pixels (the
   first input's mean position when there is one input); the spatial size is
   ``ceil(extent / |slope|)`` over the tangent extent of every input pixel, centred.
5. Output shape ``(n_wavelengths, n_spatial)`` for dispersion along y, bounding box
   ``(-0.5, n - 0.5)`` on both axes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from daskod.geometry._spec_frame import SpecFrame, spatial_extent

__all__ = ["interpolated_output_frame", "wrap_ra"]


def wrap_ra(ra: np.ndarray) -> np.ndarray:
    """Finite RA values put on one side of 0/360 (the reference's ``wrap_ra``)."""
    values = np.array(ra)
    values = values[np.isfinite(values)].copy()
    median = np.nanmedian(values)
    wrap = np.fabs(values - median) > 180.0
    if wrap.any() and median < 180:
        values[wrap] -= 360.0
    if wrap.any() and median > 180:
        values[wrap] += 360.0
    return values


def interpolated_output_frame(wcs_list: list[Any], *, dispersion_axis: int,
                              exp_type: str = "", pixel_scale_ratio: float = 1.0
                              ) -> SpecFrame:
    """The reference's interpolated output frame for one source.

    Parameters
    ----------
    wcs_list : list of gwcs.WCS
        Every input's ``detector -> world (ra, dec, wavelength)`` WCS, in input order.
    dispersion_axis : int
        The inputs' ``DISPAXIS`` (1: along x, 2: along y, as ``meta.wcsinfo``).
    exp_type : str
        The first input's exposure type (``MIR_LRS-FIXEDSLIT`` flips the wavelengths).
    pixel_scale_ratio : float
        Output pixels per input pixel along the slit (1 in outlier detection).

    Returns
    -------
    SpecFrame
    """
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import (
        Linear1D,
        Mapping,
        Pix2Sky_TAN,
        RotateNative2Celestial,
        Tabular1D,
    )
    from gwcs import WCS, wcstools
    from gwcs import coordinate_frames as cf

    spectral = dispersion_axis - 1
    spatial = spectral ^ 1
    all_wave = np.array([])
    all_ra, all_dec = [], []
    for k, wcs in enumerate(wcs_list):
        bbox = wcs.bounding_box
        ra, dec, lam = np.array(wcs(*wcstools.grid_from_bounding_box(bbox)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            waves = np.nanmedian(lam, axis=spectral)
        waves = waves[~np.isnan(waves)]
        if k == 0:
            all_wave = np.append(all_wave, waves)
            centre = int((bbox[spectral][1] - bbox[spectral][0]) / 2)
            ra_slice = ra[centre, :] if spatial == 0 else ra[:, centre]
            dec_slice = dec[centre, :] if spatial == 0 else dec[:, centre]
            ra_centre = np.nanmean(wrap_ra(ra_slice))
            dec_centre = np.nanmean(dec_slice)
            first_tan = Pix2Sky_TAN() | RotateNative2Celestial(ra_centre, dec_centre, 180)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                x_tan, y_tan = first_tan.inverse(ra, dec)
            if spectral == 0:
                x_line, y_line = x_tan.T[centre], y_tan.T[centre]
            else:
                x_line, y_line = x_tan[centre], y_tan[centre]
            x_line = x_line[~np.isnan(x_line)]
            y_line = y_line[~np.isnan(y_line)]
            fitter = LinearLSQFitter()
            x_idx = np.linspace(0, x_line.shape[0] * pixel_scale_ratio, x_line.shape[0],
                                endpoint=False)
            y_idx = np.linspace(0, y_line.shape[0] * pixel_scale_ratio, y_line.shape[0],
                                endpoint=False)
            to_xtan = fitter(Linear1D(), x_idx, x_line)
            to_ytan = fitter(Linear1D(), y_idx, y_line)
        all_ra = np.append(all_ra, ra[~np.isnan(ra)].flatten())
        all_dec = np.append(all_dec, dec[~np.isnan(dec)].flatten())
        lo, hi = np.min(all_wave), np.max(all_wave)
        if np.min(waves) < lo:
            all_wave = np.append(all_wave, waves[waves < lo])
        if np.max(waves) > hi:
            all_wave = np.append(all_wave, waves[waves > hi])
    all_wave = np.sort(all_wave[~np.isnan(all_wave)], axis=None)
    waves = np.unique(all_wave)
    if exp_type == "MIR_LRS-FIXEDSLIT":
        waves = np.flip(waves, axis=None)
    n_wave = waves.shape[0]
    to_lam = Tabular1D(points=np.arange(0, n_wave, 1), lookup_table=waves, bounds_error=False,
                       fill_value=None, name="pix2wavelength")
    points, table = waves, np.arange(0, n_wave, 1)
    if not np.all(np.diff(waves) > 0):
        points, table = points[::-1], table[::-1]
    to_lam.inverse = Tabular1D(points=points, lookup_table=table, bounds_error=False,
                               fill_value=None, name="wavelength2pix")
    mapping = Mapping((spatial, spatial, spectral))
    swap_xy = abs(to_xtan.slope) < abs(to_ytan.slope)
    if swap_xy:
        mapping.inverse = Mapping((2, 1) if spatial else (1, 2))
    all_ra = wrap_ra(np.hstack(all_ra))
    all_dec = np.hstack(all_dec)
    ra_final = (np.amax(all_ra) + np.amin(all_ra)) / 2.0
    dec_final = (np.amax(all_dec) + np.amin(all_dec)) / 2.0
    if len(wcs_list) == 1:
        ra_final, dec_final = ra_centre, dec_centre
    undist2sky = Pix2Sky_TAN() | RotateNative2Celestial(ra_final, dec_final, 180)
    xmin, xmax, ymin, ymax = spatial_extent(wcs_list, undist2sky.inverse)
    slope_x, sign_x = np.abs(to_xtan.slope), np.sign(to_xtan.slope)
    slope_y, sign_y = np.abs(to_ytan.slope), np.sign(to_ytan.slope)
    if swap_xy:
        n_spatial = int(np.ceil(np.abs(ymax - ymin) / slope_y))
    else:
        n_spatial = int(np.ceil(np.abs(xmax - xmin) / slope_x))
    to_ytan.intercept = -sign_y * 0.5 * (n_spatial - 1) * slope_y
    to_xtan.intercept = -sign_x * 0.5 * (n_spatial - 1) * slope_x
    transform = mapping | (to_xtan & to_ytan | undist2sky) & to_lam
    det = cf.Frame2D(name="detector", axes_order=(0, 1))
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,),
                            axes_names=("wavelength",))
    wcs = WCS([(det, transform), (cf.CompositeFrame([sky, spec], name="world"), None)])
    size = [0, 0]
    size[spectral] = int(np.ceil(n_wave))
    size[spatial] = n_spatial
    shape = (size[1], size[0])
    wcs.array_shape = shape
    wcs.pixel_shape = tuple(size)
    wcs.bounding_box = ((-0.5, size[0] - 0.5), (-0.5, size[1] - 0.5))
    return SpecFrame(wcs=wcs, shape=shape, kind="interpolated")
