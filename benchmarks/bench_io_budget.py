"""The memory budget from the first byte read to the last byte written: ``daskod run`` on JWST
files, the whole process tree sampled through reading, computing and writing the products,
beside the reference step on the same files where it fits in memory.

    python benchmarks/bench_io_budget.py                      # cases a and c, with the reference
    python benchmarks/bench_io_budget.py --cases a --no-reference
    python benchmarks/bench_io_budget.py --cases b --data /big/disk   # 12 GiB cube, ~26 GiB disk
    python benchmarks/bench_io_budget.py --baseline /path/to/other/daskod/checkout

Cases (inputs simulated once into ``--data`` and reused):

- a: a TSO ``*_calints.fits`` (CubeModel 1500 x 256 x 256: SCI, ERR, DQ; 1.1 GiB) at
  ``--memory-limit 512MiB --rolling-window-width 25``;
- b: a TSO ``*_calints.fits`` of 4000 x 256 x 1024 (12 GiB) at 1 GiB (the reference would
  need ~60 GiB: not run);
- c: 8 NIRCam-like 2048^2 ``*_cal.fits`` and their association at 512 MiB.

Each tool runs as a fresh process. The resident memory of the process and all its children
is sampled every 0.1 s with psutil, and the kernel's high-water mark of the largest process
(``wait4``) is read at its exit (this process reads files with ``pread``, never
memory-mapped, so that the high-water mark its children inherit at ``fork`` stays below
theirs). daskod's log lines are time-stamped as they arrive to split the wall time into
phases (imports, reading the members, each engine phase, writing the products, exit) with
each phase's peak. ``--baseline`` runs another daskod checkout (its folder put
first on ``PYTHONPATH``) on the same inputs in the same run. New outlier flags in the
products are counted (pixels whose DQ gained OUTLIER), for daskod and the reference.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
# The daskod of this checkout simulates the inputs (and is the one measured).
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _harness import tree_rss  # noqa: E402

from daskod.datasets._reference import reference_python  # noqa: E402

MiB = 2**20
OUTLIER = 16

CASES = {
    "a": {"kind": "tso", "shape": (1500, 256, 256), "limit": "512MiB",
          "args": ["--rolling-window-width", "25"], "reference": True},
    "b": {"kind": "tso", "shape": (4000, 256, 1024), "limit": "1GiB",
          "args": ["--rolling-window-width", "25"], "reference": False},
    "c": {"kind": "imaging", "n": 8, "edge": 2048, "limit": "512MiB", "args": [],
          "reference": True},
}
#: daskod log messages that end each phase (the first line matching each).
#: The engine logs its phase lines when the graph is done, and products are written by the
#: graph as soon as their flags are stored: the first product file being written (seen by
#: the sampler, :data:`FIRST_PRODUCT`) ends the computing phase, the write runs to "Wrote".
FIRST_PRODUCT = "[bench] first product file started"
DASKOD_MARKS = [("imports", r"daskod\.run INFO: Versions"),
                ("read", r"Read \d+ member"),
                ("compute", re.escape(FIRST_PRODUCT) + r"|Writing \d+ product|daskod-product-"),
                ("engine phase", r"Phase (\w+):"),  # each engine phase, by its name
                ("write", r"Wrote |Done in ")]
REFERENCE_MARKS = [("imports+open", r"OutlierDetectionStep instance created"),
                   ("step+save", r"Step OutlierDetectionStep done")]


@dataclass
class Run:
    label: str
    wall: float
    returncode: int
    samples: list[tuple[float, int]]
    lines: list[tuple[float, str]]
    kernel_max: int
    flags: int | None = None
    phases: list[tuple[str, float, int]] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max([rss for _, rss in self.samples] + [self.kernel_max])


def measure(label: str, cmd: list[str], env: dict[str, str], marks: list[tuple[str, str]],
            cwd: str, interval: float = 0.1, staged: str | None = None) -> Run:
    """Run ``cmd`` in ``cwd``; sample the tree's RSS every ``interval`` s; time-stamp output
    lines. ``staged``: a glob pattern with ``{pid}`` (the child's) of the files the run
    stages its products in; their first appearance is added as a :data:`FIRST_PRODUCT`
    line."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    lines: list[tuple[float, str]] = []
    done = threading.Event()

    def sample() -> None:
        pattern = None if staged is None else staged.format(pid=proc.pid)
        while not done.is_set():
            samples.append((time.perf_counter() - start, tree_rss(ps)))
            if pattern is not None and glob.glob(pattern):
                lines.append((time.perf_counter() - start, FIRST_PRODUCT))
                pattern = None
            done.wait(interval)

    def read() -> None:
        assert proc.stdout is not None
        lines.extend((time.perf_counter() - start, line.rstrip()) for line in proc.stdout)

    threads = [threading.Thread(target=sample, daemon=True),
               threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join()
    lines.sort(key=lambda item: item[0])
    run = Run(label, wall, proc.returncode, samples, lines, int(usage.ru_maxrss) * 1024)
    run.phases = phases(run, marks)
    return run


def phases(run: Run, marks: list[tuple[str, str]]) -> list[tuple[str, float, int]]:
    """``(name, seconds, peak sampled RSS)`` per phase. A mark ``(name, pattern)`` ends its
    phase at the first line matching it; a pattern with a group (``Phase (\\w+):``) ends a
    phase named by the group at every match. The last phase runs to the process exit."""
    edges = [("", 0.0)]
    used = set()
    for t, line in run.lines:
        for name, pattern in marks:
            hit = re.search(pattern, line)
            if hit is None or (not hit.groups() and name in used):
                continue
            used.add(name)
            edges.append((hit.group(1) if hit.groups() else name, t))
            break
    edges.append(("exit", run.wall))
    out = []
    for (_, a), (name, b) in itertools.pairwise(edges):
        inside = [rss for t, rss in run.samples if a <= t <= b + 0.1]
        out.append((name, b - a, max(inside, default=0)))
    return out


def _dq_blocks(path: str, ext: str = "DQ", rows: int = 0):
    """Blocks of rows of an image extension, read with ``pread`` (no memory map: this process
    stays small, so the children it starts do not inherit a large ``ru_maxrss``)."""
    from daskod.io._jwst import _fits_arrays

    arrays = _fits_arrays(path)
    name = {"DQ": "dq", "SCI": "sci", "ERR": "err"}[ext]
    values = arrays[name]
    rows = rows or max(1, (16 * MiB) // max(1, values.dtype.itemsize * int(
        __import__("math").prod(values.shape[1:]))))
    for i in range(0, values.shape[0], rows):
        yield values[i:i + rows]


