"""Child process of the benchmarks: one measured run, one JSON line on stdout.

    python _child.py daskod  EXPOSURES.pkl --memory-limit 1GiB --scheduler threads
    python _child.py cluster EXPOSURES.pkl --memory-limit 1GiB --workers 2
    python _child.py floor   EXPOSURES.pkl
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import tempfile
import time


def _rusage() -> dict:
    return {"self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


def run_daskod(exposures, args) -> dict:
    import daskod

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        result = daskod.detect_outliers(exposures, memory_limit=args.memory_limit,
                                        scheduler=args.scheduler, in_memory=False,
                                        store=f"{tmp}/work", tile_size=args.tile_size)
        wall = time.perf_counter() - start
        n = int(sum(result.n_flagged))
        return {"wall_s": wall, "n_flagged": n, "timings": result.timings}


def run_cluster(exposures, args) -> dict:
    import dask
    from distributed import Client, LocalCluster

    import daskod

    per_worker = dask.utils.parse_bytes(args.memory_limit) // args.workers
    # distributed sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which turns off glibc's
    # dynamic mmap threshold: every large numpy temporary is then mmapped and page-faulted
    # afresh (numpy-heavy tasks measured 2-5x slower). A high mmap threshold restores reuse.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**28})
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=per_worker, dashboard_address=None) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        client.wait_for_workers(args.workers)
        start = time.perf_counter()
        result = daskod.detect_outliers(exposures, memory_limit=args.memory_limit,
                                        scheduler=client, in_memory=False,
                                        store=f"{tmp}/work", tile_size=args.tile_size)
        wall = time.perf_counter() - start
        worker_peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return {"wall_s": wall, "n_flagged": int(sum(result.n_flagged)),
                "timings": result.timings,
                "worker_maxrss_kib": sorted(worker_peaks.values()),
                "workers_alive": len(client.scheduler_info()["workers"])}


def run_floor(exposures, args) -> dict:
    """Plain-numpy floor: load the inputs, bottleneck median of an aligned stack, compare."""
    import bottleneck as bn
    import numpy as np

    start = time.perf_counter()
    sci = np.stack([np.asarray(e.sci[...], dtype=np.float32) for e in exposures])
    median = bn.nanmedian(sci, axis=0)
    n = 0
    for k, e in enumerate(exposures):
        err = np.asarray(e.err[...])
        np.asarray(e.dq[...])
        with np.errstate(invalid="ignore"):
            n += int(np.count_nonzero(np.abs(sci[k] - median) > 5.0 * np.nan_to_num(err)))
    return {"wall_s": time.perf_counter() - start, "n_flagged": n}


def run_tso(cube, args) -> dict:
    import daskod

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        result = daskod.detect_outliers(cube, mode="tso", memory_limit=args.memory_limit,
                                        scheduler=args.scheduler, in_memory=False,
                                        store=f"{tmp}/work")
        wall = time.perf_counter() - start
        return {"wall_s": wall, "n_flagged": int(result.n_flagged[0]),
                "timings": result.timings}


def run_tso_floor(cube, args) -> dict:
    """Plain numpy on a slice that fits in memory: load, mask, rolling median, compare."""
    import bottleneck as bn
    import numpy as np

    n = min(args.slice, cube.shape[0])
    start = time.perf_counter()
    sci = np.asarray(cube.sci[:n], dtype=np.float32)
    dq = np.asarray(cube.dq[:n])
    err = np.asarray(cube.err[:n])
    sci[(dq & 1) != 0] = np.nan
    med = bn.move_median(sci, 25, min_count=25, axis=0)
    with np.errstate(invalid="ignore"):
        flagged = int(np.count_nonzero(np.abs(sci[24:] - med[24:]) > 5 * np.nan_to_num(err[24:])))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "n_flagged": flagged, "slice": n,
            "scaled_wall_s": wall * cube.shape[0] / n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["daskod", "cluster", "floor", "tso", "tso-floor"])
    parser.add_argument("--slice", type=int, default=400)
    parser.add_argument("exposures")
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    with open(args.exposures, "rb") as f:
        exposures = pickle.load(f)
    runners = {"daskod": run_daskod, "cluster": run_cluster, "floor": run_floor,
               "tso": run_tso, "tso-floor": run_tso_floor}
    out = runners[args.what](exposures, args)
    out.update(_rusage())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
