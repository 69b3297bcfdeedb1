"""daskod's output frame is the reference's (jwst 3.0.0 ``resampled_wcs_from_models``), to
float rounding: one detector, two detectors per group, a telescope-like WCS rolled 200 deg
on non-square detectors, dithers of three detector widths, a square detector rolled -71 deg.

Both read the same files: S_REGION written by the reference's own function, the pointing
metadata by daskod's writer, the gwcs by asdf.
"""

from __future__ import annotations

import numpy as np
import pytest
from _parity import FRAME_SCENES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.parametrize("scene", FRAME_SCENES)
def test_frame_equals_the_reference(parity, scene):
    from daskod.geometry import compute_output_frame
    from daskod.io._jwst import gather_members, read_members

    ref = parity.reference(f"frame:{scene}")
    items, _info, mode = read_members(gather_members([parity.written[scene]["asn"]]))
    assert mode == "imaging"
    assert all(e.wcsinfo and e.wcsinfo.get("s_region") for e in items)
    frame = compute_output_frame(items)
    assert frame.source == "wcsinfo"
    assert list(frame.shape) == ref["shape"]
    np.testing.assert_allclose(frame.crpix, ref["crpix"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(frame.crval, ref["crval"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(frame.pc, ref["pc"], rtol=0, atol=1e-14)
    np.testing.assert_allclose([frame.cdelt, frame.cdelt], ref["cdelt"], rtol=1e-14, atol=0)
