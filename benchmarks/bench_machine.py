"""What a page of new memory costs on this machine: the context every other figure needs.

Some virtual machines hand memory the guest has freed back to the host (Linux's free page
reporting, through a balloon device), so memory free for a few seconds faults in from the host
again when touched, as system time; fresh page cache pays the same. On such a machine a
program's wall time depends on how much new memory it touches, not only on its arithmetic, and
ratios against the reference shift with it. Printed, each a median of ``--repeats``:

* touching new anonymous memory (numpy ``ones`` of ``--mib``), right away again after freeing
  it, and again after ``--wait`` seconds;
* writing ``--mib`` into a new file with ``pwrite`` (new page cache, after ``--wait`` seconds
  with nothing freed), and rewriting the same pages;
* the CPU, and the kernel's page-reporting counters when it has them.

    python benchmarks/bench_machine.py
    python benchmarks/bench_machine.py --mib 2048 --wait 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import median_of

REPORTING = "/sys/module/page_reporting/parameters"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _reported_kib() -> int | None:
    try:
        with open(os.path.join(REPORTING, "reported_kib")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def touch(mib: int) -> tuple[float, float]:
    """Wall and system seconds to allocate and fill ``mib`` MiB of new memory."""
    s0, t0 = os.times().system, time.perf_counter()
    a = np.ones(mib * 2**17)  # float64: 2**17 per MiB
    wall, system = time.perf_counter() - t0, os.times().system - s0
    del a
    return wall, system


def write_files(folder: str, mib: int) -> tuple[float, float]:
    """Seconds to pwrite ``mib`` MiB into a new file, and to rewrite the same pages."""
    block = np.random.default_rng(0).random(2 * 2**20)  # 16 MiB of float64
    path = os.path.join(folder, "pages.bin")
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC)
    try:
        walls = []
        for _ in range(2):
            t0 = time.perf_counter()
            for i in range(max(1, mib // 16)):
                os.pwrite(fd, block, i * block.nbytes)
            walls.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.remove(path)
    return walls[0], walls[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="memory touched per probe (1024)")
    parser.add_argument("--wait", type=float, default=6.0,
                        help="seconds memory stays free before the last probe (6)")
    parser.add_argument("--repeats", type=int, default=3, help="median of (3)")
    parser.add_argument("--workdir", default=None, help="folder for the file probe (temp)")
    args = parser.parse_args()

    rows: dict[str, list[float]] = {k: [] for k in (
        "new", "new sys", "again", "after wait", "after wait sys", "file new", "file again")}
    before = _reported_kib()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for _ in range(args.repeats):
            time.sleep(args.wait)  # what earlier repeats freed is handed back meanwhile
            wall, system = touch(args.mib)
            rows["new"].append(wall)
            rows["new sys"].append(system)
            rows["again"].append(touch(args.mib)[0])
            time.sleep(args.wait)
            wall, system = touch(args.mib)
            rows["after wait"].append(wall)
            rows["after wait sys"].append(system)
            time.sleep(args.wait)
            new, again = write_files(folder, args.mib)
            rows["file new"].append(new)
            rows["file again"].append(again)
    after = _reported_kib()
    m = {k: median_of(v) for k, v in rows.items()}
    gib = args.mib / 1024
    print(f"CPU: {_cpu()}, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"touch {args.mib} MiB of new memory:  {m['new']:6.2f} s ({m['new'] / gib:.2f} s/GiB, "
          f"system {m['new sys']:.2f} s)")
    print(f"  again at once:                {m['again']:6.2f} s ({m['again'] / gib:.2f} s/GiB)")
    print(f"  again after {args.wait:g} s free:       {m['after wait']:6.2f} s "
          f"({m['after wait'] / gib:.2f} s/GiB, system {m['after wait sys']:.2f} s)")
    print(f"pwrite {args.mib} MiB into a new file: {m['file new']:6.2f} s "
          f"({args.mib / m['file new']:.0f} MiB/s); rewriting its pages {m['file again']:.2f} s "
          f"({args.mib / m['file again']:.0f} MiB/s)")
    if before is None:
        print("free page reporting: not in this kernel (no page_reporting module)")
    else:
        print(f"free page reporting: on; {(after - before) / 2**20:.1f} GiB handed to the host "
              f"during this probe ({after / 2**20:.1f} GiB since boot)")
    ratio = m["after wait"] / max(m["again"], 1e-9)
    print(f"new memory costs {ratio:.1f}x memory just freed: "
          + ("figures here depend on the memory a run touches" if ratio > 3 else
             "touching memory is cheap here"))


if __name__ == "__main__":
    main()
