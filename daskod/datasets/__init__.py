"""Seeded simulators with ground truth, for tests, the demo, benchmarks and notebooks."""

from daskod.datasets._imaging import SimulatedImaging, make_dithered_imaging
from daskod.datasets._simple import make_simple_exposures
from daskod.datasets._wcs import make_detector_wcs, make_simple_wcs

__all__ = [
    "make_dithered_imaging",
    "SimulatedImaging",
    "make_detector_wcs",
    "make_simple_wcs",
    "make_simple_exposures",
]
