"""Seeded simulators with ground truth, for tests, the demo, benchmarks and notebooks."""

from daskod.datasets._cubes import SimulatedCube, make_coron_cube, make_tso_cube
from daskod.datasets._ifu import IFUSimulation, make_ifu_exposures
from daskod.datasets._imaging import SimulatedImaging, make_dithered_imaging
from daskod.datasets._imaging_truth import PIXEL_KINDS
from daskod.datasets._jwst_files import write_cal_files, write_cube_file, write_ifu_files
from daskod.datasets._lrs import make_lrs_exposures
from daskod.datasets._scoring import ExposureScore, score_against_truth, score_exposure
from daskod.datasets._simple import make_simple_exposures
from daskod.datasets._slit_wcs import make_lrs_wcs, make_nirspec_slit_wcs
from daskod.datasets._slits import SlitSimulation, SpecProduct, make_nirspec_slits
from daskod.datasets._spec_files import run_reference_spec, write_spec_cal_files
from daskod.datasets._spectra import DetectorNoise
from daskod.datasets._wcs import (
    detector_wcsinfo,
    make_detector_wcs,
    make_simple_wcs,
    make_telescope_wcs,
)

__all__ = [
    "make_dithered_imaging",
    "SimulatedImaging",
    "PIXEL_KINDS",
    "make_detector_wcs",
    "make_simple_wcs",
    "make_simple_exposures",
    "make_tso_cube",
    "make_coron_cube",
    "SimulatedCube",
    "write_cal_files",
    "write_cube_file",
    "write_ifu_files",
    "make_telescope_wcs",
    "detector_wcsinfo",
    "make_ifu_exposures",
    "IFUSimulation",
    "make_nirspec_slits",
    "make_lrs_exposures",
    "SlitSimulation",
    "SpecProduct",
    "DetectorNoise",
    "make_nirspec_slit_wcs",
    "make_lrs_wcs",
    "write_spec_cal_files",
    "run_reference_spec",
    "score_against_truth",
    "score_exposure",
    "ExposureScore",
]
