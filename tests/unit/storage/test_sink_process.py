"""The worker's /metrics relays the sink child's metrics (pipeline.storage.sink.SinkProcess)."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.observability import WorkerMetrics
from pipeline.storage.sink import SINK_METRICS, RelayedSinkMetrics, SinkProcess
from tests.support.stream import free_port


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_parent_serves_the_childs_sink_metrics_and_its_own_others() -> None:
    child = WorkerMetrics.create()
    port = free_port()
    child.serve(port)
    child.clickhouse_up.set(1)
    child.sink_rows.labels("journeys").inc(7)
    child.events_in.labels("t").inc(99)  # not a sink metric: the parent has its own

    parent = WorkerMetrics.create()
    parent.registry.register(RelayedSinkMetrics(lambda: port))
    for name in ("sink_batch_rows", "sink_insert_seconds", "sink_rows", "sink_insert_failures",
                 "clickhouse_up"):
        parent.registry.unregister(getattr(parent, name))
    parent.events_in.labels("t").inc(3)
    got = _samples(parent.registry)
    assert got[("peakend_clickhouse_up", ())] == 1
    assert got[("peakend_sink_rows_total", (("table", "journeys"),))] == 7
    assert got[("peakend_events_in_total", (("topic", "t"),))] == 3


def test_nothing_relayed_while_the_child_is_down() -> None:
    parent = WorkerMetrics.create()
    relay = SinkProcess(parent)  # unregisters the parent's own sink metrics; child not started
    names = {family.name for family in text_string_to_metric_families(
        generate_latest(parent.registry).decode())}
    assert not names & set(SINK_METRICS)
    assert relay.proc is None
    relay.stop()  # nothing to stop


def test_the_child_serves_plain_http_to_the_relay_when_the_worker_serves_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay reads the child over loopback with plain HTTP: a child that inherited the
    worker's metrics certificate served HTTPS and every sink metric vanished from /metrics."""
    monkeypatch.setenv("PEAKEND_METRICS_TLS_CERTFILE", "/etc/peakend/metrics.crt")
    monkeypatch.setenv("PEAKEND_METRICS_TLS_KEYFILE", "/etc/peakend/metrics.key")
    started: list[dict[str, str]] = []

    def popen(command: list[str], env: dict[str, str]) -> None:
        started.append(env)

    monkeypatch.setattr(subprocess, "Popen", popen)
    relay = SinkProcess(WorkerMetrics.create())
    relay.start()
    (env,) = started
    assert env["PEAKEND_METRICS_PORT"] == str(relay.metrics_port)
    assert env["PEAKEND_METRICS_TLS_CERTFILE"] == env["PEAKEND_METRICS_TLS_KEYFILE"] == ""
