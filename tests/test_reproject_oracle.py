"""An independent oracle for the blot: reproject's bilinear interpolation of the median.

``reproject.reproject_interp(order="bilinear")`` maps every detector pixel centre to the
median frame through the two WCSs (its own code path: astropy APE-14 calls, scipy's
map_coordinates) and interpolates there; daskod's blot uses its coarse pixel map and tblot's
bilinear rule. Away from the detector edges and the median's NaN border they must agree to
float32 rounding of the median (measured: 4.5e-7 on values up to 17, i.e. 3e-8 relative).
"""

from __future__ import annotations

import numpy as np
import pytest

import daskod
from daskod import datasets


@pytest.fixture(scope="module")
def rotated_run():
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(96, 112), seed=5, roll_deg=20.0,
                                         wcs_model="telescope")
    return sim, daskod.detect_outliers(sim.exposures, scheduler="synchronous")


def test_blot_equals_reproject_bilinear_away_from_edges(rotated_run):
    from reproject import reproject_interp

    sim, result = rotated_run
    median = np.asarray(result.median, dtype=np.float64)
    peak = float(np.nanmax(np.abs(median)))
    for k, exp in enumerate(sim.exposures):
        blot = np.asarray(result.blot(k), dtype=np.float64)
        oracle, _ = reproject_interp((median, result.median_wcs), exp.wcs, shape_out=exp.shape,
                                     order="bilinear")
        inside = np.zeros(exp.shape, bool)
        inside[3:-3, 3:-3] = True
        both = inside & np.isfinite(blot) & np.isfinite(oracle)
        assert both.sum() > 0.9 * inside.sum(), k  # the comparison covers the detector
        np.testing.assert_allclose(blot[both], oracle[both], rtol=0, atol=1e-6 * peak,
                                   err_msg=f"exposure {k}")
    # Not a tautology: shifting the median by half a pixel breaks the agreement.
    shifted = 0.5 * (median[:, 1:] + median[:, :-1])
    oracle, _ = reproject_interp((shifted, result.median_wcs), sim.exposures[0].wcs,
                                 shape_out=sim.exposures[0].shape, order="bilinear")
    blot = np.asarray(result.blot(0), dtype=np.float64)
    both = np.isfinite(blot) & np.isfinite(oracle)
    assert np.max(np.abs(blot[both] - oracle[both])) > 100 * 1e-6 * peak
