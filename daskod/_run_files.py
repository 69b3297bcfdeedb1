"""``daskod run``: JWST associations or files in, one ``*_crf.fits`` per input out."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["run_files"]

log = logging.getLogger("daskod.run")


def _versions() -> str:
    import dask
    import gwcs

    import daskod

    try:
        import stdatamodels

        sdm = stdatamodels.__version__
    except ImportError:  # pragma: no cover - checked before
        sdm = "missing"
    return (f"daskod {daskod.__version__}, dask {dask.__version__}, gwcs {gwcs.__version__}, "
            f"stdatamodels {sdm}")


def _warm_up_workers(members: list[Any], params: dict[str, Any], *, scheduler: Any,
                     memory_limit: Any) -> None:
    """Start the server the ``processes`` scheduler forks its workers from now, when the run
    will most likely use it: daskod's default scheduler and memory budget, two cores or more,
    imaging with resampling on local files (the first member's primary header says imaging).
    Its imports (~1.5 s) then overlap the reading of the inputs' metadata instead of
    following it. A wrong guess leaves one idle process (~150 MiB) until the run ends, so
    never with an explicit ``memory_limit``, which it would count against."""
    from daskod.engine._scheduler import Scheduler, resolve_scheduler
    from daskod.io._datamodel import guess_mode
    from daskod.io._location import is_url
    from daskod.options import get_option

    if scheduler is not None or memory_limit is not None or (
            get_option("memory_limit") is not None) or (os.cpu_count() or 1) < 2 or (
            params.get("resample_data") is False) or params.get("mode") not in (None,
                                                                                 "imaging"):
        return
    first = members[0].path
    if is_url(first):
        return
    try:
        from astropy.io import fits

        header = fits.getheader(first, 0)
    except Exception:  # a guess only: plan_run reports unusable inputs
        return
    if guess_mode(header.get("EXP_TYPE", ""), tso=bool(header.get("TSOVISIT", False)),
                  nints=int(header.get("NINTS", 1) or 1)) != "imaging":
        return
    sched = resolve_scheduler(None)
    if sched.by_default and sched.num_workers >= 2:
        Scheduler("processes", sched.num_workers).warm_up(writes_products=True)


def run_files(inputs: list[str], outdir: str, *, params: dict[str, Any],
              memory_limit: Any = None, scheduler: Any = None, tile_size: int | None = None,
              save_intermediate_results: bool = False, progress: bool = True,
              store: str | None = None, storage_options: dict[str, Any] | None = None,
              overwrite: bool = False, dry_run: bool = False,
              echo: Any = print) -> dict[str, Any]:
    """Run outlier detection on JWST products and write the ``crf``/``crfints`` products.

    Every check (members, files, WCS, exposure types, output names, that the output folder
    and ``store`` are writable, existing products) happens before any pixel is read
    (:func:`daskod._run_plan.plan_run`). Inputs, ``outdir`` and ``store`` may be fsspec URLs
    (``s3://bucket/prefix``), opened with ``storage_options``. Products are written under the
    ``temp_dir`` option first and moved (uploaded) into ``outdir`` only when all of them are
    ready: a failed run leaves no product behind, and no output folder or intermediates
    store that it created.

    Existing products are refused unless ``overwrite``, except those a resumed run (the same
    ``store``, which records the products its runs wrote) was writing. ``dry_run`` prints
    the plan (:func:`daskod._run_plan.describe_plan`) and stops.

    The returned ``result`` keeps the run's lazy arrays as the graph's outputs
    (:class:`~daskod.engine._graph.GraphArray`, computable with ``dask.compute``;
    :func:`~daskod.engine._graph.as_dask` makes Dask arrays of them): a command-line run
    never imports ``dask.array``.
    """
    import daskod
    from daskod._heap import return_freed_memory
    from daskod._run_plan import describe_plan, plan_run, record_products
    from daskod.engine._run import GRAPH_OUTPUTS, PRODUCT_WRITER
    from daskod.io._jwst import gather_members
    from daskod.io._location import ensure_free_space, publish, store_location, temp_folder
    from daskod.io._products import write_product

    members = gather_members(inputs, storage_options=storage_options)
    _warm_up_workers(members, params, scheduler=scheduler, memory_limit=memory_limit)
    log.info("Versions: %s", _versions())
    params = dict(params)
    plan = plan_run(inputs, outdir, params=params, store=store,
                    storage_options=storage_options, memory_limit=memory_limit,
                    save_intermediate_results=save_intermediate_results, members=members)
    params.pop("mode", None)
    mode, items, paths, outputs = plan.mode, plan.items, plan.paths, plan.outputs
    need = sum(_size(p, storage_options) for p in paths)
    if save_intermediate_results:  # at least the median and (imaging) one blot each
        pixels = [int(np.prod(np.shape(it.dq))) for it in items]
        need += 4 * max(pixels) + (4 * sum(pixels) if mode == "imaging" else 0)
    if dry_run:
        for line in describe_plan(plan, memory_limit=memory_limit, scheduler=scheduler,
                                  tile_size=tile_size, params=params, staged_bytes=need):
            echo(line)
        plan.refuse_existing(overwrite=overwrite)
        return {"outputs": outputs, "plan": plan}
    plan.refuse_existing(overwrite=overwrite)
    log.info("Mode %s, %d input(s), parameters: %s", mode, len(items),
             ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())))
    with _undo_on_failure(plan), temp_folder("daskod-outputs-") as staging:
        ensure_free_space(staging, need,
                          what="the products before they are moved to the output folder")
        staged: list[str] = []
        finals: list[str] = []

        def stage(final: str) -> str:
            staged.append(os.path.join(staging, os.path.basename(final)))
            finals.append(final)
            return staged[-1]

        block_bytes = _write_block_bytes(memory_limit)

        def write(k: int, dq: Any) -> None:
            """Exposure k's product, written by the run's graph once its flags are stored
            (under the staging folder, published below when every product is ready; in
            whichever process runs the task: a product there is a finished one, as
            write_product renames it into place)."""
            write_product(paths[k], os.path.join(staging, os.path.basename(outputs[k])), dq,
                          status="COMPLETE", storage_options=storage_options,
                          block_bytes=block_bytes)

        start = time.perf_counter()
        token, graph_token = PRODUCT_WRITER.set(write), GRAPH_OUTPUTS.set(True)
        try:
            result = daskod.detect_outliers(
                plan.target, mode=mode, memory_limit=memory_limit, scheduler=scheduler,
                tile_size=tile_size, save_intermediate_results=save_intermediate_results,
                in_memory=False, progress=progress, store=plan.store,
                storage_options=storage_options, **params)
        finally:
            PRODUCT_WRITER.reset(token)
            GRAPH_OUTPUTS.reset(graph_token)
        elapsed = time.perf_counter() - start
        if result.store is not None and plan.store is not None:
            record_products(result.store, outputs + plan.extras)
        reused = sum(v["reused"] for v in result.checkpoints.values())
        if reused:
            total = sum(v["total"] for v in result.checkpoints.values())
            echo(f"Resumed the run in {plan.store}: {reused} of {total} tasks were done "
                 "already")
        return_freed_memory()
        if mode == "spec":  # slits of many sources per file: daskod/io/_spec_products.py
            from daskod.io._spec_products import write_spec_outputs

            _dask_arrays(result)
            write_spec_outputs(result, items, paths, outputs, stage, outdir=outdir,
                               save_intermediate=save_intermediate_results,
                               memory_limit=memory_limit, storage_options=storage_options)
        else:
            for k, src in enumerate(paths):
                if os.path.exists(stage(outputs[k])):  # written by the run's graph
                    continue
                # The new DQ is read a block at a time; a skipped step keeps the input's DQ.
                dq = None if result.skipped else _dask_arrays(result).dq[k]
                write_product(src, staged[-1], dq, status=result.status,
                              storage_options=storage_options, block_bytes=block_bytes)
            if save_intermediate_results and not result.skipped:
                _dask_arrays(result)
                _stage_intermediates(result, mode, paths, items, outdir,
                                     plan.members[0].asn_id, stage)
        publish(staged, finals, storage_options=storage_options)
    rows = None if result.skipped else _rows_per_file(result, mode, paths)
    for k, out in enumerate(outputs):
        if rows is None:
            name = os.path.basename(paths[k])
            echo(f"{name}: Step skipped, DQ unchanged -> {os.path.basename(out)}")
        else:
            row = rows[k]
            echo(f"{row['name']}: {row['n_flagged']} pixels flagged ({row['percent']:.4f}%) "
                 f"-> {os.path.basename(out)}")
    if save_intermediate_results and not result.skipped:
        echo(f"Intermediate arrays also in the Zarr store {store_location(result.store)}")
    echo(f"Done in {elapsed:.1f} s: {len(outputs)} product(s) in {outdir}")
    return {"outputs": outputs, "result": result, "seconds": elapsed}


@contextlib.contextmanager
def _undo_on_failure(plan: Any) -> Iterator[None]:
    """On failure, remove what this run created in the output folder: the intermediates store
    it named itself and folders that did not exist (a store the user named stays)."""
    from daskod.io._location import is_url, local_path, remove_store

    if is_url(plan.outdir):
        yield
        return
    folder = os.path.abspath(local_path(plan.outdir))
    created = []
    probe = folder
    while not os.path.exists(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    store_new = plan.derived_store and not os.path.exists(local_path(plan.store))
    try:
        yield
    except BaseException:
        if store_new:
            remove_store(local_path(plan.store))
        for path in created:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise


def _write_block_bytes(memory_limit: Any) -> int:
    """Pixels handled per step while writing products: 1/64 of the memory budget, between
    2 and 16 MiB (the writer holds a few such blocks)."""
    from daskod.io._fits_stream import DEFAULT_BLOCK_BYTES
    from daskod.options import get_option, parse_bytes

    limit = memory_limit if memory_limit is not None else get_option("memory_limit")
    if limit is None:
        return DEFAULT_BLOCK_BYTES
    return int(min(DEFAULT_BLOCK_BYTES, max(2 * 2**20, parse_bytes(limit) // 64)))


def _dask_arrays(result: Any) -> Any:
    """``result`` with its lazy arrays as Dask arrays, for the products and intermediates
    ``daskod run`` writes itself (its run kept them as the graph's outputs)."""
    from daskod.engine._graph import as_dask

    result.dq, result.median = as_dask(result.dq), as_dask(result.median)
    result.ifu, result.spec = as_dask(result.ifu), as_dask(result.spec)
    return result


def _rows_per_file(result: Any, mode: str, paths: list[str]) -> list[dict[str, Any]]:
    """Per input file: its name and flagged pixels (spec mode sums a file's slits)."""
    rows = result.stats
    if mode != "spec":
        return [dict(row, name=os.path.basename(p)) for row, p in zip(rows, paths, strict=True)]
    out = []
    for path in paths:
        mine = [(row, exp) for row, exp in zip(rows, result.exposures, strict=True)
                if exp.meta.get("path") == path]
        n = sum(row["n_flagged"] for row, _ in mine)
        size = sum(int(np.prod(exp.shape)) for _, exp in mine)
        out.append({"name": f"{os.path.basename(path)} ({len(mine)} slit(s))", "n_flagged": n,
                    "percent": 100.0 * n / size if size else 0.0})
    return out


def _size(path: str, storage_options: Any) -> int:
    """Bytes of an input file (its product takes about as much)."""
    from daskod.io._location import is_url, url_filesystem

    if is_url(path):
        fs, key = url_filesystem(path, storage_options, what="input")
        return int(fs.size(key) or 0)
    return os.path.getsize(path)


def intermediate_name(path: str, suffix: str, asn_id: str | None) -> str:
    """The reference's intermediate file name: ``<stem>[_<asn_id>]_<suffix>.fits``."""
    from daskod.io._products import stem_of

    stem = stem_of(path)
    return f"{stem}_{asn_id}_{suffix}.fits" if asn_id else f"{stem}_{suffix}.fits"


def _stage_intermediates(result: Any, mode: str, paths: list[str], items: list[Any],
                         outdir: str, asn_id: str | None, stage: Any) -> None:
    """The median, blotted and drizzled-group images, named as the reference names them
    (jwst 3.0.0 with ``save_intermediate_results``): one ``<stem>_<asn_id>_median.fits``
    after the first input, ``<stem>_<asn_id>_blot.fits`` per input and
    ``<stem>_<asn_id>_outlier_i2d.fits`` per group after its first input; without an
    association, no ``_<asn_id>``. IFU: ``<stem>_<asn_id>_<detector>_outlier_output.fits``
    after the detector's first input."""
    from daskod.io._products import join, write_image

    if result.median is not None:
        write_image(stage(join(outdir, intermediate_name(paths[0], "median", asn_id))),
                    result.median, wcs=result.median_wcs if np.ndim(result.median) == 2 else None)
    if mode == "ifu":
        from daskod.io._ifu_products import write_ifu_outputs

        first: dict[str, str] = {}
        for path, item in zip(paths, items, strict=True):
            first.setdefault(str(item.detector).lower(), path)
        names = {det: intermediate_name(path, f"{det}_outlier_output", asn_id)
                 for det, path in first.items()}
        write_ifu_outputs(result, outdir, names, stage)
    if mode == "imaging" and result.pixel_maps:
        for k, src in enumerate(paths):
            write_image(stage(join(outdir, intermediate_name(src, "blot", asn_id))),
                        result.blot(k), wcs=items[k].wcs)
        for g, group in enumerate(result.groups):
            data, wht = result.resampled(g)
            write_image(stage(join(outdir, intermediate_name(paths[group[0]], "outlier_i2d",
                                                             asn_id))),
                        data, wcs=result.median_wcs, extra={"wht": wht})
