"""Child processes of the worker: the ClickHouse sink (`peakend sink`) and the entry stage
(`peakend entry`) each run in a process of their own, so that each has a core and an event loop
of its own instead of sharing the worker's main thread.

The worker starts each child (`ChildProcess`), starts it again if it dies, and stops it when
the worker stops (SIGTERM: the child finishes what it holds and exits). The child stops by
itself when the worker is gone, even after a SIGKILL: Linux sends it SIGTERM when its parent
dies (`die_with`, prctl PR_SET_PDEATHSIG), and `watch_parent` covers systems without it; a
thread (`exit_when_orphaned`) ends it after a grace even when its event loop is stuck, so that
no orphan keeps working beside the children of the worker that replaces it.

A child that serves metrics for the worker to read gets a loopback port chosen at each start
(`claim_port`): never one this process handed to another child or serves itself, and a new one
when the child is started again (a port taken meanwhile ends in one restart, not a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.request import urlopen

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with(parent_pid: int) -> None:
    """Ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG); `watch_parent`
    covers systems without it. Call it first thing in the child: the parent may be killed
    while the child starts."""
    with contextlib.suppress(Exception):  # not Linux: the watch loop remains
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def orphaned(parent_pid: int) -> bool:
    """True when `parent_pid` (0: no parent to watch) is no longer this process's parent."""
    return bool(parent_pid) and os.getppid() != parent_pid


async def watch_parent(parent_pid: int, on_gone: Callable[[], Awaitable[None]]) -> None:
    """Await `on_gone` once the parent is gone (checked every 0.5 s)."""
    while not orphaned(parent_pid):
        await asyncio.sleep(0.5)
    await on_gone()


def exit_when_orphaned(parent_pid: int, what: str, grace_seconds: float,
                       check_seconds: float = 0.5) -> None:
    """Once the worker is gone (killed: Linux has sent this process SIGTERM, and the child's
    own shutdown has begun), give that shutdown `grace_seconds`, then exit at once, whatever
    its event loop is doing: an orphan must not live on beside the worker that replaces it.
    What it did not commit is read again by the next child. Run it in a daemon thread."""
    while not orphaned(parent_pid):
        time.sleep(check_seconds)
    time.sleep(grace_seconds)
    log.warning("the worker (pid %d) is gone and the %s did not stop within %.0f s: it exits "
                "without finishing", parent_pid, what, grace_seconds)
    logging.shutdown()
    os._exit(1)


def watch_for_orphaning(parent_pid: int, what: str, grace_seconds: float) -> None:
    """`exit_when_orphaned` in a daemon thread (nothing to watch when `parent_pid` is 0)."""
    if parent_pid:
        threading.Thread(target=exit_when_orphaned, args=(parent_pid, what, grace_seconds),
                         daemon=True, name=f"{what}-parent-watch").start()


# How long an orphaned sink or entry stage may take to leave (`run_as_child`): `abandon` is
# bounded at 0.5 s; more than that means its event loop is stuck (a blocking call).
LEAVE_GRACE_SECONDS = 5.0


async def run_as_child(parent_pid: int, what: str, *, run: Callable[[], Awaitable[None]],
                       stop: Callable[[], None], abandon: Callable[[], Awaitable[None]]) -> None:
    """The child's side: `run` until SIGTERM or SIGINT, which call `stop` (the worker stops
    it: finish what it holds, commit, return). Once the parent is gone (`parent_pid`, 0: no
    parent) nobody waits for what it holds, and finishing could block on a hung server:
    `abandon` (bounded: leave the consumer groups), then exit at once; what was not committed
    is read again by the next child; a thread ends the process `LEAVE_GRACE_SECONDS` after the
    parent is gone if the event loop never gets to."""
    loop = asyncio.get_running_loop()
    watch_for_orphaning(parent_pid, what, LEAVE_GRACE_SECONDS)

    async def leave() -> None:
        log.warning("the worker (pid %d) is gone; the %s exits without finishing its batch",
                    parent_pid, what)
        await abandon()
        logging.shutdown()
        os._exit(0)

    leaving: list[asyncio.Task[None]] = []  # a reference, so the task is not collected

    def on_signal() -> None:
        if orphaned(parent_pid):
            leaving.append(loop.create_task(leave()))
        else:
            stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if orphaned(parent_pid):
        await leave()
    watcher = asyncio.ensure_future(watch_parent(parent_pid, leave)) if parent_pid else None
    try:
        await run()
    finally:
        if watcher is not None:
            watcher.cancel()


