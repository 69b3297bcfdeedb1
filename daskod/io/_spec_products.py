"""Products of a spec run (``daskod run`` on slit spectroscopy): one ``*_crf.fits`` per input
file with its slits kept, and the reference's intermediate files.

After a run computed into its working store (``in_memory=False``), the DQ and intermediate
arrays are read straight from the store (layout: :mod:`daskod.modes._spec_graph`), one slit
at a time: computing each slit's lazy DQ instead would walk the (finished) graph of its
source once per slit, which costs minutes for a few hundred MOS slits.

Intermediates (``save_intermediate_results``), named as the reference names them
(:func:`~daskod.io._jwst_spec.spec_intermediate_name`): per source
``<root>_<slit>_median.fits`` (``ImageModel``, SCI and ERR, the frame's WCS); with
resampling also ``<root>_<slit>_outlier_s2d.fits`` per group (``SlitModel``: SCI, ERR, WHT
before the weight threshold, named after the group's first input) and
``<root>_<slit>_blot.fits`` per input (the input's model type: SCI and ERR). Whole images
(MIRI LRS) read from an association carry its ``asn_id`` in place of the slit name.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from daskod.io._fits_url import open_model
from daskod.io._jwst import require_stdatamodels
from daskod.io._jwst_spec import spec_intermediate_name, write_spec_product
from daskod.io._products import join

__all__ = ["write_spec_outputs", "file_processes"]

log = logging.getLogger(__name__)


def _status_per_input(result: Any, n: int) -> list[str]:
    status = ["SKIPPED"] * n
    for info in result.spec.values():
        for k in info["indices"]:
            status[k] = info["status"]
    return status


def write_spec_outputs(result: Any, items: list[Any], paths: list[str], outputs: list[str],
                       stage: Any, *, outdir: str, save_intermediate: bool,
                       memory_limit: Any = None,
                       storage_options: dict[str, Any] | None = None) -> None:
    """Stage one ``*_crf.fits`` per input file (``stage(final) -> local path``) and, with
    ``save_intermediate``, the intermediates.

    A file's ``cal_step.outlier_detection`` is ``COMPLETE`` when any of its slits belonged
    to a source that ran, else ``SKIPPED`` (the reference records ``FAILED`` per skipped
    source's slits; the DQ is unchanged either way). Files are written by as many worker
    processes as ``memory_limit`` holds (:func:`file_processes`): stdatamodels spends ~20 s
    of pure Python on a 100-slit ``MultiSlitModel``.
    """
    import zarr

    group = None if result.skipped else zarr.open_group(result.store, mode="r")
    status = _status_per_input(result, len(items)) if group is not None else None
    by_file: dict[str, list[int]] = {}
    for k, exp in enumerate(items):
        by_file.setdefault(exp.meta["path"], []).append(k)
    jobs = []
    for src, dst in zip(paths, outputs, strict=True):
        dqs, done = {}, False
        for k in by_file.get(src, []):
            exp = items[k]
            if group is None:
                dq = np.asarray(exp.dq[...])
            else:
                dq = np.asarray(group["outputs/dq"][k, :exp.shape[0], :exp.shape[1]])
                done = done or status[k] == "COMPLETE"
            dqs[exp.meta.get("slit_index")] = dq
        jobs.append((src, stage(dst), dqs, "COMPLETE" if done else "SKIPPED",
                     storage_options))
    n = file_processes(paths, memory_limit, storage_options)
    if n < 2:
        for job in jobs:
            _write_job(job)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            list(pool.map(_write_job, jobs))
    if save_intermediate and group is not None:
        _write_intermediates(result, items, group, outdir, stage, storage_options)


def _write_job(job: tuple[Any, ...]) -> None:
    src, dst, dqs, status, storage_options = job
    write_spec_product(src, dst, dqs, status=status, storage_options=storage_options)


#: Resident memory of a fresh writer process with stdatamodels imported (measured ~150 MiB).
WRITER_BASELINE = 192 * 2**20
#: Files smaller than this together are opened and written in this process (measured: a
#: worker costs ~3-10 s to start, a 10-slit MOS file ~1 s to open, a 100-slit one ~10 s).
PARALLEL_FILES_BYTES = 256 * 2**20


def file_processes(paths: list[str], memory_limit: Any,
                   storage_options: dict[str, Any] | None = None) -> int:
    """How many processes may open or write products at once: one per core, at most one per
    file, each needing about three times its file (the model, its arrays, the FITS being
    written) on top of a fresh interpreter, within what ``memory_limit`` leaves above this
    process. One process when the files are small (under :data:`PARALLEL_FILES_BYTES`
    together): a worker takes seconds to start and import stdatamodels."""
    import os

    from daskod.engine._budget import default_memory_limit, process_rss
    from daskod.options import get_option, parse_bytes

    if len(paths) < 2:
        return 1
    sizes = [_file_size(p, storage_options) for p in paths]
    if sum(sizes) < PARALLEL_FILES_BYTES:
        return 1
    limit = parse_bytes(memory_limit if memory_limit is not None
                        else get_option("memory_limit")) or default_memory_limit()
    largest = max(sizes)
    room = limit - process_rss()
    return int(max(1, min(len(paths), os.cpu_count() or 1,
                          room // (WRITER_BASELINE + 3 * largest))))


def _file_size(path: str, storage_options: dict[str, Any] | None) -> int:
    import os

    from daskod.io._location import is_url, url_filesystem

    if is_url(path):
        fs, key = url_filesystem(path, storage_options, what="input")
        return int(fs.size(key) or 0)
    return os.path.getsize(path)


def _model(kind: str, arrays: dict[str, np.ndarray], *, wcs: Any = None, like: str | None,
           name: str | None, storage_options: dict[str, Any] | None) -> Any:
    datamodels = require_stdatamodels()
    model = getattr(datamodels, kind)()
    if like is not None:
        with open_model(like, storage_options=storage_options) as ref:
            model.update(ref, only="PRIMARY")
    for key, value in arrays.items():
        setattr(model, key, np.asarray(value, dtype=np.float32))
    if wcs is not None:
        model.meta.wcs = wcs
    if name is not None and kind == "SlitModel":
        model.name = name
    return model


def _save(model: Any, final: str, stage: Any) -> None:
    """Save under the staging folder; the caller publishes every staged file at once."""
    import os

    local = stage(final)
    model.meta.filename = os.path.basename(final)
    model.save(local)
    model.close()
    log.info("Staged %s", final)


def _write_intermediates(result: Any, items: list[Any], group: Any, outdir: str, stage: Any,
                         storage_options: dict[str, Any] | None) -> None:
    for info in result.spec.values():
        if info["status"] != "COMPLETE":
            continue
        s, idx = info["source_index"], info["indices"]
        first = items[idx[0]]
        asn_id = first.meta.get("asn_id")
        fy, fx = np.shape(info["median"])
        median = np.asarray(group["spec/median"][s, :fy, :fx])
        err = np.asarray(group["spec/median_err"][s, :fy, :fx])
        wcs = info["median_wcs"] if info["median_wcs"] is not None else first.wcs
        name = spec_intermediate_name(first, "median", asn_id=asn_id)
        _save(_model("ImageModel", {"data": median, "err": err}, wcs=wcs,
                     like=first.meta.get("path"), name=None, storage_options=storage_options),
              join(outdir, name), stage)
        if info["median_wcs"] is None:
            continue  # without resampling the reference saves only the median
        for g, members in enumerate(info["groups"]):
            head = items[members[0]]
            planes = np.asarray(group["spec/resampled"][s, g, :, :fy, :fx])
            name = spec_intermediate_name(head, "outlier_s2d", asn_id=asn_id)
            _save(_model("SlitModel", {"data": planes[0], "wht": np.nan_to_num(planes[1]),
                                       "err": planes[2]}, wcs=wcs, like=head.meta.get("path"),
                         name=head.meta.get("slit_name"), storage_options=storage_options),
                  join(outdir, name), stage)
        for k in idx:
            exp = items[k]
            blot = np.asarray(group["outputs/blot"][k, :, :exp.shape[0], :exp.shape[1]])
            kind = "ImageModel" if exp.meta.get("model_type") == "ImageModel" else "SlitModel"
            name = spec_intermediate_name(exp, "blot", asn_id=asn_id)
            _save(_model(kind, {"data": blot[0], "err": blot[1]}, like=exp.meta.get("path"),
                         name=exp.meta.get("slit_name"), storage_options=storage_options),
                  join(outdir, name), stage)
