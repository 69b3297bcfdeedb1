"""IFU difference method: daskod (tiled, out of core) against a whole-frame transcription of
the reference, at detector scale.

    python benchmarks/bench_ifu.py                          # 4 x 1024^2 (MIRI MRS scale)
    python benchmarks/bench_ifu.py --shape 2048 --exposures 4 --memory-limit 1GiB   # NIRSpec

Frames (noise on a slice pattern with NaN/DQ 513 gaps, a few hot pixels common to every
exposure) are simulated into a Zarr store first (not timed). Each run is a fresh process
measured by ``_harness.run_measured`` (wall time, peak RSS of the process tree):

- ``daskod``: ``detect_outliers(mode="ifu")`` reading the Zarr inputs, ``in_memory=False``;
- ``reference``: the reference's steps on whole numpy frames (``np.diff`` with prepend, a
  float64 stack, ``nanmin``, ``np.pad`` + a window view + ``np.nanmedian``, ``nanpercentile``),
  as jwst's ``outlier_detection/ifu.py`` computes them.

Both print a digest of the outlier mask; the script checks they are identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def simulate(store: str, n: int, shape: tuple[int, int], seed: int = 0) -> None:
    import zarr

    rng = np.random.default_rng(seed)
    ny, nx = shape
    hot = (rng.integers(8, ny - 8, 50), rng.integers(8, nx - 8, 50))
    slice_w = 32
    for k in range(n):
        sky = 20 + 5 * np.sin(np.arange(nx) * 2 * np.pi / slice_w)[None, :]
        sci = (sky + rng.normal(0, 2, shape)).astype(np.float32)
        dq = np.zeros(shape, np.uint32)
        gaps = (np.arange(nx) % slice_w) >= slice_w - 2
        sci[:, gaps] = np.nan
        dq[:, gaps] = 513
        sci[hot] += 300
        for name, arr in (("sci", sci), ("err", np.full(shape, 2, np.float32)), ("dq", dq)):
            z = zarr.create_array(store=store, name=f"{k}/{name}", shape=shape,
                                  dtype=arr.dtype, chunks=(256, nx), compressors=None,
                                  fill_value=0, overwrite=True)
            z[...] = arr


def _digest(masks: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for m in masks:
        h.update(np.packbits(m).tobytes())
    return h.hexdigest()


def _rusage() -> dict:
    return {"self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def child_daskod(args: argparse.Namespace) -> dict:
    import zarr

    import daskod

    exps = [daskod.Exposure(sci=zarr.open_array(args.store, path=f"{k}/sci", mode="r"),
                            err=zarr.open_array(args.store, path=f"{k}/err", mode="r"),
                            dq=zarr.open_array(args.store, path=f"{k}/dq", mode="r"),
                            instrument="NIRSPEC", detector="NRS1") for k in range(args.exposures)]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        result = daskod.detect_outliers(exps, mode="ifu", memory_limit=args.memory_limit,
                                        scheduler=args.scheduler, in_memory=False,
                                        store=f"{tmp}/work", tile_size=args.tile_size)
        wall = time.perf_counter() - start
        masks = [(np.asarray(d) & 16) != 0 for d in result.dq]
    return {"wall_s": wall, "n_flagged": int(sum(result.n_flagged)), "digest": _digest(masks),
            "timings": result.timings}


def child_reference(args: argparse.Namespace) -> dict:
    import zarr

    start = time.perf_counter()
    scis = [zarr.open_array(args.store, path=f"{k}/sci", mode="r")[...]
            for k in range(args.exposures)]
    dqs = [zarr.open_array(args.store, path=f"{k}/dq", mode="r")[...]
           for k in range(args.exposures)]
    ny, nx = scis[0].shape
    kern = (7, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diffarr = np.zeros([len(scis), ny, nx])
        for j, (sci, dq) in enumerate(zip(scis, dqs, strict=True)):
            sci[(dq & 1).astype(bool)] = np.nan
            left = np.diff(sci, axis=0, prepend=0)
            right = np.flip(np.diff(np.flip(sci, axis=0), axis=0, prepend=0), axis=0)
            comb = np.zeros([2, ny, nx])
            comb[0], comb[1] = np.abs(left), np.abs(right)
            diffarr[j] = np.nanmin(comb, axis=0)
        minarr = np.nanmin(diffarr, axis=0)
        padded = np.pad(minarr, [[k // 2] for k in kern])
        normarr = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, kern),
                               axis=(-2, -1))
        nfloor = np.nanmedian(minarr) / 3
        normarr[normarr < nfloor] = nfloor
        minnorm = minarr / normarr
        pct = np.nanpercentile(minnorm[4:ny - 4, 4:nx - 4], 99.8)
    mask = minnorm > pct
    wall = time.perf_counter() - start
    return {"wall_s": wall, "n_flagged": int(mask.sum()) * len(scis),
            "digest": _digest([mask] * len(scis))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exposures", type=int, default=4)
    parser.add_argument("--shape", type=int, default=1024)
    parser.add_argument("--memory-limit", default="512MiB")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--child", choices=["daskod", "reference"], default=None)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    if args.child:
        out = (child_daskod if args.child == "daskod" else child_reference)(args)
        print(json.dumps({**out, **_rusage()}))
        return
    from _harness import fmt_mib, run_measured

    with tempfile.TemporaryDirectory(prefix="daskod-ifu-", dir=args.tmp) as tmp:
        store = os.path.join(tmp, "frames.zarr")
        simulate(store, args.exposures, (args.shape, args.shape))
        inputs = args.exposures * args.shape**2 * 12
        print(f"{args.exposures} x {args.shape}^2 exposures (SCI+ERR+DQ {fmt_mib(inputs)}), "
              f"daskod memory_limit={args.memory_limit}, scheduler={args.scheduler}", flush=True)
        common = [__file__, "--store", store, "--exposures", str(args.exposures),
                  "--memory-limit", args.memory_limit, "--scheduler", args.scheduler]
        if args.tile_size:
            common += ["--tile-size", str(args.tile_size)]
        runs = {}
        for name in ("daskod", "reference"):
            m = run_measured([*common, "--child", name])
            if m.returncode != 0:
                raise SystemExit(f"{name} run failed")
            runs[name] = m
            print(f"{name:<10} {m.line()}   flagged {m.output['n_flagged']}", flush=True)
        same = runs["daskod"].output["digest"] == runs["reference"].output["digest"]
        d, r = runs["daskod"], runs["reference"]
        print(f"identical outlier masks: {same}; daskod/reference: wall "
              f"{d.wall_s / r.wall_s:.2f}x, peak RSS {d.peak_tree_rss / r.peak_tree_rss:.2f}x")
        print("daskod phases: " + ", ".join(f"{k} {v:.2f} s"
                                            for k, v in d.output["timings"].items()))
        if not same:
            raise SystemExit("outlier masks differ")


if __name__ == "__main__":
    main()
