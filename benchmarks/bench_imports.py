"""What importing costs, in fresh processes: ``import daskod``, the CLI, and the modules a
``daskod run`` loads before its first task, one after another (each row's RSS and time are
increments over the row above), median of ``--repeat`` processes.

    python benchmarks/bench_imports.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

STEPS = [
    ("python", ""),
    ("import daskod", "import daskod"),
    ("daskod.cli", "import daskod.cli"),
    ("numpy", "import numpy"),
    ("daskod._run_files + io", "import daskod._run_files, daskod.io._jwst, daskod.io._products"),
    ("dask.array (imports xarray, pandas, scipy.sparse/fft if installed)", "import dask.array"),
    ("zarr", "import zarr"),
    ("astropy.io.fits", "import astropy.io.fits"),
    ("stdatamodels.jwst.datamodels", "import stdatamodels.jwst.datamodels"),
    ("gwcs (astropy.modeling)", "import gwcs"),
    ("asdf extensions (first model opened)", "import asdf; asdf.AsdfFile()"),
    ("drizzle", "import drizzle.resample"),
    ("daskod._api (engine, modes)", "import daskod._api"),
    ("astropy.stats (compute_weight_threshold only)", "import astropy.stats"),
]

CHILD = r"""
import json, sys, time, resource
import psutil
me = psutil.Process()
out = []
for label, code in json.loads(sys.argv[1]):
    start = time.perf_counter()
    exec(code)
    out.append((label, time.perf_counter() - start, me.memory_info().rss))
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    runs = []
    for _ in range(args.repeat):
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(STEPS)], env=env,
                              capture_output=True, text=True, check=True, cwd=HERE)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"imports, fresh processes, median of {args.repeat} (increments over the row above):")
    print(f"  {'step':<70} {'time':>7} {'RSS +':>9} {'RSS':>8}")
    previous = None
    for i, (label, _) in enumerate(STEPS):
        seconds = statistics.median(r[i][1] for r in runs)
        rss = statistics.median(r[i][2] for r in runs)
        rise = rss - previous if previous is not None else rss
        previous = rss
        print(f"  {label:<70} {seconds:6.2f}s {rise / 2**20:7.1f}Mi {rss / 2**20:6.0f}Mi")


if __name__ == "__main__":
    main()
