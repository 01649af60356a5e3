"""CPU time of every thread of the stream's processes (worker, entry stage, sink), by thread
name, user and system apart: the share of the worker's CPU that its RocksDB background threads
(flushes, compactions) take, which a py-spy profile of the Python threads does not show.

    .venv/bin/python -m bench.thread_cpu [--seconds 600] [--every 10] &
    .venv/bin/python -m bench.bench_pipeline --events 200000 --rates 5000

It samples /proc every 0.5 s from when the first process appears until the last one exits (or
`--seconds`), and prints each thread's last reading: the whole life of each process, warm-up
and every phase of the run included (Linux only). With `--every N` it also prints, every N
seconds, the CPU each role's threads took in those N seconds, by thread name (threads of one
name summed): a timeline that shows which phase of a run a thread's time belongs to (the
RocksDB threads on a first day against the third: docs/streaming.md, twenty-second round).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

ROLES = ("worker", "entry", "stage-two", "sink")


def stream_processes() -> dict[int, str]:
    """pid -> role of the running `peakend worker|entry|stage-two|sink` processes."""
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
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8",
                      errors="replace") as handle:
                stat = handle.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between the listing and the read
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def interval_line(at_s: float, last: dict[tuple[int, str, int], tuple[str, float, float]],
                  printed: dict[tuple[int, str, int], float]) -> str:
    """The CPU seconds of each (role, thread name) since the previous line (`printed`: each
    thread's total then, updated here), the busiest first."""
    spent: dict[tuple[str, str], float] = defaultdict(float)
    for thread, (name, user, system) in last.items():
        spent[(thread[1], name)] += user + system - printed.get(thread, 0.0)
        printed[thread] = user + system
    busy = sorted(((cpu, role, name) for (role, name), cpu in spent.items() if cpu >= 0.05),
                  reverse=True)
    return f"[{at_s:6.0f} s] " + (", ".join(f"{role}/{name} {cpu:.1f}" for cpu, role, name in busy)
                                  or "idle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=0.0,
                        help="also print each role's CPU by thread name every this many seconds")
    args = parser.parse_args()
    last: dict[tuple[int, str, int], tuple[str, float, float]] = {}
    seen = False
    started = time.monotonic()
    deadline = started + args.seconds
    printed: dict[tuple[int, str, int], float] = {}
    next_print = started + args.every
    while time.monotonic() < deadline:
        if args.every > 0 and time.monotonic() >= next_print:
            print(interval_line(time.monotonic() - started, last, printed), flush=True)
            next_print += args.every
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
