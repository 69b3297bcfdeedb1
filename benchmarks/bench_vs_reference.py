"""``daskod run`` against the real reference step (jwst 3.0.0) on the same JWST files.

Both tools run as fresh whole processes (imports, reading the files, writing the
``*_crf.fits`` products), one after the other, on the same simulated ``*_cal.fits`` and
association (S_REGION recomputed by the reference's own function, as in the parity suite).
For each N: wall time and peak RSS of each process tree (sampled every 0.1 s with psutil),
their ratios, the Jaccard index of the new-outlier masks and the per-exposure flag counts,
and daskod's phase breakdown (its "Phase ..." log lines). The median of ``--repeats`` runs
is reported; ratios come from the same run, so compare them only on a quiet machine.

    python benchmarks/bench_vs_reference.py                       # N = 8 and 16, 2048^2, 3 repeats
    python benchmarks/bench_vs_reference.py --n 8 --repeats 1 --workdir /scratch/bench
    python benchmarks/bench_vs_reference.py --memory-limit 2GiB --scheduler processes

The reference comes from $DASKOD_REFERENCE_PYTHON or the cached environment (see
``daskod/datasets/_reference.py``). The inputs of N exposures take ~100 MiB each on disk,
the two tools' products as much again each: check the free space of ``--workdir``.
For inputs the reference cannot hold in memory, ``benchmarks/bench_files.py`` runs daskod
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import TreePeak

SAMPLE_S = 0.1


def measure(cmd: list[str], *, env: dict | None = None, cwd: str | None = None
            ) -> tuple[float, int, int, str]:
    """Wall seconds, peak tree RSS, exit code and combined output of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd)
    watcher = TreePeak(proc.pid, SAMPLE_S)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    return wall, watcher.stop(), proc.returncode, out


def prepare(n: int, shape: int, folder: str, python: str) -> dict:
    """Simulate N exposures (through Zarr: one in memory at a time), write the products and
    let the reference recompute their S_REGION."""
    from daskod import datasets
    from daskod.datasets._reference import run_reference_jobs

    start = time.perf_counter()
    sim = datasets.make_dithered_imaging(n_exposures=n, shape=(shape, shape), seed=0,
                                         store=os.path.join(folder, "sim.zarr"))
    written = datasets.write_cal_files(sim.exposures, os.path.join(folder, "in"))
    shutil.rmtree(os.path.join(folder, "sim.zarr"))
    (res,) = run_reference_jobs([{"kind": "s_region", "files": written["files"]}],
                                python=python, workdir=folder)
    if not res["ok"]:
        raise RuntimeError(res["error"])
    size = sum(os.path.getsize(p) for p in written["files"]) / 2**20
    print(f"  wrote {n} x {shape}^2 cal files ({size:.0f} MiB) in "
          f"{time.perf_counter() - start:.0f} s (not timed)", flush=True)
    return written


def run_reference(python: str, asn: str, outdir: str, workdir: str) -> tuple[float, int]:
    from daskod.datasets._reference import _WORKER, reference_environment

    os.makedirs(outdir, exist_ok=True)
    crds = tempfile.mkdtemp(prefix="crds-", dir=workdir)
    jobs = os.path.join(workdir, "jobs.json")
    results = os.path.join(workdir, "results.json")
    with open(jobs, "w", encoding="utf-8") as f:
        json.dump([{"kind": "run", "input": asn, "output_dir": outdir, "params": {}}], f)
    wall, peak, code, out = measure([python, str(_WORKER), jobs, results],
                                    env=reference_environment(crds), cwd=workdir)
    shutil.rmtree(crds, ignore_errors=True)
    with open(results, encoding="utf-8") as f:
        (res,) = json.load(f)
    if code != 0 or not res["ok"]:
        raise RuntimeError(f"reference failed:\n{res.get('error') or out[-3000:]}")
    return wall, peak


_PHASE = re.compile(r"Phase (\S+?):.*? in ([0-9.]+) s")


