"""The machine a benchmark runs on, read the same way by every bench script: the CPU's model,
the load average and a process's CPU time (Linux /proc), as `bench.host`."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo): the machines these run on differ."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    """The load average over 1, 5 and 15 minutes, as written beside every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def proc_minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (minflt): each a page the kernel mapped in for it,
    the first time it touched the page or again after the allocator gave it back."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[7])


def proc_peak_rss_mib(pid: int) -> float:
    """The largest resident set a process has had (VmHWM), MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no VmHWM in /proc/{pid}/status")


def proc_rss_mib(pid: int | str = "self") -> float:
    """A process's resident set now (VmRSS), MiB; `"self"` for this one."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS in /proc/{pid}/status")


# The local stack's servers (scripts/stack.sh writes their pid files), whose CPU a pipeline
# benchmark reports beside the worker's: they share the same cores.
STACK_SERVERS = ("kafka", "clickhouse")


def stack_servers_cpu_seconds(stack_dir: str | None = None) -> dict[str, float]:
    """CPU seconds so far of each running stack server, by name (a server not running, or
    without a pid file, is left out)."""
    from pathlib import Path

    root = Path(stack_dir or os.environ.get("PEAKEND_STACK_DIR")
                or Path(__file__).resolve().parents[1] / ".stack")
    out: dict[str, float] = {}
    for name in STACK_SERVERS:
        try:
            pid = int((root / name / f"{name}.pid").read_text().split()[0])
            out[name] = proc_cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue
    return out
