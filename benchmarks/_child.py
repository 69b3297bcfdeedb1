"""Child process of the benchmarks: one measured run, one JSON line on stdout.

    python _child.py daskod  EXPOSURES.pkl --memory-limit 1GiB --scheduler threads
    python _child.py cluster EXPOSURES.pkl --memory-limit 1GiB --workers 2
    python _child.py floor   EXPOSURES.pkl
    python _child.py cluster-budget EXPOSURES.pkl --memory-limit 1GiB --workers 2 --first 8

``--first N`` uses the first N exposures; ``--refusal-ok`` reports a MemoryBudgetError as
``{"refused": message}`` instead of failing.
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
        tile = None if result.median is None else int(result.median.chunksize[0])
        return {"wall_s": wall, "n_flagged": n, "timings": result.timings, "tile": tile}


def run_cluster(exposures, args) -> dict:
    import dask
    from distributed import Client, LocalCluster

    import daskod

    per_worker = dask.utils.parse_bytes(args.memory_limit) // args.workers
    # distributed sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which turns off glibc's
    # dynamic mmap threshold: every large numpy temporary is then mmapped and page-faulted
    # afresh (numpy-heavy tasks measured 2-5x slower). Both thresholds raised restore reuse
    # (the values daskod's own process workers use, daskod/_worker_memory.py); the mmap one
    # alone does not, as the trim threshold then keeps returning the heap's top.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**25,
                     "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 2**28})
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


class _WorkerSampler:
    """Samples, every 20 ms, the RSS of every child process of this one (LocalCluster worker
    processes, restarted ones included), and every 100 ms the workers' status as the scheduler
    sees it (``paused`` counts)."""

    def __init__(self, client) -> None:
        import threading

        import psutil

        self._client = client
        self._me = psutil.Process()
        self.peaks: dict[int, int] = {}
        self.paused_seen: set[str] = set()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._rss, daemon=True),
                         threading.Thread(target=self._status, daemon=True)]
        for t in self._threads:
            t.start()

    def _rss(self) -> None:
        import time

        import psutil

        while not self._done.is_set():
            for child in self._me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            time.sleep(0.02)

    def _status(self) -> None:
        import time

        while not self._done.is_set():
            try:
                workers = self._client.scheduler_info()["workers"]
            except Exception:  # the client is closing
                break
            for addr, info in workers.items():
                if info.get("status") == "paused":
                    self.paused_seen.add(addr)
            time.sleep(0.1)

    def stop(self) -> None:
        self._done.set()
        for t in self._threads:
            t.join()


def run_cluster_budget(exposures, args) -> dict:
    """LocalCluster of ``--workers`` processes (1 thread each), each with memory_limit / n as
    its distributed memory_limit; per-worker peak RSS, pauses and restarts."""
    import os

    import dask
    from distributed import Client, LocalCluster

    import daskod

    per_worker = dask.utils.parse_bytes(args.memory_limit) // args.workers
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**28})
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=per_worker, dashboard_address=None) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        client.wait_for_workers(args.workers)
        pids_before = client.run(os.getpid)
        start_rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
        sampler = _WorkerSampler(client)
        out: dict = {"worker_share": per_worker,
                     "worker_start_rss": sorted(start_rss.values())}
        start = time.perf_counter()
        try:
            result = daskod.detect_outliers(exposures, memory_limit=args.memory_limit,
                                            scheduler=client, in_memory=False,
                                            store=f"{tmp}/work", tile_size=args.tile_size)
            out.update(wall_s=time.perf_counter() - start,
                       n_flagged=int(sum(result.n_flagged)), timings=result.timings,
                       tile=int(result.median.chunksize[0]))
        except MemoryError as err:  # MemoryBudgetError: what would fit
            out["refused"] = str(err)
        finally:
            sampler.stop()
        pids_after = client.run(os.getpid)
        maxrss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        worker_pids = set(pids_before.values()) | set(pids_after.values())
        peaks = {pid: sampler.peaks.get(pid, 0) for pid in worker_pids}
        for addr, pid in pids_after.items():
            peaks[pid] = max(peaks[pid], maxrss[addr])
        logs = client.get_worker_logs()
        nanny_logs = client.get_worker_logs(nanny=True)
        paused_logged = sum("Pausing worker" in msg for lines in logs.values()
                            for _, msg in lines)
        restarts_logged = sum("Restarting" in msg for lines in nanny_logs.values()
                              for _, msg in lines)
        out.update(worker_peaks=sorted(peaks.values()),
                   workers_restarted=max(len(set(pids_before.values())
                                             - set(pids_after.values())), restarts_logged),
                   workers_paused=max(len(sampler.paused_seen), paused_logged),
                   workers_alive=len(client.scheduler_info()["workers"]))
        return out


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
    parser.add_argument("what", choices=["daskod", "cluster", "cluster-budget", "floor", "tso",
                                         "tso-floor"])
    parser.add_argument("--slice", type=int, default=400)
    parser.add_argument("exposures")
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--first", type=int, default=None)
    parser.add_argument("--refusal-ok", action="store_true")
    args = parser.parse_args()
    with open(args.exposures, "rb") as f:
        exposures = pickle.load(f)
    if args.first is not None:
        exposures = exposures[:args.first]
    runners = {"daskod": run_daskod, "cluster": run_cluster, "cluster-budget": run_cluster_budget,
               "floor": run_floor, "tso": run_tso, "tso-floor": run_tso_floor}
    try:
        out = runners[args.what](exposures, args)
    except MemoryError as err:  # MemoryBudgetError: the message says what would fit
        if not args.refusal_ok:
            raise
        out = {"refused": str(err)}
    out.update(_rusage())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
