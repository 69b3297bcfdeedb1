"""Imaging benchmark: daskod against a plain-numpy floor, measured in the same run.

    python benchmarks/bench_imaging.py                 # 8 and 32 x 2048^2, 3 repeats
    python benchmarks/bench_imaging.py --quick         # 4 and 8 x 1024^2, 1 repeat

For each number of exposures N the observation is simulated straight into a Zarr store (not
timed), then each configuration runs in a fresh Python process: wall time of the
``detect_outliers`` call, and the peak resident memory of the whole process tree (the process
and every worker, summed, sampled every 20 ms, plus the kernel's high-water mark of the main
process). The floor loads the inputs, takes a bottleneck median of the already-aligned stack and
compares each exposure with it: no resampling, no blot, no derivative, no out-of-core.
Printed figures are medians over the repeats; ratios are taken within this run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import fmt_mib, run_measured

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")


def simulate(n: int, shape: tuple[int, int], root: str) -> str:
    from daskod import datasets

    start = time.perf_counter()
    sim = datasets.make_dithered_imaging(n_exposures=n, shape=shape, seed=0,
                                         store=os.path.join(root, "inputs.zarr"))
    path = os.path.join(root, "exposures.pkl")
    with open(path, "wb") as f:
        pickle.dump(sim.exposures, f)
    print(f"  simulated {n} x {shape[0]}x{shape[1]} into Zarr in "
          f"{time.perf_counter() - start:.1f} s (not timed)", flush=True)
    return path


def measure(label: str, args: list[str], repeat: int, tmp: str) -> dict:
    walls, trees, singles, payloads = [], [], [], []
    for _ in range(repeat):
        m = run_measured([CHILD, *args, "--tmp", tmp])
        if m.returncode != 0:
            print(f"  {label:<34} FAILED (exit {m.returncode})", flush=True)
            return {}
        walls.append(m.output["wall_s"])
        trees.append(m.peak_tree_rss)
        singles.append(m.peak_single_rss)
        payloads.append(m.output)
    row = {"label": label, "wall": statistics.median(walls), "walls": walls,
           "tree": max(trees), "single": max(singles), "payload": payloads[-1]}
    extra = ""
    if "worker_maxrss_kib" in payloads[-1]:
        extra = "  worker peaks " + ", ".join(
            fmt_mib(k * 1024).strip() for k in payloads[-1]["worker_maxrss_kib"])
        extra += f"  workers alive {payloads[-1]['workers_alive']}"
    print(f"  {label:<34} wall {row['wall']:7.2f} s (runs: "
          f"{', '.join(f'{w:.2f}' for w in walls)})  peak RSS tree {fmt_mib(row['tree'])}"
          f"  flagged {payloads[-1]['n_flagged']}{extra}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--shape", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.shape, args.repeat = [4, 8], 1024, 1
    shape = (args.shape, args.shape)
    results: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="daskod-bench-") as tmp:
        for n in args.sizes:
            print(f"\nN = {n} exposures of {shape[0]}x{shape[1]}", flush=True)
            root = os.path.join(tmp, f"n{n}")
            os.makedirs(root)
            pkl = simulate(n, shape, root)
            rows = {}
            rows["floor"] = measure("numpy floor (aligned stack)", ["floor", pkl],
                                    args.repeat, root)
            rows["threads-1g"] = measure("daskod threads, 1 GiB", [
                "daskod", pkl, "--memory-limit", "1GiB", "--scheduler", "threads"],
                args.repeat, root)
            if n <= 8:
                rows["threads-512m"] = measure("daskod threads, 512 MiB", [
                    "daskod", pkl, "--memory-limit", "512MiB", "--scheduler", "threads"],
                    args.repeat, root)
            rows["sync-1g"] = measure("daskod synchronous, 1 GiB", [
                "daskod", pkl, "--memory-limit", "1GiB", "--scheduler", "synchronous"],
                args.repeat, root)
            rows["processes-1g"] = measure("daskod processes (2), 1 GiB", [
                "daskod", pkl, "--memory-limit", "1GiB", "--scheduler", "processes"],
                args.repeat, root)
            if not args.no_cluster:
                for w in (1, 2):
                    rows[f"cluster-{w}"] = measure(f"daskod LocalCluster {w}x1 thread, 1 GiB", [
                        "cluster", pkl, "--memory-limit", "1GiB", "--workers", str(w)],
                        args.repeat, root)
            results[n] = rows
            floor = rows["floor"].get("wall")
            if floor:
                for key, row in rows.items():
                    if row and key != "floor":
                        print(f"    {row['label']:<34} {row['wall'] / floor:6.2f} x the floor")
            c1, c2 = rows.get("cluster-1", {}), rows.get("cluster-2", {})
            if c1 and c2:
                print(f"    speed-up 2 workers vs 1: {c1['wall'] / c2['wall']:.2f}x")
    if len(args.sizes) > 1:
        a, b = args.sizes[0], args.sizes[-1]
        print(f"\nLinearity ({b} vs {a} exposures; {b / a:.1f}x the data):")
        for key in results[a]:
            ra, rb = results[a].get(key), results[b].get(key)
            if ra and rb:
                print(f"  {ra['label']:<34} time x{rb['wall'] / ra['wall']:.2f}   "
                      f"peak RSS {fmt_mib(ra['tree'])} -> {fmt_mib(rb['tree'])}")


if __name__ == "__main__":
    main()
