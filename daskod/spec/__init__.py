"""Slit spectroscopy (the reference's ``mode="spec"``): NIRSpec fixed slit / MOS and MIRI LRS.

The pieces, each usable alone: the output frame (:mod:`daskod.geometry._spec_frame`,
:mod:`daskod.geometry._spec_frame_interp`), exact pixel maps
(:mod:`daskod.geometry._spec_pixel_map`), kernels (:mod:`daskod.spec._kernels`), tile work
units for the engine (:mod:`daskod.spec._tasks`), a whole-frame prototype (the oracle,
:func:`detect_spec_outliers_dense`) and a sequential tile driver
(:func:`detect_spec_outliers_tiled`). JWST products: :mod:`daskod.io._jwst_spec`.
"""

from daskod.spec._dense import SpecDenseResult, detect_spec_outliers_dense, group_indices
from daskod.spec._frame import build_spec_frame
from daskod.spec._tiled import detect_spec_outliers_tiled

__all__ = ["detect_spec_outliers_dense", "detect_spec_outliers_tiled", "SpecDenseResult",
           "build_spec_frame", "group_indices"]
