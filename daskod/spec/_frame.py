"""Which rectified frame a source gets, as the reference's ``ResampleSpec`` chooses it."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod._exceptions import WCSError
from daskod.geometry._spec_frame import SpecFrame, nirspec_output_frame, select_reference_slit
from daskod.geometry._spec_frame_interp import interpolated_output_frame

__all__ = ["build_spec_frame", "check_frame_inputs", "is_sky_like"]


def is_sky_like(frame: Any) -> bool:
    """True when a coordinate frame has angular (deg or arcsec) units (the reference's test)."""
    import astropy.units as u

    units = getattr(frame, "unit", None)
    if units is None:
        return False
    return u.deg in tuple(units) or u.arcsec in tuple(units)


def check_frame_inputs(exposures: list[Any]) -> None:
    """The cheap checks of :func:`build_spec_frame` (no WCS evaluated, no pixel read).

    Raises
    ------
    WCSError
        The first input's WCS has no sky output frame (the reference's NIRSpec lamp mode),
        or a non-NIRSpec first input has no ``meta["dispersion_direction"]`` of 1 or 2.
    """
    first = exposures[0]
    if first.wcs is None or not is_sky_like(first.wcs.output_frame):
        msg = (f"Exposure {first.name!r}: its WCS has no sky output frame; spectroscopic "
               "outlier detection needs detector -> (ra, dec, wavelength) (lamp exposures "
               "are not supported).")
        raise WCSError(msg, exposure=first.name)
    if str(first.instrument or "").upper() != "NIRSPEC":
        disp = first.meta.get("dispersion_direction")
        if disp not in (1, 2):
            msg = (f"Exposure {first.name!r}: meta['dispersion_direction'] must be 1 or 2 "
                   f"(the product's DISPAXIS), got {disp!r}.")
            raise WCSError(msg, exposure=first.name)


def build_spec_frame(exposures: list[Any], *, bad_mask: int,
                     pixel_scale_ratio: float = 1.0) -> SpecFrame:
    """The output frame of one source's inputs.

    NIRSpec (``Exposure.instrument``) gets :func:`nirspec_output_frame` (the reference slit
    is the first with more than 100 good pixels; slits are read one at a time until found);
    any other instrument :func:`interpolated_output_frame` with the first input's
    ``meta["dispersion_direction"]`` and ``meta["exp_type"]``. Non-sky frames (the
    reference's NIRSpec lamp mode) are refused (:func:`check_frame_inputs`).
    """
    check_frame_inputs(exposures)
    first = exposures[0]
    wcs_list = [e.wcs for e in exposures]
    if str(first.instrument or "").upper() != "NIRSPEC":
        disp = first.meta.get("dispersion_direction")
        return interpolated_output_frame(wcs_list, dispersion_axis=int(disp),
                                         exp_type=str(first.meta.get("exp_type", "")),
                                         pixel_scale_ratio=pixel_scale_ratio)
    pairs = ((e.sci[...], e.dq[...]) for e in exposures)
    k = select_reference_slit(pairs, bad_mask)
    return nirspec_output_frame(wcs_list, k, np.asarray(exposures[k].sci[...]),
                                pixel_scale_ratio=pixel_scale_ratio)
