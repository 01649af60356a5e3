"""CPU time of every thread of the stream's processes (worker, entry stage, sink), by thread
name, user and system apart: the share of the worker's CPU that its RocksDB background threads
(flushes, compactions) take, which a py-spy profile of the Python threads does not show.

    .venv/bin/python -m bench.thread_cpu [--seconds 600] &
    .venv/bin/python -m bench.bench_pipeline --events 200000 --rates 5000

It samples /proc every 0.5 s from when the first process appears until the last one exits (or
`--seconds`), and prints each thread's last reading: the whole life of each process, warm-up
and every phase of the run included (Linux only).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

ROLES = ("worker", "entry", "sink")


def stream_processes() -> dict[int, str]:
    """pid -> role of the running `peakend worker|entry|sink` processes."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                words = handle.read().split(b"\0")
        except OSError:
            continue
        if not any(b"pipeline.cli" in w or w.endswith(b"peakend") for w in words):
            continue
        for role in ROLES:
            if role.encode() in words:
                found[int(name)] = role
    return found


def thread_times(pid: int) -> dict[int, tuple[str, float, float]]:
    """tid -> (thread name, user s, system s) of one process."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    last: dict[tuple[int, str, int], tuple[str, float, float]] = {}
    seen = False
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        processes = stream_processes()
        if processes:
            seen = True
        elif seen:
            break
        for pid, role in processes.items():
            try:
                for tid, reading in thread_times(pid).items():
                    last[(pid, role, tid)] = reading
            except OSError:
                continue  # it exited between the listing and the read
        time.sleep(0.5)
    totals: dict[tuple[int, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (pid, role, _), (name, user, system) in last.items():
        totals[(pid, role, name)][0] += user
        totals[(pid, role, name)][1] += system
    for (pid, role, name), (user, system) in sorted(totals.items()):
        if user + system >= 0.05:
            print(f"{role:6s} pid {pid:7d} thread {name:16s} user {user:7.2f} s  "
                  f"system {system:6.2f} s")


if __name__ == "__main__":
    main()