def new_outliers(before: list[str], after: list[str]) -> int:
    """Pixels whose DQ gained the OUTLIER bit, summed over products (read in blocks)."""
    import numpy as np

    total = 0
    for a, b in zip(before, after, strict=True):
        for x, y in zip(_dq_blocks(a), _dq_blocks(b), strict=True):
            total += int(np.count_nonzero((y & OUTLIER) & ~(x & OUTLIER)))
    return total


def compare_products(ours: list[str], theirs: list[str]) -> str:
    """How daskod's products compare with the reference's, read in blocks: pixels whose
    OUTLIER flag only one of them set, and pixels that differ otherwise in DQ, SCI or ERR
    (NaN-aware)."""
    import numpy as np

    only_ours = only_theirs = 0
    differ = {"DQ": 0, "SCI": 0, "ERR": 0}
    for a, b in zip(ours, theirs, strict=True):
        blocks = {ext: (_dq_blocks(a, ext, 64), _dq_blocks(b, ext, 64)) for ext in differ}
        for dq_a, dq_b in zip(*blocks["DQ"], strict=True):
            if dq_a.shape != dq_b.shape:
                return "products of another shape than the reference's"
            flag_a, flag_b = (dq_a & OUTLIER) != 0, (dq_b & OUTLIER) != 0
            only_ours += int(np.count_nonzero(flag_a & ~flag_b))
            only_theirs += int(np.count_nonzero(flag_b & ~flag_a))
            same_flag = flag_a == flag_b
            differ["DQ"] += int(np.count_nonzero((dq_a != dq_b) & same_flag))
            for ext in ("SCI", "ERR"):
                u, v = next(blocks[ext][0]), next(blocks[ext][1])
                same = (u == v) | (np.isnan(u) & np.isnan(v))
                differ[ext] += int(np.count_nonzero(~same & same_flag))
    flags = ("outlier flags identical" if only_ours == only_theirs == 0 else
             f"outlier flags: {only_ours} only in daskod's, {only_theirs} only in the "
             "reference's")
    rest = ("all other DQ/SCI/ERR pixels identical" if not any(differ.values()) else
            "other pixels differing: " + ", ".join(f"{k} {v}" for k, v in differ.items()))
    return f"products vs the reference's: {flags}; {rest}"


