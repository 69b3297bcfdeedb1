"""The least wall time the files-in, files-out job can take on this machine, measured piece by
piece, against the reference and ``daskod run`` measured in the same run.

The floor counts only work no implementation of the algorithm can skip, each piece at its
cheapest measured cost, and assumes the parallel part spreads perfectly over the cores:

* serial start: a fresh interpreter importing what reading a JWST product's WCS needs
  (stdatamodels, gwcs, drizzle) and reading one product's metadata (the first read loads the
  ASDF extensions), as one process, wall time;
* serial plan: the output frame and the coarse pixel maps of every exposure (daskod's, far
  cheaper than the reference's per-pixel gwcs evaluation);
* parallel, per exposure (CPU seconds, divided by the cores): reading its metadata, reading
  SCI / DQ / VAR_RNOISE / ERR, evaluating its pixel map once, one whole-frame drizzle, one
  bilinear blot of a frame, and copying the file to a new one (the product's bytes).

Left out, so the floor is below any real run: the weight thresholds, the median, the flag
rule, the NaN matching, the working store, scheduling and process start-up of workers, and
the exit. ``floor / reference`` is the best wall ratio any implementation could print here.

    python benchmarks/bench_floor.py                 # N = 8, 2048^2, with both tools
    python benchmarks/bench_floor.py --n 32 --no-tools
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_vs_reference as bvr
from _harness import median_of

START = """
import sys
from stdatamodels.jwst import datamodels
import gwcs, drizzle.resample
with datamodels.open(sys.argv[1]) as m:
    m.meta.wcs
"""


def serial_start(path: str, repeats: int = 3) -> float:
    """Median wall time of a fresh process importing the JWST stack and reading one WCS."""
    walls = []
    for _ in range(repeats):
        wall, _, code, out = bvr.measure([sys.executable, "-c", START, path])
        if code != 0:
            raise RuntimeError(f"the start-up probe failed:\n{out[-3000:]}")
        walls.append(wall)
    return median_of(walls)


def per_exposure(files: list[str], outdir: str) -> tuple[dict[str, float], float]:
    """CPU seconds per piece summed over the exposures (one process, one thread), and the
    serial plan's wall time."""
    import numpy as np

    from daskod.blot._kernels import blot_tile
    from daskod.io._jwst import read_jwst
    from daskod.modes._params import ImagingParams
    from daskod.modes.imaging import ImagingPlan
    from daskod.resample._kernels import drizzle_tile
    from daskod.resample._weights import build_driz_weight

    cost = dict.fromkeys(("metadata", "read", "pixel map", "drizzle", "blot", "write"), 0.0)

    def timed(piece: str, fn, *args, **kwargs):
        t = time.process_time()
        out = fn(*args, **kwargs)
        cost[piece] += time.process_time() - t
        return out

    exposures = [timed("metadata", read_jwst, [f])[0] for f in files]
    t = time.perf_counter()
    plan = ImagingPlan(exposures, ImagingParams(), max_output_pixels=2**32)
    plan_s = time.perf_counter() - t
    frame, p = plan.frame, plan.params
    for path, exp, pm in zip(files, exposures, plan.pixel_maps, strict=True):
        sci, dq, var, _ = timed("read", lambda e=exp: [np.asarray(a) for a in (
            e.sci, e.dq, e.var_rnoise, e.err)])
        ny, nx = exp.shape
        texp = float(exp.exposure_time or 1.0)
        pixmap = timed("pixel map", pm.evaluate, 0, ny, 0, nx)
        weight = timed("drizzle", build_driz_weight, dq, weight_type=p.weight_type,
                       bad_mask=p.bad_mask, var_rnoise=var, exposure_time=texp)
        img, _ = timed("drizzle", drizzle_tile, [(sci, weight, pixmap, texp)], frame.shape,
                       kernel=p.kernel, pixfrac=p.pixfrac, fillval=p.fillval)
        timed("blot", blot_tile, img, pixmap, (0, 0), frame.shape)
        timed("write", shutil.copyfile, path, os.path.join(outdir, os.path.basename(path)))
    return cost, plan_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="exposures (8)")
    parser.add_argument("--shape", type=int, default=2048, help="detector edge (2048)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores (all)")
    parser.add_argument("--no-tools", action="store_true",
                        help="measure the floor only, not the reference and daskod")
    parser.add_argument("--workdir", default=None, help="where inputs and products go")
    args = parser.parse_args()
    from daskod.datasets._reference import reference_python

    python = reference_python()
    folder = tempfile.mkdtemp(prefix="bench-floor-", dir=args.workdir)
    try:
        written = bvr.prepare(args.n, args.shape, folder, python)
        files = written["files"]
        start = serial_start(files[0])
        copies = os.path.join(folder, "copies")
        os.makedirs(copies)
        cost, plan_s = per_exposure(files, copies)
        parallel = sum(cost.values()) / args.cores
        floor = start + plan_s + parallel
        print(f"N = {args.n}, {args.shape}^2, {args.cores} cores: floor {floor:.1f} s = "
              f"start {start:.1f} s + plan {plan_s:.1f} s + parallel {parallel:.1f} s")
        print("  CPU per piece, all exposures: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in cost.items()))
        if not args.no_tools:
            ref, _ = bvr.run_reference(python, written["asn"], os.path.join(folder, "ref"),
                                       folder)
            ns = argparse.Namespace(memory_limit=None, scheduler=None)
            dk, _, _ = bvr.run_daskod(written["asn"], os.path.join(folder, "daskod"), ns)
            print(f"  reference {ref:.1f} s, daskod run {dk:.1f} s: floor / reference "
                  f"{floor / ref:.3f}, daskod / reference {dk / ref:.3f}, daskod / floor "
                  f"{dk / floor:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
