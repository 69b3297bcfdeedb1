"""Memory-budget benchmark: one ``memory_limit`` honoured at every number of exposures, in one
process and on a LocalCluster of 2 worker processes.

    python benchmarks/bench_budget.py                  # N = 8, 32, 64 x 2048^2; 512 MiB, 1 GiB
    python benchmarks/bench_budget.py --quick          # N = 4, 8 x 1024^2 (a few minutes)
    python benchmarks/bench_budget.py --workdir /scratch/bench --repeat 3

The largest observation is simulated once into a Zarr folder under ``--workdir`` (reused when
already there; N < max uses its first N exposures). Every configuration runs in a fresh
Python process (``_child.py``); printed per run:

- one process (threads, and synchronous): wall time of the ``detect_outliers`` call, peak RSS
  of the whole process tree (sampled every 20 ms, plus the kernel's high-water mark), whether
  it stayed under ``memory_limit``, and the wall time per exposure relative to the smallest N
  (1.00 = linear);
- LocalCluster(2 processes, 1 thread each, each with memory_limit / 2 as its distributed
  memory_limit): each worker's peak RSS against its share, workers paused (status seen by
  sampling the scheduler, or "Pausing worker" in the worker logs) and restarted (worker pids
  that changed, or "Restarting" in the nanny logs), and the peak RSS of the whole tree (client
  and workers; each Python process starts at ~100-180 MiB of imports, outside the budget
  for the client).

"tile" is the median's chunk edge: the budget's tile, or the whole frame when that is smaller.
A budget daskod cannot meet is refused before work with a MemoryBudgetError that says what
would fit; such rows print "refused" and the message.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import fmt_mib, run_measured

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
MiB = 2**20


def simulate(n: int, edge: int, workdir: str) -> str:
    """The pickled exposures of an ``n`` x ``edge``^2 observation in Zarr (reused if there)."""
    import glob

    from daskod import datasets

    for done in glob.glob(os.path.join(workdir, f"imaging-*x{edge}", "done.json")):
        with open(done) as f:
            have = json.load(f)["n"]
        if have >= n:  # a larger simulation serves: runs take its first n exposures
            print(f"reusing {have} x {edge}^2 exposures in {os.path.dirname(done)}", flush=True)
            return os.path.join(os.path.dirname(done), "exposures.pkl")
    root = os.path.join(workdir, f"imaging-{n}x{edge}")
    pkl = os.path.join(root, "exposures.pkl")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    need = n * edge * edge * 4 * 5
    free = shutil.disk_usage(root).free
    print(f"simulating {n} x {edge}^2 into {root} (~{need / 2**30:.1f} GiB; "
          f"{free / 2**30:.0f} GiB free)", flush=True)
    if free < 2.5 * need:  # inputs, plus the runs' working stores
        sys.exit(f"not enough disk under {workdir}: give --workdir with >= "
                 f"{2.5 * need / 2**30:.0f} GiB free")
    start = time.perf_counter()
    sim = datasets.make_dithered_imaging(n_exposures=n, shape=(edge, edge), seed=0,
                                         store=os.path.join(root, "inputs.zarr"))
    with open(pkl, "wb") as f:
        pickle.dump(sim.exposures, f)
    took = time.perf_counter() - start
    with open(os.path.join(root, "done.json"), "w") as f:
        json.dump({"n": n, "edge": edge, "seconds": took}, f)
    print(f"  simulated in {took:.1f} s ({took / n:.2f} s per exposure; not timed)", flush=True)
    return pkl


def measure(args: list[str], repeat: int, tmp: str) -> dict:
    """Median wall time and the largest peaks over ``repeat`` fresh-process runs."""
    runs = []
    for _ in range(repeat):
        m = run_measured([CHILD, *args, "--tmp", tmp, "--refusal-ok"])
        if m.returncode != 0:
            return {"failed": m.returncode}
        if "refused" in m.output:
            return {"refused": m.output["refused"], "tree": m.peak_tree_rss}
        runs.append(m)
    out = runs[-1].output
    row = {"wall": statistics.median(m.output["wall_s"] for m in runs),
           "walls": [m.output["wall_s"] for m in runs],
           "tree": max(m.peak_tree_rss for m in runs),
           "flagged": out["n_flagged"], "tile": out.get("tile")}
    if "worker_peaks" in out:
        row["worker_peaks"] = [max(p) for p in zip(*(m.output["worker_peaks"] for m in runs),
                                                   strict=False)]
        row["paused"] = max(m.output["workers_paused"] for m in runs)
        row["restarted"] = max(m.output["workers_restarted"] for m in runs)
        row["share"] = out["worker_share"]
        row["start_rss"] = out["worker_start_rss"]
    return row


def describe(label: str, n: int, limit: int, row: dict) -> str:
    head = f"  {label:<22} N={n:<3}"
    if "failed" in row:
        return f"{head} FAILED (exit {row['failed']})"
    if "refused" in row:
        return f"{head} refused: {row['refused']}"
    walls = ", ".join(f"{w:.1f}" for w in row["walls"])
    text = (f"{head} wall {row['wall']:7.1f} s ({walls})  {row['wall'] / n:5.2f} s/exp  "
            f"tile {row['tile']}  tree peak {fmt_mib(row['tree'])}")
    if "worker_peaks" in row:
        share = row["share"]
        peaks = ", ".join(fmt_mib(p).strip() for p in row["worker_peaks"])
        ok = all(p < share for p in row["worker_peaks"])
        text += (f"\n  {'':<22}        workers {peaks} (share {fmt_mib(share).strip()} each: "
                 f"{'under' if ok else 'OVER'}; at start "
                 f"{', '.join(fmt_mib(p).strip() for p in row['start_rss'])})  "
                 f"paused {row['paused']}  restarted {row['restarted']}")
    else:
        text += "  under limit" if row["tree"] < limit else "  OVER LIMIT"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "daskod-bench-budget"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--shape", type=int, default=2048)
    parser.add_argument("--limits", nargs="+", default=["512MiB", "1GiB"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-sync", action="store_true", help="skip the synchronous runs")
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N = 4, 8 x 1024^2")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.shape = [4, 8], 1024
    import dask

    os.makedirs(args.workdir, exist_ok=True)
    pkl = simulate(max(args.sizes), args.shape, args.workdir)
    configs = [("threads", ["daskod", "--scheduler", "threads"])]
    if not args.no_sync:
        configs.append(("synchronous", ["daskod", "--scheduler", "synchronous"]))
    if not args.no_cluster:
        configs.append(("LocalCluster 2x1", ["cluster-budget", "--workers", "2"]))
    results: dict[tuple[str, str], dict[int, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="runs-", dir=args.workdir) as tmp:
        for limit_text in args.limits:
            limit = dask.utils.parse_bytes(limit_text)
            print(f"\nmemory_limit = {limit_text} ({args.shape}^2 exposures)", flush=True)
            for label, cmd in configs:
                rows = results.setdefault((limit_text, label), {})
                for n in sorted(args.sizes):
                    rows[n] = measure([*cmd[:1], pkl, *cmd[1:], "--memory-limit", limit_text,
                                       "--first", str(n)], args.repeat, tmp)
                    print(describe(label, n, limit, rows[n]), flush=True)
    print(f"\nLinearity: wall time per exposure relative to N={min(args.sizes)} "
          "(1.00 = linear)")
    for (limit_text, label), rows in results.items():
        base = rows[min(args.sizes)]
        if "wall" not in base:
            continue
        ratios = "  ".join(f"N={n}: {row['wall'] / n / (base['wall'] / min(args.sizes)):.2f}"
                           for n, row in sorted(rows.items()) if "wall" in row)
        print(f"  {limit_text:>7} {label:<22} {ratios}")


if __name__ == "__main__":
    main()
