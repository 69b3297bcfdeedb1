"""Geometry: the output frame, coarse pixel maps, and tile/exposure overlap tables."""

from daskod.geometry._frame import OutputFrame, compute_output_frame, make_tan_wcs
from daskod.geometry._pixel_map import PixelMap, compute_pixel_map, evaluate_wcs_pixel_map
from daskod.geometry._tiles import Tiling

__all__ = [
    "OutputFrame",
    "compute_output_frame",
    "make_tan_wcs",
    "PixelMap",
    "compute_pixel_map",
    "evaluate_wcs_pixel_map",
    "Tiling",
]
