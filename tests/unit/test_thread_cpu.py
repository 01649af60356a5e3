"""bench/thread_cpu.py: a thread's CPU read from /proc, and the timeline `--every` prints."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench import thread_cpu


def test_interval_lines_give_the_cpu_since_the_line_before_by_role_and_thread_name() -> None:
    printed: dict[tuple[int, str, int], float] = {}
    last = {(1, "worker", 11): ("python", 2.0, 0.5),
            (1, "worker", 12): ("rocksdb:low", 0.3, 0.1),
            (1, "worker", 13): ("rocksdb:low", 0.2, 0.0),
            (2, "sink", 21): ("python", 0.01, 0.0)}
    assert thread_cpu.interval_line(5, last, printed) == (
        "[     5 s] worker/python 2.5, worker/rocksdb:low 0.6")  # the sink's 0.01 s left out
    last[(1, "worker", 11)] = ("python", 3.0, 0.5)
    last[(2, "sink", 21)] = ("python", 1.51, 0.0)
    assert thread_cpu.interval_line(10, last, printed) == (
        "[    10 s] sink/python 1.5, worker/python 1.0")
    assert thread_cpu.interval_line(15, last, printed) == "[    15 s] idle"


def test_a_busy_threads_time_is_read_from_proc() -> None:
    done = threading.Event()
    give_up = time.monotonic() + 30  # only if the reading below never comes

    def spin() -> None:
        while not done.is_set() and time.monotonic() < give_up:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.4)
        times = thread_cpu.thread_times(os.getpid())  # while it still spins (a time bound
    finally:                                          # alone once ran out on a loaded CI)
        done.set()
        spinner.join()
    assert spinner.native_id in times and os.getpid() in times  # the main thread's id: the pid
    _, user, system = times[spinner.native_id]
    assert user + system > 0.05  # of its 0.4 s and more spinning (2 CPUs: it had one)


def test_a_thread_gone_between_the_listing_and_the_read_is_left_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads come and go while the tool reads (the first CI run of the test above met one)."""
    real = os.listdir
    monkeypatch.setattr(os, "listdir",  # thread_cpu.os: the one os module
                        lambda path: [*real(path), "999999999"] if path.endswith("/task")
                        else real(path))
    times = thread_cpu.thread_times(os.getpid())
    assert 999999999 not in times and os.getpid() in times
