"""``daskod run``: JWST associations or files in, one ``*_crf.fits`` per input out."""

from __future__ import annotations

import logging
import os
import time
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


def run_files(inputs: list[str], outdir: str, *, params: dict[str, Any],
              memory_limit: Any = None, scheduler: Any = None, tile_size: int | None = None,
              save_intermediate_results: bool = False, progress: bool = True,
              store: str | None = None, storage_options: dict[str, Any] | None = None,
              echo: Any = print) -> dict[str, Any]:
    """Run outlier detection on JWST products and write the ``crf``/``crfints`` products.

    Every check (members, files, WCS, exposure types, output names, that the output folder
    and ``store`` are writable) happens before any output is written. Inputs, ``outdir`` and
    ``store`` may be fsspec URLs (``s3://bucket/prefix``), opened with ``storage_options``.
    Products are written under the ``temp_dir`` option first and moved (uploaded) into
    ``outdir`` only when all of them are ready: a failed run leaves no product behind.
    """
    import daskod
    from daskod.io._jwst import gather_members, read_members
    from daskod.io._location import (
        ensure_free_space,
        is_url,
        open_store,
        publish,
        store_location,
        temp_folder,
    )
    from daskod.io._products import join, plan_outputs, stem_of, write_product

    log.info("Versions: %s", _versions())
    members = gather_members(inputs, storage_options=storage_options)
    from daskod.io._spec_products import file_processes

    # Slit spectroscopy files (hundreds of slits each) are opened by several processes.
    items, _info, found = read_members(members, storage_options=storage_options,
                                       workers=file_processes([m.path for m in members],
                                                              memory_limit, storage_options))
    mode = params.pop("mode", None) or found
    if (mode == "spec") != (found == "spec"):
        msg = (f"--mode {mode} does not fit these inputs (their exposure type says {found}); "
               "slit spectroscopy products and the other modes' products are read "
               "differently: leave --mode out or give the right one.")
        raise ValueError(msg)
    per_input = mode in ("imaging", "ifu", "spec")  # else one cube
    suffix = "crf" if per_input else "crfints"
    if is_url(outdir):
        # A probe object written and deleted now: bucket and credentials are checked.
        open_store(outdir, storage_options=storage_options, what="output folder")
    else:
        existing = outdir
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(os.path.abspath(existing))
        if not os.access(existing or ".", os.W_OK):
            msg = f"Output folder {outdir} is not writable ({existing} is not)."
            raise PermissionError(msg)
    paths = [m.path for m in members]
    outputs = plan_outputs(paths, outdir, suffix)
    log.info("Mode %s, %d input(s), parameters: %s", mode, len(items),
             ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())))
    root = members[0].product or stem_of(paths[0])
    if store is None and save_intermediate_results:
        store = join(outdir, f"{root}_intermediates.zarr")
    if not per_input and len(items) != 1:
        msg = f"mode {mode!r} processes one cube per run; got {len(items)} inputs."
        raise ValueError(msg)
    target = items if per_input else items[0]
    with temp_folder("daskod-outputs-") as staging:
        need = sum(_size(p, storage_options) for p in paths)
        if save_intermediate_results:  # at least the median and (imaging) one blot each
            pixels = [int(np.prod(np.shape(it.dq))) for it in items]
            need += 4 * max(pixels) + (4 * sum(pixels) if mode == "imaging" else 0)
        ensure_free_space(staging, need,
                          what="the products before they are moved to the output folder")
        start = time.perf_counter()
        result = daskod.detect_outliers(
            target, mode=mode, memory_limit=memory_limit, scheduler=scheduler,
            tile_size=tile_size, save_intermediate_results=save_intermediate_results,
            in_memory=False, progress=progress, store=store, storage_options=storage_options,
            **params)
        elapsed = time.perf_counter() - start
        reused = sum(v["reused"] for v in result.checkpoints.values())
        if reused:
            total = sum(v["total"] for v in result.checkpoints.values())
            echo(f"Resumed the run in {store}: {reused} of {total} tasks were done already")
        if result.skipped:
            echo(f"Step skipped: {result.reason}")
        staged: list[str] = []
        finals: list[str] = []

        def stage(final: str) -> str:
            staged.append(os.path.join(staging, os.path.basename(final)))
            finals.append(final)
            return staged[-1]

        if mode == "spec":  # slits of many sources per file: daskod/io/_spec_products.py
            from daskod.io._spec_products import write_spec_outputs

            write_spec_outputs(result, items, paths, outputs, stage, outdir=outdir,
                               save_intermediate=save_intermediate_results,
                               memory_limit=memory_limit, storage_options=storage_options)
        else:
            for k, src in enumerate(paths):
                dq = (np.asarray(result.dq[k]) if not result.skipped
                      else np.asarray(items[k].dq[...]))
                write_product(src, stage(outputs[k]), dq, status=result.status,
                              storage_options=storage_options)
            if save_intermediate_results and not result.skipped:
                _stage_intermediates(result, mode, paths, items, outdir, root, stage)
        publish(staged, finals, storage_options=storage_options)
    if not result.skipped:
        for row, out in zip(_rows_per_file(result, mode, paths), outputs, strict=True):
            echo(f"{row['name']}: {row['n_flagged']} pixels flagged ({row['percent']:.4f}%) "
                 f"-> {os.path.basename(out)}")
    if save_intermediate_results and not result.skipped:
        echo(f"Intermediate arrays also in the Zarr store {store_location(result.store)}")
    echo(f"Done in {elapsed:.1f} s: {len(outputs)} product(s) in {outdir}")
    return {"outputs": outputs, "result": result, "seconds": elapsed}


def _rows_per_file(result: Any, mode: str, paths: list[str]) -> list[dict[str, Any]]:
    """Per input file: flagged pixels (spec mode sums a file's slits)."""
    rows = result.stats
    if mode != "spec":
        return rows
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


def _stage_intermediates(result: Any, mode: str, paths: list[str], items: list[Any],
                         outdir: str, root: str, stage: Any) -> None:
    """The median, blotted and drizzled-group images (as the reference's intermediates)."""
    from daskod.io._products import join, stem_of, write_image

    if result.median is not None:
        write_image(stage(join(outdir, f"{root}_median.fits")), np.asarray(result.median),
                    wcs=result.median_wcs)
    if mode == "ifu":
        from daskod.io._ifu_products import write_ifu_outputs

        write_ifu_outputs(result, outdir, root, stage)
    if mode == "imaging" and result.pixel_maps:
        for k, src in enumerate(paths):
            write_image(stage(join(outdir, f"{stem_of(src)}_blot.fits")), result.blot(k),
                        wcs=items[k].wcs)
        for g, group in enumerate(result.groups):
            data, wht = result.resampled(g)
            write_image(stage(join(outdir, f"{stem_of(paths[group[0]])}_outlier_i2d.fits")),
                        data, wcs=result.median_wcs, extra={"wht": wht})
