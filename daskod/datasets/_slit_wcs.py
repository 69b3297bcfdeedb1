"""Slit spectroscopy WCS factories built only from standard astropy models (ASDF-serialisable,
so the reference pipeline reads them back from ``*_cal.fits``), every transform with an
analytic inverse.

NIRSpec-like slit (one cut-out of a ``MultiSlitModel``), frames as the reference's
``assign_wcs`` names them::

    detector (x, y)  ->  slit_frame (x_slit, y_slit, wavelength)  ->  world (ra, dec, wavelength)

- ``wavelength = L(x)``: a piecewise-linear table (``Tabular1D``, NaN outside its nodes, as the
  real WCS is NaN outside the grating's range); a function of the cut-out column only.
- ``y_slit = (y - T(x)) / pps``: the trace centre ``T`` is a polynomial in the cut-out column
  (curvature), ``pps`` detector pixels per slit unit (one MSA shutter pitch, or arcseconds for
  a fixed slit); ``x_slit`` is 0 (the slit's centre across its width).
- slit_frame -> world: slit units scaled to arcsec, rotated by the slit's position angle,
  tangent-plane projected at the slit centre of this exposure (a nod moves that centre along
  the slit).

MIRI LRS-like fixed slit (a whole ``ImageModel``, dispersion along y, ``DISPAXIS = 2``)::

    detector (x, y)  ->  world (ra, dec, wavelength)

with ``wavelength = L(y)`` (a decreasing table: blue at the top), the along-slit offset
``(x - T(y)) * scale`` and a bounding box around the slit's image.
"""

from __future__ import annotations

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models

__all__ = ["make_nirspec_slit_wcs", "make_lrs_wcs", "wavelength_table"]


def wavelength_table(nodes_x: np.ndarray, nodes_lam: np.ndarray) -> models.Tabular1D:
    """``x -> wavelength`` linear interpolation between nodes, NaN outside, with its inverse.

    The nodes must be strictly monotonic in both coordinates.
    """
    nodes_x = np.asarray(nodes_x, dtype=np.float64)
    nodes_lam = np.asarray(nodes_lam, dtype=np.float64)
    forward = models.Tabular1D(points=nodes_x, lookup_table=nodes_lam, bounds_error=False,
                               fill_value=np.nan)
    if nodes_lam[-1] > nodes_lam[0]:
        inverse = models.Tabular1D(points=nodes_lam, lookup_table=nodes_x, bounds_error=False,
                                   fill_value=np.nan)
    else:
        inverse = models.Tabular1D(points=nodes_lam[::-1], lookup_table=nodes_x[::-1],
                                   bounds_error=False, fill_value=np.nan)
    forward.inverse = inverse
    return forward


def _pick(index: int, n_inputs: int) -> models.Mapping:
    return models.Mapping((index,), n_inputs=n_inputs)


def _sky(ra: float, dec: float, angle_deg: float) -> models.Model:
    """Tangent-plane offsets (deg) -> ICRS, rotated by ``angle_deg``."""
    return (models.Rotation2D(angle_deg) | models.Pix2Sky_TAN()
            | models.RotateNative2Celestial(ra, dec, 180.0))


def _frames(spatial_name: str | None):
    from gwcs import coordinate_frames as cf

    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,),
                            axes_names=("wavelength",))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="sky", axes_order=(0, 1),
                            unit=(u.deg, u.deg), axes_names=("lon", "lat"))
    world = cf.CompositeFrame([sky, spec], name="world")
    if spatial_name is None:
        return detector, world, None
    slit_spatial = cf.Frame2D(name="slit_spatial", axes_order=(0, 1), unit=("", ""),
                              axes_names=("x_slit", "y_slit"))
    slit = cf.CompositeFrame([slit_spatial, spec], name=spatial_name)
    return detector, world, slit


