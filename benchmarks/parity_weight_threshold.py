"""daskod's lean weight threshold against stcal's ``compute_weight_threshold``, bit for bit,
with the memory each holds.

    python benchmarks/parity_weight_threshold.py --reference-python /work/jwst-venv/bin/python

Weight maps: groups of two rotated, shifted detectors drizzled with the ``drizzle`` library
(``ivm`` weights from a read-noise variance with bad pixels, and ``exptime`` weights, whose
values tie everywhere but at the edges' partial pixels and the detectors' overlap), at
``pixfrac`` 1.0 and 0.8, square and turbo kernels; then synthetic maps: quantised values,
all-equal values, a handful of values, negative values with outliers, NaN and inf. stcal runs
in the reference's interpreter on the same arrays; both answers are compared bit for bit.
Memory: tracemalloc's peak per weight-map pixel for stcal's function (in this process, same
numpy and astropy), daskod's ``compute_weight_threshold`` and ``weight_threshold``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

REFERENCE_SIDE = r"""
import sys, numpy as np
import stcal
from stcal.outlier_detection.utils import compute_weight_threshold
maps = np.load(sys.argv[1])
np.savez(sys.argv[2], version=stcal.__version__,
         **{k: np.float64(compute_weight_threshold(maps[k], 0.7)) for k in maps.files})
"""


def drizzled_weights(seed: int, *, weight_type: str, pixfrac: float, kernel: str,
                     shape: tuple[int, int] = (1024, 1024), out: int = 1600) -> np.ndarray:
    """The weight image of one group of two detectors drizzled onto a common frame."""
    from daskod.resample._kernels import drizzle_tile

    rng = np.random.default_rng(seed)
    inputs = []
    for k in range(2):
        ny, nx = shape
        var = rng.gamma(20.0, 0.05, shape).astype(np.float32)
        good = rng.random(shape) > 0.01
        weight = (good / var if weight_type == "ivm" else good * np.float32(300.0))
        angle = np.deg2rad(rng.uniform(-30, 30))
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
        x0, y0 = 200 + 500 * k + rng.uniform(0, 1), 250 + rng.uniform(0, 1)
        px = x0 + np.cos(angle) * xx - np.sin(angle) * yy + 200
        py = y0 + np.sin(angle) * xx + np.cos(angle) * yy
        pixmap = np.dstack([px, py])
        inputs.append((np.ones(shape, np.float32), weight.astype(np.float32), pixmap, 300.0))
    _, wht = drizzle_tile(inputs, (out, out), kernel=kernel, pixfrac=pixfrac)
    return wht.astype(np.float32)


def weight_maps(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = {}
    for weight_type in ("ivm", "exptime"):
        for pixfrac in (1.0, 0.8):
            for kernel in ("square", "turbo"):
                name = f"drizzle_{weight_type}_pixfrac{pixfrac}_{kernel}"
                maps[name] = drizzled_weights(seed, weight_type=weight_type, pixfrac=pixfrac,
                                              kernel=kernel)
    maps["quantised"] = np.round(rng.normal(50, 5, (700, 500)), 1).astype(np.float32)
    maps["all_equal"] = np.full((300, 300), 0.1, np.float32)
    maps["three_values"] = np.array([[0, 1.5, 0], [2.5, 0, 1e6]], np.float32)
    maps["two_values"] = np.array([[0, 3.0, 5.0]], np.float32)
    signed = rng.normal(0, 1, (400, 400)).astype(np.float32)
    signed[rng.random(signed.shape) < 0.01] *= 1000
    maps["negative_and_outliers"] = signed
    nan = rng.gamma(5, 20, (500, 600)).astype(np.float32)
    nan[rng.random(nan.shape) < 0.3] = 0
    nan[0, :10] = np.nan
    nan[-1, -5:] = np.inf
    maps["nan_inf_zeros"] = nan
    maps["empty"] = np.zeros((10, 10), np.float32)
    return maps


MEMORY_CHILD = r"""
import sys, threading, time, tracemalloc, warnings
import numpy as np, psutil
from astropy.stats import sigma_clip
from daskod.resample._weights import compute_weight_threshold, weight_threshold
w = np.load(sys.argv[1])[sys.argv[2]]
def stcal_like(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.mean(sigma_clip(a[np.isfinite(a) & (a != 0)], sigma=3, maxiters=5,
                                  masked=False, copy=False), dtype="f8") * 0.7
fn = {"stcal": stcal_like,
      "old": lambda a: compute_weight_threshold(a[np.isfinite(a) & (a != 0)], 0.7),
      "lean": lambda a: weight_threshold(a, 0.7)}[sys.argv[3]]
me = psutil.Process(); base = me.memory_info().rss; peak = [base]; done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], me.memory_info().rss); done.wait(0.001)
t = threading.Thread(target=sample, daemon=True); t.start()
tracemalloc.start(); start = time.perf_counter(); fn(w); seconds = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1]; tracemalloc.stop(); done.set(); t.join()
print(traced, peak[0] - base, seconds)
"""


def measured(path: str, name: str, which: str) -> tuple[int, int, float]:
    """tracemalloc's peak (reserved memory, touched or not), the rise of the process's RSS
    (sampled every ms: pages used) and the seconds of one call, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, path, name, which], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def report(maps: dict, ref: dict, seed: int) -> None:
    from daskod.resample._weights import compute_weight_threshold, weight_threshold

    print(f"stcal {ref.pop('version')} compute_weight_threshold vs daskod weight_threshold "
          f"(maskpt 0.7, seed {seed}):")
    same = 0
    for name, w in maps.items():
        ours = weight_threshold(w, 0.7)
        old = compute_weight_threshold(w, 0.7)
        theirs = float(ref[name])
        equal = ours == theirs or (np.isnan(ours) and np.isnan(theirs))
        same += equal
        ulps = 0 if old == theirs or np.isnan(theirs) else \
            int(abs(np.float64(old).view(np.int64) - np.float64(theirs).view(np.int64)))
        valid = int(np.count_nonzero(np.isfinite(w) & (w != 0)))
        print(f"  {name:<36} {w.shape!s:>12} {valid:>8} weighted  stcal {theirs!r:<22} "
              f"{'bit-identical' if equal else 'DIFFERENT ' + repr(ours)}"
              f"  (sort-based compute_weight_threshold: {ulps} ulp off)")
    print(f"  {same} of {len(maps)} bit-identical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", default="/work/jwst-venv/bin/python")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    maps = weight_maps(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "maps.npz"), os.path.join(tmp, "ref.npz")
        np.savez(src, **maps)
        subprocess.run([args.reference_python, "-c", REFERENCE_SIDE, src, dst], check=True)
        report(maps, dict(np.load(dst)), args.seed)
        name = "drizzle_ivm_pixfrac1.0_square"
        w = maps[name]
        valid = int(np.count_nonzero(np.isfinite(w) & (w != 0)))
        print(f"\nmemory on {name} {w.shape} ({valid} weighted pixels), each in a fresh "
              "process: tracemalloc peak (reserved) and RSS rise (used), per weighted pixel:")
        for label, which in (("stcal's function", "stcal"),
                             ("daskod compute_weight_threshold", "old"),
                             ("daskod weight_threshold", "lean")):
            peak, rss, seconds = measured(src, name, which)
            print(f"  {label:<32} tracemalloc {peak / valid:5.1f} B/px ({peak / 2**20:5.1f} "
                  f"MiB)  RSS {rss / valid:5.1f} B/px ({rss / 2**20:5.1f} MiB)  {seconds:.2f} s")


if __name__ == "__main__":
    main()
