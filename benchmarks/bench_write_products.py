"""Writing ``*_crf.fits`` products alone: N x 2048^2 cal files in, their products out, each
writer in a fresh process (wall time of the writes and peak RSS above the process's RSS
before the first write), this checkout against another (``--baseline``), interleaved, median
of ``--repeat`` runs.

    python benchmarks/bench_write_products.py --baseline /path/to/old/daskod/checkout
    python benchmarks/bench_write_products.py --n 8 --edge 2048 --repeat 3

The new DQ is each input's DQ with one pixel in 500 flagged (DO_NOT_USE | OUTLIER), held in
a Zarr store in memory and handed over as a Dask array, as the engine hands it. The inputs
are simulated once into ``--data`` (the same files as ``bench_io_budget.py``'s case c).
``cp`` of the same files gives the disk's copy speed in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 2**20

CHILD = r"""
import glob, os, sys, threading, time
import numpy as np, psutil, zarr, dask.array as da
from astropy.io import fits
from stdatamodels.jwst import datamodels  # imports are not timed
import gwcs, asdf
from daskod.io._products import write_product
files, out = sys.argv[1].split(","), sys.argv[2]
dqs = []
for path in files:
    with fits.open(path) as hdul:
        dq = hdul["DQ"].data.astype(np.uint32)
    dq.reshape(-1)[::500] |= np.uint32(17)
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=dq.shape,
                          chunks=(1024, 1024), dtype="u4")
    z[:] = dq
    dqs.append(da.from_zarr(z))
    del dq
me = psutil.Process(); base = me.memory_info().rss; peak = [base]; done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], me.memory_info().rss); done.wait(0.01)
t = threading.Thread(target=sample, daemon=True); t.start()
start = time.perf_counter()
for path, dq in zip(files, dqs):
    write_product(path, os.path.join(out, os.path.basename(path).replace("_cal", "_crf")), dq)
wall = time.perf_counter() - start
done.set(); t.join()
print(wall, peak[0] - base)
"""


def run_writer(checkout: str, files: list[str], out: str) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=checkout)
    proc = subprocess.run([sys.executable, "-c", CHILD, ",".join(files), out], env=env,
                          cwd=out, capture_output=True, text=True, check=True)
    wall, rise = proc.stdout.split()[-2:]
    return float(wall), int(rise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--edge", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="another daskod checkout")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                       "daskod-bench-io"))
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from bench_io_budget import CASES, prepare

    spec = dict(CASES["c"], n=args.n, edge=args.edge)
    case = "c" if (args.n, args.edge) == (8, 2048) else f"write-{args.n}x{args.edge}"
    inputs = prepare(case, spec, args.data, reference=False)
    files = inputs["files"]
    size = sum(os.path.getsize(p) for p in files)
    tools = [("this checkout", os.path.dirname(HERE))]
    if args.baseline:
        tools.append((os.path.basename(args.baseline.rstrip("/")), args.baseline))
    results: dict[str, list[tuple[float, int]]] = {label: [] for label, _ in tools}
    copies = []
    for _ in range(args.repeat):
        for label, checkout in tools:
            with tempfile.TemporaryDirectory(dir=args.data) as out:
                results[label].append(run_writer(checkout, files, out))
        with tempfile.TemporaryDirectory(dir=args.data) as out:
            start = time.perf_counter()
            for path in files:
                shutil.copyfile(path, os.path.join(out, os.path.basename(path)))
            copies.append(time.perf_counter() - start)
    print(f"writing {args.n} products of {args.edge}^2 ({size / 2**30:.2f} GiB of inputs), "
          f"median of {args.repeat}:")
    for label, runs in results.items():
        walls = [w for w, _ in runs]
        print(f"  {label:<24} wall {statistics.median(walls):6.2f} s  (runs "
              f"{', '.join(f'{w:.2f}' for w in walls)})  peak RSS rise "
              f"{max(r for _, r in runs) / MiB:7.1f} MiB")
    print(f"  {'copying the inputs':<24} wall {statistics.median(copies):6.2f} s  "
          f"(shutil.copyfile, the disk's pace)")
    if args.baseline:
        ratio = (statistics.median(w for w, _ in results["this checkout"])
                 / statistics.median(w for w, _ in results[tools[1][0]]))
        print(f"  ratio this checkout / {tools[1][0]}: {ratio:.2f}")


if __name__ == "__main__":
    main()