def make_nirspec_slit_wcs(
    *,
    shape: tuple[int, int],
    trace: tuple[float, ...],
    pixels_per_unit: float,
    wavelength_nodes: tuple[np.ndarray, np.ndarray],
    ra: float,
    dec: float,
    position_angle: float,
    unit_arcsec: float,
    width_arcsec: float = 0.2,
):
    """A NIRSpec-like slit WCS on a cut-out of ``shape`` (ny, nx).

    Parameters
    ----------
    shape : tuple of int
        Cut-out shape; the bounding box is the whole cut-out, as jwst's ``extract_2d`` sets it.
    trace : tuple of float
        Polynomial coefficients (``c0, c1, ...``) of the trace centre row in cut-out columns.
    pixels_per_unit : float
        Detector rows per slit unit.
    wavelength_nodes : (ndarray, ndarray)
        Cut-out columns and their wavelengths (micron), strictly increasing.
    ra, dec : float
        Sky position (deg) of the slit centre (``x_slit = y_slit = 0``) in this exposure.
    position_angle : float
        Rotation (deg) of the slit's long axis on the tangent plane.
    unit_arcsec, width_arcsec : float
        Arcseconds per slit unit along the slit, and per ``x_slit`` unit across it.

    Returns
    -------
    gwcs.WCS
        Frames ``detector``, ``slit_frame``, ``world``; analytic inverses everywhere.
    """
    from gwcs import WCS

    ny, nx = shape
    lam = wavelength_table(*wavelength_nodes)
    lam_inv = lam.inverse
    tr = models.Polynomial1D(len(trace) - 1, **{f"c{i}": c for i, c in enumerate(trace)})
    rows_off_trace = _pick(1, 2) - (_pick(0, 2) | tr)
    y_slit = rows_off_trace | models.Scale(1.0 / pixels_per_unit)
    zero = models.Const1D(0.0)
    det2slit = models.Mapping((0, 0, 1, 0)) | (zero & y_slit & lam)
    add = _pick(0, 2) + _pick(1, 2)
    det2slit.inverse = (models.Mapping((2, 2, 1))
                        | (lam_inv & (lam_inv.copy() | tr.copy())
                           & models.Scale(pixels_per_unit))
                        | (models.Identity(1) & add))
    to_deg = models.Scale(width_arcsec / 3600.0) & models.Scale(unit_arcsec / 3600.0)
    slit2world = (to_deg | _sky(ra, dec, position_angle)) & models.Identity(1)
    detector, world, slit = _frames("slit_frame")
    wcs = WCS([(detector, det2slit), (slit, slit2world), (world, None)])
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.array_shape = (ny, nx)
    return wcs


def make_lrs_wcs(
    *,
    shape: tuple[int, int],
    bounding_box: tuple[tuple[float, float], tuple[float, float]],
    trace: tuple[float, ...],
    wavelength_nodes: tuple[np.ndarray, np.ndarray],
    ra: float,
    dec: float,
    position_angle: float,
    scale_arcsec: float = 0.11,
):
    """A MIRI LRS-like fixed-slit WCS on a whole detector image of ``shape`` (ny, nx).

    Parameters
    ----------
    shape : tuple of int
        Detector image shape.
    bounding_box : ((x0, x1), (y0, y1))
        The slit's image on the detector (pixel edges); the WCS is NaN outside it.
    trace : tuple of float
        Polynomial coefficients of the slit centre column in detector rows.
    wavelength_nodes : (ndarray, ndarray)
        Detector rows (increasing) and their wavelengths (micron, decreasing).
    ra, dec : float
        Sky position of the slit centre in this exposure.
    position_angle : float
        Rotation (deg) of the slit's long axis (detector x) on the tangent plane.
    scale_arcsec : float
        Arcseconds per detector column along the slit.

    Returns
    -------
    gwcs.WCS
        Frames ``detector`` and ``world``; analytic inverse.
    """
    from gwcs import WCS

    ny, nx = shape
    lam = wavelength_table(*wavelength_nodes)
    lam_inv = lam.inverse
    tr = models.Polynomial1D(len(trace) - 1, **{f"c{i}": c for i, c in enumerate(trace)})
    along = (_pick(0, 2) - (_pick(1, 2) | tr)) | models.Scale(scale_arcsec / 3600.0)
    sky = _sky(ra, dec, position_angle)
    forward = (models.Mapping((0, 1, 1, 1)) | (along & models.Const1D(0.0) & lam)
               | (sky & models.Identity(1)))
    add = _pick(0, 2) + _pick(1, 2)
    forward.inverse = ((sky.inverse & models.Identity(1))
                       | models.Mapping((0, 2, 2))
                       | (models.Scale(3600.0 / scale_arcsec) & lam_inv
                          & (lam_inv.copy() | tr.copy()))
                       | models.Mapping((0, 2, 1))
                       | (add & models.Identity(1)))
    detector, world, _ = _frames(None)
    wcs = WCS([(detector, forward), (world, None)])
    wcs.bounding_box = bounding_box
    wcs.array_shape = (ny, nx)
    return wcs
