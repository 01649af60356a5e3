"""Start-up time and memory of each server of the local stack (scripts/stack.sh).

Stops each service, starts it alone, and reports the wall time until it answers and its
resident memory right after start. Run on an otherwise idle stack:

    .venv/bin/python -m bench.bench_stack
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = ["bash", str(ROOT / "scripts" / "stack.sh")]
SERVICES = ("kafka", "clickhouse", "prometheus", "alertmanager")


def _rss_mib(service: str) -> float:
    pidfile = ROOT / ".stack" / service / f"{service}.pid"
    pid = pidfile.read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    print(f"# stack start-up, {datetime.date.today()}, {os.cpu_count()} cores, {cpu}")
    print("| service | start (s) | RSS after start (MiB) |")
    print("|---|---|---|")
    for service in SERVICES:
        subprocess.run([*STACK, "stop", service], check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run([*STACK, "start", service], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        time.sleep(1)
        print(f"| {service} | {seconds:.1f} | {_rss_mib(service):.0f} |")


if __name__ == "__main__":
    main()
