"""This checkout against an earlier commit, in the same run, on the configurations of
``bench_imaging.py``, ``bench_budget.py``, ``bench_tso.py`` and ``bench_ifu.py``.

    python benchmarks/bench_vs_previous.py                      # against 8915289, 3 repeats
    python benchmarks/bench_vs_previous.py --previous HEAD~1 --repeats 5 --quick
    python benchmarks/bench_vs_previous.py --only ifu,processes --repeats 7

The earlier commit is checked out into a temporary folder (``git worktree add --detach``);
each configuration runs in a fresh process (``_child.py``) with ``PYTHONPATH`` pointing at one
checkout or the other, alternating previous/current for every repeat so that both see the same
machine load. Printed: median wall time of the ``detect_outliers`` call and peak RSS of the
process tree for both, and the ratio current / previous (below 1: faster now).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _harness import run_measured  # noqa: E402

CHILD = os.path.join(HERE, "_child.py")


def simulate(root: str, quick: bool) -> dict[str, str]:
    from daskod import datasets

    imaging = 4 if quick else 8
    shape = (1024, 1024) if quick else (2048, 2048)
    out = {}
    sim = datasets.make_dithered_imaging(n_exposures=imaging * 2, shape=shape, seed=0,
                                         store=os.path.join(root, "imaging.zarr"))
    for name, exps in (("imaging", sim.exposures[:imaging]), ("budget", sim.exposures)):
        out[name] = os.path.join(root, f"{name}.pkl")
        with open(out[name], "wb") as f:
            pickle.dump(exps, f)
    nints = 400 if quick else 1500
    tso = datasets.make_tso_cube(nints, (256, 1024), seed=0,
                                 store=os.path.join(root, "tso.zarr"))
    out["tso"] = os.path.join(root, "tso.pkl")
    with open(out["tso"], "wb") as f:
        pickle.dump(tso.cube, f)
    ifu = datasets.make_ifu_exposures(4, shape=(512, 512) if quick else (1024, 1024), seed=0,
                                      store=os.path.join(root, "ifu.zarr"))
    out["ifu"] = os.path.join(root, "ifu.pkl")
    with open(out["ifu"], "wb") as f:
        pickle.dump(ifu.exposures, f)
    return out


def configurations(data: dict[str, str]) -> list[tuple[str, list[str]]]:
    return [
        ("imaging, 1 GiB, threads", ["daskod", data["imaging"], "--memory-limit", "1GiB",
                                     "--scheduler", "threads"]),
        ("imaging, 1 GiB, processes", ["daskod", data["imaging"], "--memory-limit", "1GiB",
                                       "--scheduler", "processes"]),
        ("budget: 2N imaging, 512 MiB, threads", ["daskod", data["budget"], "--memory-limit",
                                                  "512MiB", "--scheduler", "threads"]),
        ("tso, 1 GiB, threads", ["tso", data["tso"], "--memory-limit", "1GiB",
                                 "--scheduler", "threads"]),
        ("ifu difference, 1 GiB, threads", ["daskod", data["ifu"], "--memory-limit", "1GiB",
                                            "--scheduler", "threads"]),
    ]


def checkout(ref: str, folder: str) -> str:
    path = os.path.join(folder, "previous")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, ref], check=True,
                   capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", default="8915289", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small data, for a smoke test")
    parser.add_argument("--tmp", default=None, help="where data and checkouts go")
    parser.add_argument("--only", default=None,
                        help="comma-separated words: run the configurations naming one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vs-previous-", dir=args.tmp) as tmp:
        previous = checkout(args.previous, tmp)
        try:
            # Simulated in another process: children inherit this one's high-water mark of
            # RSS (ru_maxrss survives fork and exec), which must stay small.
            out = subprocess.run(
                [sys.executable, "-c", "import sys, json; sys.path.insert(0, sys.argv[1]); "
                 "from bench_vs_previous import simulate; "
                 "print(json.dumps(simulate(sys.argv[2], sys.argv[3] == '1')))",
                 HERE, tmp, "1" if args.quick else "0"], check=True, capture_output=True,
                text=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"current {ROOT} against {args.previous}, median of {args.repeats}, "
                  f"{os.cpu_count()} cores", flush=True)
            print(f"{'configuration':<38} {'previous':>16} {'current':>16} {'wall':>6} "
                  f"{'RSS':>6}")
            for label, cmd in configurations(data):
                if args.only and not any(w in label for w in args.only.split(",")):
                    continue
                walls: dict[str, list[float]] = {"previous": [], "current": []}
                peaks: dict[str, list[int]] = {"previous": [], "current": []}
                for _ in range(args.repeats):
                    for name, path in (("previous", previous), ("current", ROOT)):
                        env = {**os.environ, "PYTHONPATH": path}
                        # Not in a checkout: a forkserver started with "-c" imports from
                        # its working folder first, whatever PYTHONPATH says.
                        m = run_measured([CHILD, *cmd, "--tmp", tmp], env=env, cwd=tmp)
                        if m.returncode != 0:
                            raise SystemExit(f"{label} ({name}) failed")
                        walls[name].append(m.output["wall_s"])
                        peaks[name].append(m.peak_tree_rss)
                w = {k: statistics.median(v) for k, v in walls.items()}
                p = {k: max(v) for k, v in peaks.items()}
                print(f"{label:<38} {w['previous']:6.1f} s {p['previous'] / 2**20:5.0f} MiB "
                      f"{w['current']:6.1f} s {p['current'] / 2**20:5.0f} MiB "
                      f"{w['current'] / w['previous']:6.2f} "
                      f"{p['current'] / p['previous']:6.2f}", flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", previous],
                           check=False, capture_output=True)


if __name__ == "__main__":
    main()
