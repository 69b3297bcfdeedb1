"""daskod's flags equal the real reference's (jwst 3.0.0), case by case.

The reference runs in its own environment (see ``reference_python`` in conftest.py); daskod
runs through ``daskod run`` on the same files. New-outlier masks ((DQ & 16) set, not set
before) must be identical: Jaccard 1.000.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _parity import CASES, compare_flags, run_daskod

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_new_outliers_identical_to_the_reference(parity, case):
    ref = parity.reference(f"run:{case.name}")
    written = parity.written[case.scene]
    outdir = os.path.join(parity.root, "daskod", case.name)
    proc = run_daskod(case, written, outdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
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