# Ports handed to children of this process (`claim_port`), and the variables that name ports
# this process serves itself (its own metrics and web ports, bound once it has started).
_claimed_ports: set[int] = set()
OWN_PORT_VARIABLES = ("PEAKEND_METRICS_PORT", "PEAKEND_WEB_PORT")


def _own_ports() -> set[int]:
    return {int(value) for value in map(os.environ.get, OWN_PORT_VARIABLES)
            if value and value.isdigit()}


def claim_port(release: int = 0) -> int:
    """A free loopback port for a child to serve on, different from every port this process
    has handed to its children and from its own; `release`: the port the child had before.

    The kernel may hand out the same port to two `bind(("127.0.0.1", 0))` calls in a row once
    the first socket is closed: a sink child and a stage-two child once got the same port, and
    the one that lost crash-looped on "Address already in use" for five minutes (a CI
    rehearsal, 2026-12-06). So every candidate stays bound until one is found."""
    _claimed_ports.discard(release)
    taken = _claimed_ports | _own_ports()
    with contextlib.ExitStack() as held:
        while True:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in taken:
                _claimed_ports.add(port)
                return port


def child_metric_families(port: int) -> dict[str, Any]:
    """The metric families a child serves on loopback `port`, by name (none while it is not
    up): what the worker's /metrics relays or merges at every scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {family.name: family for family in text_string_to_metric_families(text)}


class ChildProcess:
    """Runs `peakend <command> --parent-pid <this pid>` as a child, restarts it if it dies,
    stops it with the worker. `on_line`: called (in a reader thread) with each line the child
    writes to its stdout, for children that report to the worker that way. `serves_metrics`:
    the child serves its metrics on `metrics_port` (chosen at each start, `claim_port`) over
    loopback and plain HTTP for this process to read."""

    def __init__(self, command: str, *, env: Mapping[str, str] | None = None,
                 on_line: Callable[[bytes], None] | None = None,
                 serves_metrics: bool = False) -> None:
        self.name = command
        self.env = dict(env or {})
        self.on_line = on_line
        self.serves_metrics = serves_metrics
        self.metrics_port = 0  # 0: not started yet (or serves none)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", self.name, "--parent-pid", str(os.getpid())]

    def start(self) -> None:
        env = {**os.environ, **self.env}
        if self.serves_metrics:
            # Plain HTTP: with the worker's PEAKEND_METRICS_TLS_* inherited the child served
            # HTTPS, the reads failed silently and the worker's /metrics lost its families.
            self.metrics_port = claim_port(release=self.metrics_port)
            env.update({"PEAKEND_METRICS_PORT": str(self.metrics_port),
                        "PEAKEND_METRICS_TLS_CERTFILE": "", "PEAKEND_METRICS_TLS_KEYFILE": ""})
        # Popen runs in the thread that owns the event loop, which lives as long as the worker:
        # PR_SET_PDEATHSIG fires when the forking *thread* ends, not only the process.
        if self.on_line is None:
            self.proc = subprocess.Popen(self.command(), env=env)
            return
        proc = self.proc = subprocess.Popen(self.command(), env=env, stdout=subprocess.PIPE)
        threading.Thread(target=self._read, args=(proc, self.on_line), daemon=True,
                         name=f"{self.name}-child-reader").start()

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], on_line: Callable[[bytes], None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                on_line(line)
            except Exception as exc:  # a garbled report must not stop the reading
                log.warning("child report ignored: %s: %s", type(exc).__name__, exc)

    async def run(self) -> None:
        try:
            while True:
                self.start()
                assert self.proc is not None
                while self.proc.poll() is None:
                    await asyncio.sleep(0.5)
                log.warning("the %s process exited with %s; starting it again", self.name,
                            self.proc.returncode)
                await asyncio.sleep(1.0)
        finally:
            self.stop()

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # the child finishes what it holds and exits
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
