"""``daskod run`` on real JWST products: N simulated 2048^2 *_cal.fits files and an
association, processed with ``--memory-limit``; wall time and peak RSS of the process tree.

    python benchmarks/bench_files.py                  # 16 files, --memory-limit 1GiB
    python benchmarks/bench_files.py --n 4 --shape 1024
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import TreePeak, fmt_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--shape", type=int, default=2048)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--scheduler", default="threads")
    args = parser.parse_args()
    from daskod import datasets

    with tempfile.TemporaryDirectory(prefix="daskod-files-") as tmp:
        start = time.perf_counter()
        sim = datasets.make_dithered_imaging(n_exposures=args.n,
                                             shape=(args.shape, args.shape), seed=0,
                                             store=os.path.join(tmp, "sim.zarr"))
        files = datasets.write_cal_files(sim.exposures, os.path.join(tmp, "in"))
        size = sum(os.path.getsize(p) for p in files["files"]) / 2**20
        print(f"wrote {args.n} cal files ({size:.0f} MiB) in {time.perf_counter() - start:.0f}"
              " s (not timed)", flush=True)
        cmd = [sys.executable, "-m", "daskod.cli", "run", files["asn"], "-o",
               os.path.join(tmp, "out"), "--memory-limit", args.memory_limit, "--scheduler",
               args.scheduler, "--no-progress"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        watcher = TreePeak(proc.pid)
        out, _ = proc.communicate()
        wall = time.perf_counter() - start
        peak = watcher.stop()
        tail = [line for line in out.splitlines() if "Done in" in line or "Phase" in line]
        print("\n".join(tail))
        print(f"daskod run on {args.n} x {args.shape}^2 files, --memory-limit "
              f"{args.memory_limit}: exit {proc.returncode}, wall {wall:.1f} s (process, with "
              f"imports and FITS writing), peak RSS tree {fmt_mib(peak)}")
        n_out = len(os.listdir(os.path.join(tmp, "out"))) if proc.returncode == 0 else 0
        print(f"products written: {n_out}")


if __name__ == "__main__":
    main()
