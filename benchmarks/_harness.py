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

__all__ = ["Measurement", "TreePeak", "run_measured", "median_of", "fmt_mib"]


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


def tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of a process and all its descendants (0 once it is gone)."""
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


class TreePeak:
    """Samples the summed RSS of a process and all its descendants every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._interval = interval
        self._ps = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self._ps))
            time.sleep(self._interval)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def run_measured(args: list[str], *, env: dict | None = None, timeout: float = 3600,
                 cwd: str | None = None) -> Measurement:
    """Run ``python args...`` in a new process (in ``cwd``); the child prints one JSON line
    last."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            cwd=cwd)
    watcher = TreePeak(proc.pid)
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - start
    peak = watcher.stop()
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