def run_daskod(asn: str, outdir: str, args: argparse.Namespace) -> tuple[float, int, dict]:
    cmd = [sys.executable, "-m", "daskod.cli", "run", asn, "-o", outdir, "--no-progress", "-v"]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    if args.scheduler:
        cmd += ["--scheduler", args.scheduler]
    wall, peak, code, out = measure(cmd)
    if code != 0:
        raise RuntimeError(f"daskod run failed:\n{out[-3000:]}")
    phases: dict[str, float] = {}
    for line in out.splitlines():
        m = _PHASE.search(line)
        if m:
            phases[m.group(1)] = phases.get(m.group(1), 0.0) + float(m.group(2))
    return wall, peak, phases


def bench(n: int, args: argparse.Namespace, python: str) -> dict:
    from daskod.datasets._reference import compare_new_outliers

    folder = tempfile.mkdtemp(prefix=f"bench-vs-reference-{n}-", dir=args.workdir)
    try:
        print(f"N = {n}:", flush=True)
        written = prepare(n, args.shape, folder, python)
        ref, dk, phases = [], [], []
        for r in range(args.repeats):
            for name in ("reference", "daskod"):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            wall, peak = run_reference(python, written["asn"], os.path.join(folder, "reference"),
                                       folder)
            ref.append((wall, peak))
            wall, peak, ph = run_daskod(written["asn"], os.path.join(folder, "daskod"), args)
            dk.append((wall, peak))
            phases.append(ph)
            print(f"  repeat {r + 1}: reference {ref[-1][0]:6.1f} s {ref[-1][1] / 2**30:5.2f} GiB"
                  f" | daskod {dk[-1][0]:6.1f} s {dk[-1][1] / 2**30:5.2f} GiB", flush=True)
        cmp = compare_new_outliers(written["files"], os.path.join(folder, "reference"),
                                   os.path.join(folder, "daskod"))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in (
        ("ref_wall", [w for w, _ in ref]), ("ref_rss", [p for _, p in ref]),
        ("dk_wall", [w for w, _ in dk]), ("dk_rss", [p for _, p in dk]))}
    phase_med = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phases[-1]}
    return {"n": n, **med, "jaccard": cmp["jaccard"], "rows": cmp["rows"],
            "phases": phase_med, "repeats": args.repeats}


def report(results: list[dict], args: argparse.Namespace) -> str:
    lines = [f"daskod run vs jwst 3.0.0 OutlierDetectionStep, {args.shape}^2 exposures, "
             f"median of {args.repeats}, memory_limit {args.memory_limit or 'default'}, "
             f"scheduler {args.scheduler or 'default'}, {os.cpu_count()} cores",
             "", "| N | reference wall | daskod wall | wall ratio | reference peak RSS | "
             "daskod peak RSS | RSS ratio | Jaccard |", "|---|---|---|---|---|---|---|---|"]
    lines.extend(f"| {r['n']} | {r['ref_wall']:.1f} s | {r['dk_wall']:.1f} s | "
                 f"{r['dk_wall'] / r['ref_wall']:.2f} | {r['ref_rss'] / 2**30:.2f} GiB | "
                 f"{r['dk_rss'] / 2**30:.2f} GiB | {r['dk_rss'] / r['ref_rss']:.2f} | "
                 f"{r['jaccard']:.4f} |" for r in results)
    for r in results:
        counts = ", ".join(f"{row['reference']}/{row['daskod']}" for row in r["rows"])
        lines.append(f"\nN = {r['n']}: flags per exposure (reference/daskod): {counts}")
        if r["phases"]:
            total = sum(r["phases"].values())
            parts = ", ".join(f"{k} {v:.1f} s" for k, v in r["phases"].items())
            lines.append(f"daskod phases (median): {parts} (sum {total:.1f} s of "
                         f"{r['dk_wall']:.1f} s wall; the rest is imports, reading metadata, "
                         "writing products)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16], help="exposures (8 16)")
    parser.add_argument("--shape", type=int, default=2048, help="detector edge (2048)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool (median of 3)")
    parser.add_argument("--memory-limit", default=None, help="daskod's --memory-limit")
    parser.add_argument("--scheduler", default=None, help="daskod's --scheduler")
    parser.add_argument("--workdir", default=None, help="where inputs and products go")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()
    from daskod.datasets._reference import reference_python

    python = reference_python()
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    results = [bench(n, args, python) for n in args.n]
    print()
    print(report(results, args))


if __name__ == "__main__":
    main()
