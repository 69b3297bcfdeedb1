"""Compare daskod's kernels with the reference's (stcal), bit for bit, on random data.

stcal is never a dependency of daskod: install it in a separate virtual environment and
give its interpreter::

    python -m venv /tmp/refenv && /tmp/refenv/bin/pip install stcal
    python benchmarks/parity_stcal.py --reference-python /tmp/refenv/bin/python
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile

import numpy as np

REFERENCE_SIDE = r"""
import sys, numpy as np
import stcal, stcal.outlier_detection.utils as u
from stcal.outlier_detection.median import nanmedian3D
a = np.load(sys.argv[1])
np.savez(sys.argv[2], version=stcal.__version__, d=u._abs_deriv(a["blot"]),
         cr=u.flag_resampled_crs(a["sci"], a["err"], a["blot"], 5.0, 4.0, 1.2, 0.7, 0.3),
         cr2=u.flag_crs(a["sci"], a["err"], a["blot"], 5.0),
         thr=u.compute_weight_threshold(a["w"], 0.7), med=nanmedian3D(a["stack"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", default="/tmp/refenv/bin/python")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from daskod.flag._kernels import abs_deriv, flag_crs, flag_resampled_crs
    from daskod.median._kernels import nanmedian_stack
    from daskod.resample._weights import compute_weight_threshold

    rng = np.random.default_rng(args.seed)
    sci = rng.normal(1.0, 0.05, (300, 280)).astype(np.float32)
    blot = (sci * 0.98 + rng.normal(0, 0.02, sci.shape)).astype(np.float32)
    sci[rng.random(sci.shape) < 0.01] += 5
    blot[rng.random(sci.shape) < 0.002] = np.nan
    err = np.full_like(sci, 0.05)
    err[rng.random(sci.shape) < 0.01] = np.nan
    w = rng.gamma(5, 20, sci.shape).astype(np.float32)
    w[rng.random(sci.shape) < 0.2] = 0
    w[3, 3] = np.nan
    stack = rng.normal(size=(7, 50, 60)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    ours = {"d": abs_deriv(blot),
            "cr": flag_resampled_crs(sci, err, blot, snr1=5, snr2=4, scale1=1.2, scale2=0.7,
                                     backg=0.3),
            "cr2": flag_crs(sci, err, blot, snr1=5), "thr": compute_weight_threshold(w, 0.7),
            "med": nanmedian_stack(stack)}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "ref.npz")
        np.savez(src, sci=sci, blot=blot, err=err, w=w, stack=stack)
        subprocess.run([args.reference_python, "-c", REFERENCE_SIDE, src, dst], check=True)
        ref = dict(np.load(dst))
    print(f"stcal {ref['version']} vs daskod, seed {args.seed}:")
    for key, label in (("d", "abs_deriv"), ("cr", "flag_resampled_crs"), ("cr2", "flag_crs"),
                       ("thr", "compute_weight_threshold"), ("med", "median of a stack")):
        same = np.array_equal(np.asarray(ours[key]), ref[key], equal_nan=True)
        print(f"  {label:<26} {'bit-identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
