"""daskod's flags and intermediate products equal the real reference's (jwst 3.0.0).

The reference runs in its own environment (see ``reference_python`` in conftest.py); daskod
runs through ``daskod run`` on the same files. New-outlier masks ((DQ & 16) set, not set
before) must be identical: Jaccard 1.000.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _parity import CASES, compare_flags

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CASE = {c.name: c for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_new_outliers_identical_to_the_reference(parity, case):
    ref = parity.reference(f"run:{case.name}")
    written = parity.written[case.scene]
    outdir = parity.daskod(case)
    result = compare_flags(written["files"], os.path.join(parity.root, "reference", case.name),
                           outdir)
    counts = [(r["input"], r["reference"], r["daskod"]) for r in result["rows"]]
    print(f"{case.name}: Jaccard {result['jaccard']:.4f} ({result['shared']} shared of "
          f"{result['union']}); per input (reference, daskod): {counts}; reference "
          f"{ref['seconds']:.2f} s")
    assert result["union"] > 0, "the case flags nothing: it would prove nothing"
    mismatched = [r for r in result["rows"] if r["only_reference"] or r["only_daskod"]]
    assert result["jaccard"] == 1.0, mismatched


def test_tso_scene_takes_the_nan_window_branch(parity):
    """The TSO scene's DQ-bad samples blank whole rolling windows in the reference's median
    (its NaN-propagating np.median): the quirk the tso cases must reproduce is exercised."""
    from astropy.io import fits

    ref = parity.reference("run:tso_window_7")
    median = [n for n in ref["written"] if n.endswith("_median.fits")]
    assert median, ref["written"]
    path = os.path.join(parity.root, "reference", "tso_window_7", median[0])
    rolling = fits.getdata(path, "SCI")
    dq = fits.getdata(parity.written["tso"]["files"][0], "DQ")
    single = ((dq & 1) != 0) & ~np.all((dq & 1) != 0, axis=0)  # not the dead pixels
    assert single.sum() >= 10
    blanked = np.isnan(rolling) & ~np.all(np.isnan(rolling), axis=0)
    assert blanked.sum() >= 5 * single.sum()


def _sky(model, shape):
    y, x = np.mgrid[0:shape[0]:7, 0:shape[1]:5].astype(float)
    return np.asarray(model.meta.wcs(x, y, with_bounding_box=False))


@pytest.mark.parametrize("name", ["imaging_defaults", "rotated_telescope_wcs", "tso_window_7"])
def test_intermediate_products_named_and_shaped_as_the_reference(parity, name):
    """Same file names (``<stem>_<asn_id>_median.fits`` after the first input, ``_blot`` per
    input, ``_outlier_i2d`` per group), same shapes, same WCS of the median frame."""
    from stdatamodels.jwst import datamodels

    ref = parity.reference(f"run:{name}")
    ref_dir = os.path.join(parity.root, "reference", name)
    outdir = parity.daskod(CASE[name])
    wanted = {n for n in ref["written"] if not n.endswith(("_crf.fits", "_crfints.fits"))}
    assert wanted, ref["written"]
    assert wanted <= set(os.listdir(outdir)), sorted(wanted - set(os.listdir(outdir)))
    for n in sorted(wanted):
        with datamodels.open(os.path.join(ref_dir, n)) as a, \
                datamodels.open(os.path.join(outdir, n)) as b:
            assert b.data.shape == a.data.shape, n
            assert type(b).__name__ == type(a).__name__, n
            if a.meta.wcs is not None and n.endswith(("_median.fits", "_outlier_i2d.fits")):
                np.testing.assert_allclose(_sky(b, b.data.shape), _sky(a, a.data.shape),
                                           rtol=0, atol=1e-10, err_msg=n)
            if n.endswith("_outlier_i2d.fits"):
                np.testing.assert_array_equal(np.isfinite(b.data), np.isfinite(a.data))


@pytest.mark.parametrize("name", ["imaging_defaults", "rotated_telescope_wcs", "tso_window_7"])
def test_median_frames_match_the_reference(parity, name):
    """Finite exactly where the reference's median is; values within float32 rounding of
    the drizzled sums (relative 1e-5 of the frame's brightest pixel: daskod's pixel map is a
    spline good to ~1e-6 px, the reference's an exact evaluation)."""
    from astropy.io import fits

    ref = parity.reference(f"run:{name}")
    (median,) = [n for n in ref["written"] if n.endswith("_median.fits")]
    a = fits.getdata(os.path.join(parity.root, "reference", name, median), "SCI")
    b = fits.getdata(os.path.join(parity.daskod(CASE[name]), median), "SCI")
    np.testing.assert_array_equal(np.isfinite(b), np.isfinite(a))
    finite = np.isfinite(a)
    scale = float(np.nanmax(np.abs(a)))
    diff = float(np.max(np.abs(a[finite] - b[finite])))
    print(f"{name}: median max |difference| {diff:.3g} ({diff / scale:.3g} of the peak "
          f"{scale:.3g}), {int(finite.sum())} finite pixels")
    assert diff <= 1e-5 * scale
