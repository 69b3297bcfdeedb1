"""Slit spectroscopy (MOS): ``daskod run`` against the reference (jwst 3.0.0 per source, as
calwebb_spec3 runs it), each in a fresh process, in the same run.

    python benchmarks/bench_spec.py                                  # 3 nods x 2 det x 100 slits
    python benchmarks/bench_spec.py --slits 20 --columns 1024        # a quicker look
    python benchmarks/bench_spec.py --reference /path/to/jwst-env/bin/python --repeat 3
    python benchmarks/bench_spec.py --inputs /data/mos/spec3_asn.json   # existing products

A NIRSpec-like MOS exposure set (``daskod.datasets.make_nirspec_slits``: nods x detectors
``MultiSlitModel`` files of ``--slits`` slitlets, each one source, ``--columns`` long) is
simulated and written as ``*_cal.fits`` with a spec3 association (not timed). Then, each a
fresh process measured by wall time and the peak resident memory of its whole process tree
(sampled every 20 ms with psutil over the process and its children):

- ``daskod``: ``python -m daskod.cli run ASN -o OUT --memory-limit ... --scheduler ...``;
- ``reference``: ``daskod/datasets/_reference_spec_script.py`` in the reference interpreter
  (``$DASKOD_REFERENCE_PYTHON`` or ``--reference``): ``exp_to_source`` splits the slits per
  source, ``OutlierDetectionStep`` (``mode="spec"``, no intermediate files) runs per source,
  and one ``*_crf.fits`` per input file is reassembled.

Printed: both walls and peaks, their ratios (daskod / reference), the new-outlier counts and
the Jaccard index of the two tools' new-outlier masks over every slit, and how many slits'
DQ arrays are identical. With ``--repeat N`` the runs alternate and medians are printed.
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import TreePeak, fmt_mib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(cmd: list[str], env: dict[str, str], log: str) -> tuple[float, int]:
    """Wall seconds and peak tree RSS of ``cmd`` (output to ``log``); raises on failure."""
    with open(log, "w", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        watcher = TreePeak(proc.pid)
        code = proc.wait()
        wall = time.perf_counter() - start
        peak = watcher.stop()
    if code != 0:
        with open(log, encoding="utf-8") as f:
            sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f"{cmd[0]} ... failed with code {code} (log {log})")
    return wall, peak


def simulate(args: argparse.Namespace, folder: str) -> dict:
    from daskod import datasets

    start = time.perf_counter()
    sim = datasets.make_nirspec_slits("mos", n_nods=args.nods, n_detectors=args.detectors,
                                      n_slits=args.slits, n_columns=args.columns,
                                      seed=args.seed)
    files = datasets.write_spec_cal_files(sim, folder)
    pixels = sum(int(np.prod(e.shape)) for e in sim.exposures)
    size = sum(os.path.getsize(p) for p in files["files"])
    print(f"Simulated {len(sim.exposures)} slits in {len(files['files'])} files "
          f"({len(sim.sources)} sources, {pixels / 1e6:.1f} Mpx, {size / 2**20:.0f} MiB) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return files


def new_outlier_masks(inputs: list[str], folder: str) -> list[np.ndarray]:
    from astropy.io import fits

    masks = []
    for path in inputs:
        crf = os.path.join(folder, os.path.basename(path).replace("_cal.fits", "_crf.fits"))
        with fits.open(path) as before, fits.open(crf) as after:
            for hdu in before:
                if hdu.name == "DQ":
                    dq0 = hdu.data.astype(np.uint32)
                    dq1 = after["DQ", hdu.ver].data.astype(np.uint32)
                    masks.append(((dq1 & 16) != 0) & ((dq0 & 16) == 0))
    return masks


def compare(inputs: list[str], ours: str, theirs: str) -> dict:
    a, b = new_outlier_masks(inputs, ours), new_outlier_masks(inputs, theirs)
    both = sum(int((x & y).sum()) for x, y in zip(a, b, strict=True))
    union = sum(int((x | y).sum()) for x, y in zip(a, b, strict=True))
    same = sum(bool(np.array_equal(x, y)) for x, y in zip(a, b, strict=True))
    return {"daskod": sum(int(x.sum()) for x in a), "reference": sum(int(y.sum()) for y in b),
            "jaccard": both / union if union else 1.0, "identical_slits": same,
            "slits": len(a)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nods", type=int, default=3)
    parser.add_argument("--detectors", type=int, default=2, choices=[1, 2])
    parser.add_argument("--slits", type=int, default=100)
    parser.add_argument("--columns", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument("--scheduler", default="processes")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--reference", default=os.environ.get("DASKOD_REFERENCE_PYTHON"),
                        help="python of an environment with jwst 3.0.0")
    parser.add_argument("--daskod-only", action="store_true",
                        help="measure daskod alone (e.g. its peak at two sizes)")
    parser.add_argument("--inputs", default=None,
                        help="an existing spec3 association to use instead of simulating")
    parser.add_argument("--tmp", default=None, help="folder for inputs and outputs")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()
    if not args.reference and not args.daskod_only:
        parser.error("give --reference or set DASKOD_REFERENCE_PYTHON")
    from daskod.datasets._spec_files import reference_spec_command

    root = tempfile.mkdtemp(prefix="bench-spec-", dir=args.tmp)
    try:
        if args.inputs:
            from daskod.io._jwst import gather_members

            files = {"asn": args.inputs,
                     "files": [m.path for m in gather_members(args.inputs)]}
        else:
            files = simulate(args, os.path.join(root, "in"))
        env = {**os.environ, "PYTHONPATH": REPO}
        walls: dict[str, list[float]] = {"daskod": [], "reference": []}
        peaks: dict[str, list[int]] = {"daskod": [], "reference": []}
        for r in range(args.repeat):
            order = ("daskod", "reference") if r % 2 == 0 else ("reference", "daskod")
            if args.daskod_only:
                order = ("daskod",)
            for tool in order:
                out = os.path.join(root, f"{tool}{r}")
                if tool == "daskod":
                    cmd = [sys.executable, "-m", "daskod.cli", "run", files["asn"], "-o", out,
                           "--memory-limit", args.memory_limit, "--scheduler", args.scheduler,
                           "--no-progress"]
                    if args.tile_size:
                        cmd += ["--tile-size", str(args.tile_size)]
                    wall, peak = measure(cmd, env, out + ".log")
                else:
                    crds = tempfile.mkdtemp(prefix="crds-", dir=root)
                    cmd, ref_env = reference_spec_command(
                        files["asn"], out, python=args.reference, crds_path=crds,
                        params={"save_intermediate_results": False})
                    os.makedirs(out, exist_ok=True)
                    wall, peak = measure(cmd, ref_env, out + ".log")
                walls[tool].append(wall)
                peaks[tool].append(peak)
                print(f"run {r + 1} {tool:9s} wall {wall:8.1f} s   peak RSS (tree) "
                      f"{fmt_mib(peak)}", flush=True)
        if args.daskod_only:
            print(f"\ndaskod alone, median of {args.repeat}: wall "
                  f"{statistics.median(walls['daskod']):.1f} s, peak RSS (tree) "
                  f"{fmt_mib(statistics.median(peaks['daskod']))}")
            return
        cmp = compare(files["files"], os.path.join(root, "daskod0"),
                      os.path.join(root, "reference0"))
        wall = {t: statistics.median(v) for t, v in walls.items()}
        peak = {t: statistics.median(v) for t, v in peaks.items()}
        print(f"\nMOS {args.nods} nods x {args.detectors} detector(s) x {args.slits} slits x "
              f"{args.columns} columns; daskod --memory-limit {args.memory_limit} "
              f"--scheduler {args.scheduler}; median of {args.repeat}")
        for tool in ("daskod", "reference"):
            print(f"  {tool:9s} wall {wall[tool]:8.1f} s   peak RSS (tree) {fmt_mib(peak[tool])}")
        print(f"  ratio daskod/reference: wall {wall['daskod'] / wall['reference']:.2f}, "
              f"peak RSS {peak['daskod'] / peak['reference']:.2f}")
        print(f"  new outliers: daskod {cmp['daskod']}, reference {cmp['reference']}, Jaccard "
              f"{cmp['jaccard']:.4f}; identical masks in {cmp['identical_slits']} of "
              f"{cmp['slits']} slits")
    finally:
        if args.keep:
            print(f"Files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
