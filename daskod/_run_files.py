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
              echo: Any = print) -> dict[str, Any]:
    """Run outlier detection on JWST products and write the ``crf``/``crfints`` products.

    Every check (members, files, WCS, exposure types, output names) happens before any
    output is written.
    """
    import daskod
    from daskod.io._jwst import gather_members, read_members
    from daskod.io._products import plan_outputs, stem_of, write_image, write_product

    log.info("Versions: %s", _versions())
    members = gather_members(inputs)
    items, _info, mode = read_members(members)
    mode = params.pop("mode", None) or mode
    suffix = "crf" if mode == "imaging" else "crfints"
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
    store = os.path.join(outdir, f"{root}_intermediates.zarr") if save_intermediate_results \
        else None
    if store is not None:
        os.makedirs(outdir, exist_ok=True)
    start = time.perf_counter()
    target = items if mode == "imaging" else items[0]
    if mode != "imaging" and len(items) != 1:
        msg = f"mode {mode!r} processes one cube per run; got {len(items)} inputs."
        raise ValueError(msg)
    result = daskod.detect_outliers(
        target, mode=mode, memory_limit=memory_limit, scheduler=scheduler, tile_size=tile_size,
        save_intermediate_results=save_intermediate_results, in_memory=False,
        progress=progress, store=store, **params)
    elapsed = time.perf_counter() - start
    os.makedirs(outdir, exist_ok=True)
    if result.skipped:
        echo(f"Step skipped: {result.reason}")
    for k, src in enumerate(paths):
        dq = np.asarray(result.dq[k]) if not result.skipped else np.asarray(items[k].dq[...])
        write_product(src, outputs[k], dq, status=result.status)
    if not result.skipped:
        for row, out in zip(result.stats, outputs, strict=True):
            echo(f"{row['name']}: {row['n_flagged']} pixels flagged ({row['percent']:.4f}%) "
                 f"-> {os.path.basename(out)}")
    if save_intermediate_results and not result.skipped:
        write_image(os.path.join(outdir, f"{root}_median.fits"), np.asarray(result.median),
                    wcs=result.median_wcs)
        if mode == "imaging" and result._pixel_maps:
            for k, src in enumerate(paths):
                write_image(os.path.join(outdir, f"{stem_of(src)}_blot.fits"), result.blot(k),
                            wcs=items[k].wcs)
            for g, group in enumerate(result.groups):
                data, wht = result.resampled(g)
                write_image(os.path.join(outdir, f"{stem_of(paths[group[0]])}_outlier_i2d.fits"),
                            data, wcs=result.median_wcs, extra={"wht": wht})
        echo(f"Intermediate arrays also in the Zarr store {result.store}")
    echo(f"Done in {elapsed:.1f} s: {len(outputs)} product(s) in {outdir}")
    return {"outputs": outputs, "result": result, "seconds": elapsed}