def prepare(case: str, spec: dict, data: str, reference: bool) -> dict:
    """Inputs of a case (simulated once, reused); returns the paths."""
    from daskod import datasets

    root = os.path.join(data, f"case-{case}")
    done = os.path.join(root, "ready")
    if spec["kind"] == "tso":
        path = os.path.join(root, "jw01234001001_04101_00001_nrca3_calints.fits")
        if not os.path.exists(done):
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root)
            nints, ny, nx = spec["shape"]
            need = 3 * nints * ny * nx * 4 * 2.3
            free = shutil.disk_usage(root).free
            if need > free:
                raise SystemExit(f"case {case}: needs ~{need / 2**30:.0f} GiB free in {root}, "
                                 f"{free / 2**30:.0f} GiB there; pass --data on a larger disk.")
            t = time.perf_counter()
            sim = datasets.make_tso_cube(nints=nints, shape=(ny, nx), seed=0,
                                         store=os.path.join(root, "sim.zarr"), time_chunk=64,
                                         chunk_rows=min(ny, 64), with_variance=False)
            datasets.write_cube_file(sim.cube, path)
            shutil.rmtree(os.path.join(root, "sim.zarr"))
            open(done, "w").close()
            print(f"  simulated {nints} x {ny} x {nx} into {path} in "
                  f"{time.perf_counter() - t:.0f} s (not timed)", flush=True)
        return {"daskod": [path], "reference": path, "files": [path]}
    asn = os.path.join(root, "in", "test_asn.json")
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        t = time.perf_counter()
        sim = datasets.make_dithered_imaging(n_exposures=spec["n"],
                                             shape=(spec["edge"], spec["edge"]), seed=0,
                                             store=os.path.join(root, "sim.zarr"))
        datasets.write_cal_files(sim.exposures, os.path.join(root, "in"))
        shutil.rmtree(os.path.join(root, "sim.zarr"))
        open(done, "w").close()
        print(f"  simulated {spec['n']} x {spec['edge']}^2 cal files in "
              f"{time.perf_counter() - t:.0f} s (not timed)", flush=True)
    files = sorted(os.path.join(root, "in", f) for f in os.listdir(os.path.join(root, "in"))
                   if f.endswith("_cal.fits"))
    marker = os.path.join(root, "wcsinfo")
    if reference and not os.path.exists(marker):
        # The reference's imaging mode needs meta.wcsinfo, computed with its own functions.
        subprocess.run([reference_python(), os.path.join(HERE, "_reference_step.py"), "wcsinfo",
                        *files], check=True, capture_output=True)
        open(marker, "w").close()
    return {"daskod": [asn], "reference": asn, "files": files}


def daskod_products(inputs: dict, out: str) -> list[str]:
    return [os.path.join(out, os.path.basename(p).replace("_calints", "_crfints")
                         .replace("_cal.fits", "_crf.fits")) for p in inputs["files"]]


def run_daskod(label: str, inputs: dict, spec: dict, out: str, checkout: str,
               interval: float = 0.1) -> Run:
    # ``python -m`` puts the working folder first on sys.path: run from the output's parent
    # so that PYTHONPATH alone says which daskod is imported.
    env = dict(os.environ, PYTHONPATH=checkout)
    # -v: the phase lines are INFO (the console shows warnings only by default).
    cmd = [sys.executable, "-m", "daskod.cli", "-v", "run", *inputs["daskod"], "-o", out,
           "--memory-limit", spec["limit"], "--no-progress", *spec["args"]]
    # write_product writes under daskod-product-<pid>@..., then renames into the staging folder.
    staged = os.path.join(tempfile.gettempdir(), "daskod-product-{pid}@*", "*")
    run = measure(label, cmd, env, DASKOD_MARKS, cwd=os.path.dirname(out), interval=interval,
                  staged=staged)
    if run.returncode == 0:
        run.flags = new_outliers(inputs["files"], daskod_products(inputs, out))
    return run


