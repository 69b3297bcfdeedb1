"""Run jwst's OutlierDetectionStep in spec mode per source, as calwebb_spec3 does, offline.

A stand-alone script for an interpreter that has ``jwst`` (it never imports daskod)::

    python _reference_spec_script.py ASN.json OUTDIR '{"resample_data": true}'
    python _reference_spec_script.py ASN.json OUTDIR '{"runs": {"a": {}, "b": {...}}}'

The second form runs the step once per named parameter set, into ``OUTDIR/<name>`` (one
interpreter start and one ``import jwst`` for all of them).

- ``MultiSlitModel`` inputs (NIRSpec fixed slit / MOS) are split per source with
  ``jwst.exp_to_source.multislit_to_container`` (slits keyed by ``source_name`` when set,
  else ``source_id``; each slit's metadata merged from its exposure), exactly as calwebb_spec3
  does; other inputs (MIRI LRS ``ImageModel``) form one container.
- Each source's container runs through ``OutlierDetectionStep`` with ``mode = "spec"`` (set on
  the step as the pipeline sets it) and ``save_intermediate_results`` (unless the parameters
  say ``"save_intermediate_results": false``, as a benchmark does); the intermediates of
  source ``<key>`` go to ``OUTDIR/<key>/`` (the reference names the median after the first
  input only, so sources would overwrite each other's in one folder).
- The results are reassembled per input file: ``OUTDIR/<stem>_crf.fits`` is the input product
  with every slit's SCI/ERR/DQ/VAR_* replaced by the processed slit (matched by slit name)
  and ``cal_step.outlier_detection`` set. ``OUTDIR/summary.json`` lists, per source, the
  step status, the members and their new-outlier counts, and the step's log lines.

Environment (set by the caller): ``STPIPE_DISABLE_CRDS_STEPPARS=True``, ``CRDS_PATH``,
``CRDS_SERVER_URL=https://127.0.0.1:9``, ``CRDS_OBSERVATORY=jwst``.
"""

import json
import logging
import os
import sys

_ARRAYS = ("data", "err", "dq", "var_rnoise", "var_poisson", "var_flat")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.name}: {record.getMessage()}")


def _stem(path):
    base = os.path.basename(path)
    if base.endswith(".fits"):
        base = base[:-5]
    head, _, tail = base.rpartition("_")
    return head if head and tail in ("cal", "crf") else base


def _run_source(step_cls, container, outdir, params, log):
    from jwst.stpipe.utilities import query_step_status

    os.makedirs(outdir, exist_ok=True)
    step = step_cls(**params)
    step.mode = "spec"
    step.save_intermediate_results = params.get("save_intermediate_results", True)
    step.output_dir = outdir
    start = len(log.lines)
    result = step.run(container)
    status = query_step_status(result, "outlier_detection")
    return result, status, log.lines[start:]


def main(asn_path, outdir, params):
    import numpy as np
    from jwst.datamodels import ModelContainer
    from jwst.exp_to_source import multislit_to_container
    from jwst.outlier_detection import OutlierDetectionStep
    from stdatamodels.jwst import datamodels

    log = _Collect()
    for name in ("jwst", "stcal", "stpipe"):
        logging.getLogger(name).addHandler(log)
        logging.getLogger(name).setLevel(logging.INFO)
    os.makedirs(outdir, exist_ok=True)
    asn_dir = os.path.dirname(os.path.abspath(asn_path))
    with open(asn_path, encoding="utf-8") as f:
        asn = json.load(f)
    members = [os.path.join(asn_dir, m["expname"]) for m in asn["products"][0]["members"]
               if m["exptype"] == "science"]
    container = ModelContainer(asn_path)
    summary = {"sources": {}, "files": []}
    processed = {}  # (filename, slit name or None) -> processed model
    if isinstance(container[0], datamodels.MultiSlitModel):
        table = os.path.basename(asn_path)
        sources = list(multislit_to_container(container).items())
    else:
        table = os.path.basename(asn_path)
        sources = [("all", container)]
    for key, models in sources:
        for m in models:
            m.meta.asn.table_name = table
        ins = [(m.meta.filename, getattr(m, "name", None),
                np.array(m.dq, dtype=np.uint32)) for m in models]
        result, status, lines = _run_source(OutlierDetectionStep, models,
                                            os.path.join(outdir, str(key)), params, log)
        entry = {"status": status, "members": [], "log": lines}
        for (filename, slit, dq_in), m in zip(ins, result, strict=True):
            new = ((np.asarray(m.dq) & 16) != 0) & ((dq_in & 16) == 0)
            entry["members"].append({"file": filename, "slit": slit,
                                     "new_outliers": int(new.sum())})
            processed[(filename, slit)] = m
        summary["sources"][str(key)] = entry
    for path in members:
        model = datamodels.open(path)
        fname = os.path.basename(path)
        if isinstance(model, datamodels.MultiSlitModel):
            targets = [(slit, (fname, slit.name)) for slit in model.slits]
        else:
            targets = [(model, (fname, None))]
        statuses = set()
        for target, key in targets:
            done = processed.get(key)
            if done is None:
                continue
            for name in _ARRAYS:
                if done.hasattr(name) and target.hasattr(name):
                    # In place: an assignment validates the whole model's schema each time
                    # (hundreds of times for a MOS file), which is not the step's cost.
                    current = getattr(target, name)
                    value = np.asarray(getattr(done, name))
                    if current.flags.writeable and current.shape == value.shape:
                        current[...] = value
                    else:
                        setattr(target, name, np.array(value))
            statuses.add(done.meta.cal_step.outlier_detection)
        status = "COMPLETE" if statuses == {"COMPLETE"} else ",".join(sorted(
            s for s in statuses if s))
        model.meta.cal_step.outlier_detection = status or "SKIPPED"
        out = os.path.join(outdir, f"{_stem(path)}_crf.fits")
        model.meta.filename = os.path.basename(out)
        model.save(out)
        summary["files"].append({"input": path, "output": out,
                                 "status": model.meta.cal_step.outlier_detection})
        model.close()
    with open(os.path.join(outdir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    _params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if isinstance(_params.get("runs"), dict):
        for _name, _one in _params["runs"].items():
            main(sys.argv[1], os.path.join(sys.argv[2], _name), _one)
    else:
        main(sys.argv[1], sys.argv[2], _params)
