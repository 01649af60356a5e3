"""Prometheus rules: `promtool test rules` on the rule tests, the default stack loads them, and one
end-to-end run: a real Prometheus scrapes the worker's metrics (WorkerMetrics in this process),
the insert-failure rule fires, and the alert reaches a webhook through the real Alertmanager."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.observability import WorkerMetrics
from tests.support.stack import STACK, run_stack, stack_env
from tests.support.stream import free_port

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus"
WEBHOOK_PORT = 9119  # scripts/prometheus/alertmanager.yml sends every alert here


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `bash scripts/stack.sh start prometheus` installs it "
                    "(Debian package prometheus)", pytrace=False)
    return path


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = _promtool()
    check = subprocess.run([tool, "check", "rules", "peakend.rules.yml"], cwd=RULES_DIR,
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run([tool, "test", "rules", "peakend.rules.test.yml"], cwd=RULES_DIR,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_default_stack_loads_the_rules() -> None:
    run_stack("start", "prometheus")
    base = stack_env()["PEAKEND_PROMETHEUS_URL"]
    request = urllib.request.Request(f"{base}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass  # lifecycle API: pick up rule files added since the server started
    groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"PeakendSinkInsertFailing", "PeakendClickHouseDown", "PeakendConsumerLagGrowing",
            "PeakendDeadLetterRateHigh", "PeakendNoEvents"} <= names



class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def webhook() -> Iterator[list[dict[str, Any]]]:
    try:
        server = HTTPServer(("127.0.0.1", WEBHOOK_PORT), _Webhook)
    except OSError as exc:
        pytest.fail(f"cannot listen on 127.0.0.1:{WEBHOOK_PORT} for Alertmanager's webhook: {exc}",
                    pytrace=False)
    _Webhook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield _Webhook.received
    finally:
        server.shutdown()
        server.server_close()


def test_insert_failures_reach_the_webhook_through_alertmanager(
    webhook: list[dict[str, Any]],
) -> None:
    _promtool()
    run_stack("start", "alertmanager")
    am_url = stack_env()["PEAKEND_ALERTMANAGER_URL"]
    metrics = WorkerMetrics.create()
    target_port = free_port()
    metrics.serve(target_port)
    metrics.clickhouse_up.set(1)
    metrics.sink_insert_failures.labels(table="journeys").inc(0)

    job = f"peakend-alert-test-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="peakend-prom-test-"))
    prom_port = free_port()
    config = work / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [am_url.removeprefix("http://")]}]}]},
        "rule_files": [str(RULES_DIR / "peakend.rules.yml")],
        "scrape_configs": [{"job_name": job,
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }))
    env = {**os.environ, "PEAKEND_STACK_DIR": str(work / "stack"),
           "PEAKEND_PROMETHEUS_PORT": str(prom_port), "PEAKEND_PROMETHEUS_CONFIG": str(config)}

    def stack(*args: str) -> None:
        proc = subprocess.run(["bash", str(STACK), *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]

    started = time.monotonic()
    stack("start", "prometheus")
    try:
        base = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 30
        while True:  # wait until the target has been scraped twice with the counter at 0
            result = _get(f"{base}/api/v1/query?query=count_over_time("
                          f"peakend_sink_insert_failures_total%7Bjob%3D%22{job}%22%7D%5B1m%5D)")
            samples = result["data"]["result"]
            if samples and float(samples[0]["value"][1]) >= 2:
                break
            assert time.monotonic() < deadline, "Prometheus did not scrape the test target"
            time.sleep(0.5)
        metrics.sink_insert_failures.labels(table="journeys").inc(10)
        metrics.clickhouse_up.set(0)

        deadline = time.monotonic() + 60
        alert: dict[str, Any] | None = None
        while alert is None:
            for payload in list(webhook):
                for item in payload.get("alerts", []):
                    labels = item["labels"]
                    if (labels.get("alertname") == "PeakendSinkInsertFailing"
                            and labels.get("job") == job and item["status"] == "firing"):
                        alert = item
            if alert is None:
                assert time.monotonic() < deadline, (
                    f"no PeakendSinkInsertFailing for {job} at the webhook within 60 s; got "
                    f"{json.dumps(webhook)[:2000]}")
                time.sleep(0.5)
        assert alert["labels"]["table"] == "journeys"
        assert alert["labels"]["severity"] == "critical"
        assert "keep failing" in alert["annotations"]["summary"]
        elapsed = time.monotonic() - started
        assert elapsed < 90
    finally:
        stack("stop", "prometheus")
        shutil.rmtree(work, ignore_errors=True)
