"""Geometry: the output frame, coarse pixel maps, and tile/exposure overlap tables."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OutputFrame": "daskod.geometry._frame",
    "compute_output_frame": "daskod.geometry._frame",
    "make_tan_wcs": "daskod.geometry._frame",
    "PixelMap": "daskod.geometry._pixel_map",
    "compute_pixel_map": "daskod.geometry._pixel_map",
    "evaluate_wcs_pixel_map": "daskod.geometry._pixel_map",
    "Tiling": "daskod.geometry._tiles",
    "SpecFrame": "daskod.geometry._spec_frame",
    "nirspec_output_frame": "daskod.geometry._spec_frame",
    "select_reference_slit": "daskod.geometry._spec_frame",
    "interpolated_output_frame": "daskod.geometry._spec_frame_interp",
    "compute_spectral_pixel_map": "daskod.geometry._spec_pixel_map",
    "input_pixel_range": "daskod.geometry._spec_pixel_map",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        msg = f"module 'daskod.geometry' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
