"""IFU methods side by side on the simulator (quality and wall time).

    python benchmarks/ifu_methods.py                      # 3 realisations, 3 exposures, 160^2
    python benchmarks/ifu_methods.py --exposures 4 --shape 512 512 --realisations 2

For each seeded realisation of ``daskod.datasets.make_ifu_exposures`` every configuration runs
through ``daskod.detect_outliers(mode="ifu", ...)`` and is scored against the truth:

- recall: flagged cosmic-ray pixels whose injected amplitude is > 10 sigma, over all of them;
- false positives: flagged pixels that are neither cosmic-ray pixels nor persistent bad pixels;
- bad pixels: flags on the persistent hot pixels (summed over exposures, of n_bad x n_exp);
- line cores: flags on the bright emission-line cores of the point source (no CR there);
- wall: seconds of ``detect_outliers`` (threads scheduler), summed over realisations, after
  one untimed warm-up run per configuration on a small simulation (imports, caches).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CONFIGS = (
    ("difference", {"ifu_method": "difference"}),
    ("cube emsm, scale 1.2 0.7", {"ifu_method": "cube", "scale": "1.2 0.7"}),
    ("cube emsm, scale 2.4 1.2", {"ifu_method": "cube", "scale": "2.4 1.2"}),
    ("cube msm, scale 1.2 0.7", {"ifu_method": "cube", "scale": "1.2 0.7",
                                 "cube_weighting": "msm"}),
)


def score(sim, dq_list) -> dict[str, int]:
    out = dict.fromkeys(("strong", "found", "fp", "bad", "bad_total", "core", "core_flagged"), 0)
    for k, dq in enumerate(dq_list):
        flagged = (np.asarray(dq) & 16) != 0
        strong = sim.cr_snr[k] > 10
        core = sim.line_core_mask[k] & ~sim.cr_mask[k]
        out["strong"] += int(strong.sum())
        out["found"] += int((strong & flagged).sum())
        out["fp"] += int((flagged & ~sim.cr_mask[k] & ~sim.bad_pixels).sum())
        out["bad"] += int((flagged & sim.bad_pixels).sum())
        out["bad_total"] += int(sim.bad_pixels.sum())
        out["core"] += int(core.sum())
        out["core_flagged"] += int((flagged & core).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realisations", type=int, default=3)
    parser.add_argument("--exposures", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=2, default=(160, 160))
    parser.add_argument("--instrument", default="MIRI")
    parser.add_argument("--scheduler", default="threads")
    args = parser.parse_args()
    import daskod
    from daskod import datasets

    warm = datasets.make_ifu_exposures(2, shape=(64, 80), seed=99, instrument=args.instrument)
    for _, kwargs in CONFIGS:
        daskod.detect_outliers(warm.exposures, mode="ifu", scheduler=args.scheduler, **kwargs)
    totals = {name: {"wall": 0.0} for name, _ in CONFIGS}
    n_pixels = 0
    for seed in range(args.realisations):
        sim = datasets.make_ifu_exposures(args.exposures, shape=tuple(args.shape), seed=seed,
                                          instrument=args.instrument)
        n_pixels += args.exposures * args.shape[0] * args.shape[1]
        for name, kwargs in CONFIGS:
            start = time.perf_counter()
            result = daskod.detect_outliers(sim.exposures, mode="ifu",
                                            scheduler=args.scheduler, **kwargs)
            dq = [np.asarray(d) for d in result.dq]
            totals[name]["wall"] += time.perf_counter() - start
            for key, value in score(sim, dq).items():
                totals[name][key] = totals[name].get(key, 0) + value
    print(f"{args.realisations} realisations x {args.exposures} {args.instrument} exposures of "
          f"{args.shape[0]} x {args.shape[1]} px ({n_pixels} pixels), scheduler "
          f"{args.scheduler}")
    header = (f"{'method':<26} {'recall>10sig':>13} {'false pos':>10} {'bad px found':>13} "
              f"{'line cores flagged':>19} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for name, t in totals.items():
        recall = t["found"] / max(t["strong"], 1)
        core = t["core_flagged"] / max(t["core"], 1)
        print(f"{name:<26} {recall:>7.3f} ({t['found']:>3}) {t['fp']:>10d} "
              f"{t['bad']:>5d} / {t['bad_total']:<5d} {t['core_flagged']:>5d} / "
              f"{t['core']:<4d} {100 * core:5.1f}% {t['wall']:>7.2f}")


if __name__ == "__main__":
    main()
