"""TSO benchmark: a cube larger than the memory budget, simulated straight into Zarr.

    python benchmarks/bench_tso.py                    # 4000 x 256 x 1024 float32 (4 GiB SCI)
    python benchmarks/bench_tso.py --nints 400        # quick

daskod runs ``mode="tso"`` (rolling median of 25) with ``memory_limit="1GiB"`` in a fresh
process; the floor is plain numpy (load, mask, bottleneck moving median, compare) on a slice of
integrations that fits in memory, scaled to the whole cube. Wall time, peak RSS of the process
tree, and the ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import fmt_mib, run_measured

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nints", type=int, default=4000)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--tmp", default=None, help="folder for the simulated cube")
    args = parser.parse_args()
    from daskod import datasets

    with tempfile.TemporaryDirectory(prefix="daskod-tso-", dir=args.tmp) as tmp:
        start = time.perf_counter()
        sim = datasets.make_tso_cube(nints=args.nints, shape=(args.rows, args.cols), seed=0,
                                     store=os.path.join(tmp, "cube.zarr"), time_chunk=64,
                                     chunk_rows=32, with_variance=False)
        sci_gib = args.nints * args.rows * args.cols * 4 / 2**30
        print(f"simulated {args.nints} x {args.rows} x {args.cols} cube ({sci_gib:.2f} GiB of "
              f"SCI, plus ERR and DQ) in {time.perf_counter() - start:.0f} s (not timed)",
              flush=True)
        pkl = os.path.join(tmp, "cube.pkl")
        with open(pkl, "wb") as f:
            pickle.dump(sim.cube, f)
        floor = run_measured([CHILD, "tso-floor", pkl, "--slice", "400", "--tmp", tmp])
        print(f"numpy floor, {floor.output['slice']} integrations in memory: "
              f"{floor.output['wall_s']:.2f} s -> {floor.output['scaled_wall_s']:.1f} s scaled "
              f"to the cube; peak RSS {fmt_mib(floor.peak_tree_rss)}", flush=True)
        run = run_measured([CHILD, "tso", pkl, "--memory-limit", args.memory_limit,
                            "--scheduler", args.scheduler, "--tmp", tmp])
        if run.returncode != 0:
            print("daskod run FAILED")
            return
        print(f"daskod tso ({args.scheduler}, memory_limit={args.memory_limit}): wall "
              f"{run.output['wall_s']:.1f} s, peak RSS tree {fmt_mib(run.peak_tree_rss)}, "
              f"flagged {run.output['n_flagged']}, phases "
              + ", ".join(f"{k} {v:.1f}s" for k, v in run.output["timings"].items()))
        print(f"ratio to the scaled numpy floor: "
              f"{run.output['wall_s'] / floor.output['scaled_wall_s']:.2f}")
        n_cr = sim.cr_pixels.size
        print(f"injected cosmic-ray pixels: {n_cr}")


if __name__ == "__main__":
    main()
