"""A stand-in worker's child process in the integration tests (pipeline/child_process.py): how
long the child outlives a SIGKILL of its parent, and the clean-up either way."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def gone(pid: int) -> bool:
    """The process has exited (or is a zombie not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}  # exited, not yet reaped


def seconds_to_outlive_a_sigkill(parent: subprocess.Popen[str], child_pid: int,
                                 give_up: float = 5.0) -> float:
    """SIGKILL `parent`; the seconds until its child `child_pid` is gone (`give_up` at most)."""
    assert not gone(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    killed = time.monotonic()
    while not gone(child_pid) and time.monotonic() - killed < give_up:
        time.sleep(0.02)
    return time.monotonic() - killed


def kill_both(parent: subprocess.Popen[str], child_pid: int) -> None:
    """Whatever the test left running of the two."""
    if parent.poll() is None:
        parent.kill()
        parent.wait()
    with contextlib.suppress(Exception):
        if child_pid and not gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)
