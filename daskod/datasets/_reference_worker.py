"""Jobs run INSIDE the reference environment (jwst 3.0.0), never imported by daskod.

Run as ``<reference python> _reference_worker.py JOBS.json RESULTS.json``: it reads a list of
jobs, runs each with the reference's own functions and writes one result per job (errors
are caught per job and reported with their traceback). Only the standard library and the
reference's packages are imported: the reference environment does not have daskod.

Jobs (``kind``):

- ``"s_region"``: ``files``; for each ``*_cal.fits``, ``jwst.assign_wcs.util.
  update_s_region_imaging`` (stcal ``compute_s_region_imaging`` on the file's own gwcs) and
  save the file in place (through a temporary name). Result: the new strings.
- ``"frame"``: ``input`` (an association); the reference's output frame
  (``resampled_wcs_from_models``): ``crpix``, ``crval``, ``cdelt``, ``pc``, ``shape``.
- ``"run"``: ``input`` (association or one product), ``output_dir``, ``params``,
  ``save_intermediate_results``; runs ``OutlierDetectionStep`` (products suffix ``crf``).
  A single product is opened as a datamodel first (the step cannot take its file name).
  Result: wall seconds and the files written.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

ENVIRONMENT = {"STPIPE_DISABLE_CRDS_STEPPARS": "True", "CRDS_SERVER_URL": "https://127.0.0.1:9",
               "CRDS_OBSERVATORY": "jwst"}


def _s_region(job: dict) -> dict:
    from jwst.assign_wcs.util import update_s_region_imaging
    from stdatamodels.jwst import datamodels

    out = {}
    for path in job["files"]:
        with datamodels.open(path) as model:
            update_s_region_imaging(model)
            tmp = os.path.join(os.path.dirname(path), "tmp_s_region_" + os.path.basename(path))
            model.save(tmp)
            out[path] = model.meta.wcsinfo.s_region
        os.replace(tmp, path)
    return {"s_region": out}


def _frame(job: dict) -> dict:
    from jwst.datamodels import ModelLibrary
    from jwst.resample.resample_utils import resampled_wcs_from_models

    library = ModelLibrary(job["input"], on_disk=False)
    wcs, *_ = resampled_wcs_from_models(library)
    t = wcs.forward_transform
    return {"crpix": [float(v) for v in t.crpix.value], "crval": [float(v) for v in t.crval.value],
            "cdelt": [float(v) for v in t.cdelt.value], "pc": t.pc.value.tolist(),
            "shape": [int(n) for n in wcs.array_shape]}


def _run(job: dict) -> dict:
    from jwst.outlier_detection import OutlierDetectionStep
    from stdatamodels.jwst import datamodels

    os.makedirs(job["output_dir"], exist_ok=True)
    before = set(os.listdir(job["output_dir"]))
    inp = job["input"]
    start = time.perf_counter()
    if not inp.lower().endswith(".json"):
        inp = datamodels.open(inp)
    OutlierDetectionStep.call(inp, in_memory=True, save_results=True,
                              output_dir=job["output_dir"], suffix="crf",
                              save_intermediate_results=bool(job.get("save_intermediate_results")),
                              **job.get("params", {}))
    wall = time.perf_counter() - start
    written = sorted(set(os.listdir(job["output_dir"])) - before)
    return {"seconds": wall, "written": written}


def main(argv: list[str]) -> int:
    jobs_path, results_path = argv[1], argv[2]
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        try:
            result = {"s_region": _s_region, "frame": _frame, "run": _run}[job["kind"]](job)
            result["ok"] = True
        except Exception:  # reported per job; the caller fails the case that needed it
            result = {"ok": False, "error": traceback.format_exc()}
        results.append(result)
    with open(results_path + ".partial", "w", encoding="utf-8") as f:
        json.dump(results, f)
    os.replace(results_path + ".partial", results_path)
    return 0


if __name__ == "__main__":
    os.environ.update(ENVIRONMENT)  # before jwst is imported: no CRDS parameter files
    os.environ.setdefault("CRDS_PATH", os.path.join(os.path.dirname(sys.argv[1]), "crds"))
    sys.exit(main(sys.argv))
