"""Seeded simulators with ground truth, for tests, the demo, benchmarks and notebooks."""

from daskod.datasets._cubes import SimulatedCube, make_coron_cube, make_tso_cube
from daskod.datasets._ifu import IFUSimulation, make_ifu_exposures
from daskod.datasets._imaging import SimulatedImaging, make_dithered_imaging
from daskod.datasets._jwst_files import write_cal_files, write_cube_file
from daskod.datasets._simple import make_simple_exposures
from daskod.datasets._wcs import make_detector_wcs, make_simple_wcs

__all__ = [
    "make_dithered_imaging",
    "SimulatedImaging",
    "make_detector_wcs",
    "make_simple_wcs",
    "make_simple_exposures",
    "make_tso_cube",
    "make_coron_cube",
    "SimulatedCube",
    "write_cal_files",
    "write_cube_file",
    "make_ifu_exposures",
    "IFUSimulation",
]
