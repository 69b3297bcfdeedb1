"""Run by the reference's interpreter (jwst 3.0.0), never by daskod's.

    /work/jwst-venv/bin/python _reference_step.py run INPUT OUTDIR [name=value ...]
    /work/jwst-venv/bin/python _reference_step.py wcsinfo CAL_FILES...

``run``: ``OutlierDetectionStep`` offline (no CRDS: see docs in shared notes), in memory,
writing its product into OUTDIR; a ``*.fits`` input is opened as a datamodel first (the step
takes cubes only that way). ``wcsinfo``: give simulated ``*_cal.fits`` the ``meta.wcsinfo``
the reference's imaging mode reads (``s_region`` from stcal's own footprint function,
``ra_ref``/``dec_ref`` at the detector centre, an unrotated V-frame), saved in place.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def _environment() -> None:
    os.environ.update(STPIPE_DISABLE_CRDS_STEPPARS="True",
                      CRDS_PATH=tempfile.mkdtemp(prefix="crds-"),
                      CRDS_SERVER_URL="https://127.0.0.1:9", CRDS_OBSERVATORY="jwst")


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def run(inp: str, outdir: str, params: list[str]) -> None:
    _environment()
    start = time.perf_counter()
    from jwst.outlier_detection import OutlierDetectionStep
    from stdatamodels.jwst import datamodels

    kwargs = {k: _value(v) for k, v in (p.split("=", 1) for p in params)}
    if inp.endswith(".fits"):
        inp = datamodels.open(inp)
    imported = time.perf_counter()
    OutlierDetectionStep.call(inp, in_memory=True, save_results=True, output_dir=outdir,
                              **kwargs)
    step = time.perf_counter() - imported
    print(f"reference: imports {imported - start:.1f} s, step {step:.1f} s", flush=True)


def wcsinfo(files: list[str]) -> None:
    _environment()
    from stcal.alignment.util import compute_s_region_imaging
    from stdatamodels.jwst import datamodels

    for path in files:
        with datamodels.open(path) as model:
            ny, nx = model.data.shape
            info = model.meta.wcsinfo
            info.s_region = compute_s_region_imaging(model.meta.wcs, (ny, nx))
            ra, dec = model.meta.wcs((nx - 1) / 2.0, (ny - 1) / 2.0)
            info.ra_ref, info.dec_ref = float(ra), float(dec)
            info.v2_ref, info.v3_ref, info.roll_ref = 0.0, 0.0, 0.0
            info.v3yangle, info.vparity, info.wcsaxes = 0.0, -1, 2
            model.save(path)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "wcsinfo":
        wcsinfo(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
