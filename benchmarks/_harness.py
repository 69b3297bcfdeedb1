"""Benchmark plumbing: run a command in a fresh process tree and measure wall time and the
peak resident memory of the whole tree (the process and every descendant, summed), sampled
every 20 ms with psutil, plus the kernel's own high-water mark of the largest single process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import psutil

__all__ = ["Measurement", "run_measured", "median_of", "fmt_mib"]


@dataclass
class Measurement:
    wall_s: float
    peak_tree_rss: int
    peak_single_rss: int
    returncode: int
    output: dict

    def line(self) -> str:
        return (f"wall {self.wall_s:7.2f} s   peak RSS (tree) {fmt_mib(self.peak_tree_rss)}   "
                f"largest process {fmt_mib(self.peak_single_rss)}")


def fmt_mib(n: int | float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_measured(args: list[str], *, env: dict | None = None, timeout: float = 3600
                 ) -> Measurement:
    """Run ``python args...`` in a new process; the child prints one JSON line last."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    ps = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(ps))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    payload: dict = {}
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            payload = json.loads(line)
            break
    # The child reports its own kernel high-water mark (ru_maxrss, KiB) and that of its
    # finished children; the sampled tree sum can miss spikes shorter than 20 ms.
    single = int(payload.get("self_maxrss_kib", 0)) * 1024
    return Measurement(wall, max(peak, single), single, proc.returncode, payload)


def median_of(values: list[float]) -> float:
    return float(statistics.median(values))