def run_reference(inputs: dict, spec: dict, out: str) -> Run:
    params = []
    if spec["kind"] == "tso":
        params = [f"rolling_window_width={spec['args'][1]}"]
    cmd = [reference_python(), os.path.join(HERE, "_reference_step.py"), "run",
           inputs["reference"], out, *params]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = measure("reference (jwst 3.0.0)", cmd, env, REFERENCE_MARKS, cwd=out)
    if run.returncode == 0:
        run.flags = new_outliers(inputs["files"], reference_products(inputs, out))
    return run


def reference_products(inputs: dict, out: str) -> list[str]:
    """The reference's products in input order (it names them ``<stem>_<suffix>.fits``)."""
    names = os.listdir(out)
    found = []
    for path in inputs["files"]:
        stem = os.path.basename(path).rsplit("_", 1)[0]
        found.append(os.path.join(out, next(n for n in sorted(names)
                                            if n.startswith(stem) and n.endswith(".fits"))))
    return found


def report(run: Run, limit: int | None) -> None:
    gib = run.peak / 2**30
    verdict = ""
    if limit is not None:
        verdict = "  under the limit" if run.peak <= limit else "  OVER the limit"
    status = "" if run.returncode == 0 else f"  EXIT {run.returncode}"
    flags = "" if run.flags is None else f"  new outliers {run.flags}"
    print(f"  {run.label:28s} wall {run.wall:7.1f} s  peak RSS tree {run.peak / MiB:7.0f} MiB "
          f"({gib:.2f} GiB; largest process {run.kernel_max / MiB:.0f} MiB){verdict}{status}"
          f"{flags}", flush=True)
    # (Phases logged after the fact, with no sample inside, are left out.)
    print("      phases: " + ", ".join(f"{name} {sec:.1f} s (peak {rss / MiB:.0f} MiB)"
                                      for name, sec, rss in run.phases if rss), flush=True)
    if run.returncode != 0:
        tail = [line for _, line in run.lines[-5:]]
        print("      " + "\n      ".join(tail), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,c", help="comma-separated: a, b, c")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                       "daskod-bench-io"),
                        help="where inputs are simulated (kept and reused)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--baseline", default=None,
                        help="another daskod checkout to run on the same inputs")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between RSS samples (default 0.1)")
    parser.add_argument("--log", action="store_true", help="print daskod's log lines")
    args = parser.parse_args()
    from dask.utils import parse_bytes

    reference = not args.no_reference  # reference_python() finds or builds it, or says why not
    for case in args.cases.split(","):
        spec = CASES[case]
        what = (f"TSO {' x '.join(map(str, spec['shape']))} calints" if spec["kind"] == "tso"
                else f"{spec['n']} x {spec['edge']}^2 cal files")
        print(f"\ncase {case}: {what}, --memory-limit {spec['limit']} "
              f"{' '.join(spec['args'])}".rstrip(), flush=True)
        inputs = prepare(case, spec, args.data, reference and spec["reference"])
        size = sum(os.path.getsize(p) for p in inputs["files"])
        print(f"  inputs {size / 2**30:.2f} GiB", flush=True)
        limit = parse_bytes(spec["limit"])
        tools = [("daskod (this checkout)", os.path.dirname(HERE))]
        if args.baseline:  # first, so that this checkout's products are compared
            tools.insert(0, (f"daskod ({os.path.basename(args.baseline.rstrip('/'))})",
                             args.baseline))
        ours = os.path.join(args.data, f"case-{case}", "out-daskod")
        for _ in range(args.repeat):
            for label, path in tools:
                shutil.rmtree(ours, ignore_errors=True)
                run = run_daskod(label, inputs, spec, ours, path, args.interval)
                report(run, limit)
                if args.log:
                    for t, line in run.lines:
                        rss = max((r for s, r in run.samples if s <= t), default=0)
                        print(f"      {t:7.2f} s {rss / MiB:6.0f} MiB  {line}")
            if reference and spec["reference"]:
                theirs = os.path.join(args.data, f"case-{case}", "out-reference")
                shutil.rmtree(theirs, ignore_errors=True)
                os.makedirs(theirs)
                run = run_reference(inputs, spec, theirs)
                report(run, None)
                if run.returncode == 0 and os.path.isdir(ours):
                    print("  " + compare_products(daskod_products(inputs, ours),
                                                  reference_products(inputs, theirs)),
                          flush=True)
                shutil.rmtree(theirs, ignore_errors=True)
            shutil.rmtree(ours, ignore_errors=True)

if __name__ == "__main__":
    main()
