"""The worker's child processes (pipeline/child_process.py) without a broker: the ports their
metrics are served on, and how an orphaned child ends."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from typing import Any

import pytest

import pipeline.child_process as child_process
from pipeline.child_process import ChildProcess, claim_port, exit_when_orphaned, run_as_child
from pipeline.observability import WorkerMetrics
from pipeline.settings import SettingsError
from pipeline.storage.sink import SinkProcess
from pipeline.stream.stage_two import StageTwoProcess


class Exited(Exception):
    pass


def exit_now(code: int) -> None:
    raise Exited(code)


class KernelPorts:
    """socket.socket whose bind(("127.0.0.1", 0)) hands out `ports` in turn, as the kernel may:
    the same port again once the socket that had it is closed."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = iter(ports)

    def __call__(self) -> Any:
        ports = self.ports

        class Sock:
            def __enter__(self) -> Sock:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def bind(self, address: tuple[str, int]) -> None:
                self.port = next(ports)

            def getsockname(self) -> tuple[str, int]:
                return ("127.0.0.1", self.port)

        return Sock()


@pytest.fixture(autouse=True)
def no_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child_process, "_claimed_ports", set())
    for name in child_process.OWN_PORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_two_children_never_get_the_same_port_the_kernel_hands_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sink child and a stage-two child once got the same port from two bind(0) calls in a
    row; the one that lost crash-looped on "Address already in use" for five minutes."""
    monkeypatch.setattr(socket, "socket", KernelPorts([40001, 40001, 40003]))
    assert claim_port() == 40001
    assert claim_port() == 40003


def test_a_port_the_worker_serves_itself_is_never_handed_to_a_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PEAKEND_METRICS_PORT", "40001")
    monkeypatch.setenv("PEAKEND_WEB_PORT", "40003")
    monkeypatch.setattr(socket, "socket", KernelPorts([40001, 40003, 40005]))
    assert claim_port() == 40005


def test_a_child_started_again_serves_on_a_new_port_and_frees_the_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port taken by someone else between the choice and the child's bind ends in one
    restart, not in a loop on the same port."""
    started: list[dict[str, str]] = []

    def popen(command: list[str], env: dict[str, str]) -> None:
        started.append(env)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(socket, "socket", KernelPorts([40001, 40003, 40005, 40001]))
    sink, stage_two = SinkProcess(WorkerMetrics.create()), StageTwoProcess(WorkerMetrics.create(),
                                                                          "/tmp/state")
    sink.start()
    stage_two.start()
    assert (sink.metrics_port, stage_two.metrics_port) == (40001, 40003)
    sink.start()  # it died: started again
    assert sink.metrics_port == 40005
    stage_two.start()
    assert stage_two.metrics_port == 40001  # the sink's old port, released
    assert [env["PEAKEND_METRICS_PORT"] for env in started] == ["40001", "40003", "40005",
                                                                "40001"]
    assert all(env["PEAKEND_METRICS_TLS_CERTFILE"] == "" for env in started)
    assert started[1]["PEAKEND_DATA_DIR"] == "/tmp/state/stage-two"


def test_a_child_without_metrics_gets_no_port(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, env: started.append(env))
    monkeypatch.setenv("PEAKEND_METRICS_PORT", "9108")
    child = ChildProcess("entry")
    child.start()
    assert child.metrics_port == 0
    assert started[0]["PEAKEND_METRICS_PORT"] == "9108"  # untouched


def test_an_orphan_exits_after_its_grace_whatever_its_loop_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = iter([False, False, True])
    slept: list[float] = []
    monkeypatch.setattr(child_process, "orphaned", lambda pid: next(checks))
    monkeypatch.setattr("pipeline.child_process.time.sleep", slept.append)
    monkeypatch.setattr("pipeline.child_process.os._exit", exit_now)
    with pytest.raises(Exited) as exited:
        exit_when_orphaned(4242, "sink", grace_seconds=7.0, check_seconds=0.5)
    assert exited.value.args == (1,)
    assert slept == [0.5, 0.5, 7.0]  # watched until the worker was gone, then the grace


def test_run_as_child_watches_for_orphaning_from_a_thread(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The sink's and entry stage's way out once the worker is gone runs on their event loop;
    a loop stuck in a blocking call never got to it, and the orphan kept its partitions and
    port beside the replacing worker's children. A thread now ends it after a grace."""
    watched: list[tuple[int, str, float]] = []
    monkeypatch.setattr(child_process, "watch_for_orphaning",
                        lambda pid, what, grace: watched.append((pid, what, grace)))
    ran: list[str] = []

    async def run() -> None:
        ran.append("run")

    asyncio.run(run_as_child(0, "sink", run=run, stop=lambda: None, abandon=run))
    assert ran == ["run"]
    assert watched == [(0, "sink", child_process.LEAVE_GRACE_SECONDS)]
    assert child_process.LEAVE_GRACE_SECONDS < 20  # well before the replacing worker is up


def test_metrics_on_a_taken_port_is_one_line_naming_the_variable() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(SettingsError) as error:
            WorkerMetrics.create().serve(port)
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"PEAKEND_METRICS_PORT={port}: cannot serve /metrics on "
                           f"127.0.0.1:{port}: "), line
