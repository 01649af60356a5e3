"""Prometheus scrapes the worker's /metrics over HTTPS (issue 21): `WorkerMetrics.serve` with the
certificate of the private TLS stack (tests/integration/tls_stack.py makes it), and a private
Prometheus (the stack's binary, own port and data directory, stopped afterwards) whose scrape
job verifies it against the CA; a job without the CA fails its scrapes (`up` 0, x509 error)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.observability import WorkerMetrics
from tests.integration.tls_stack import certificates

pytestmark = pytest.mark.integration

PROMETHEUS_PORT = 47090


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def targets(prometheus: str) -> dict[str, dict[str, str]]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=5) as answer:
        active = json.load(answer)["data"]["activeTargets"]
    return {t["labels"]["job"]: t for t in active}


def test_prometheus_scrapes_metrics_over_verified_tls(tmp_path: Path) -> None:
    tls = certificates()
    port = free_port()
    WorkerMetrics.create().serve(port, certfile=str(tls / "server.crt"),
                                 keyfile=str(tls / "server.key"))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        f"  - job_name: verified\n    scheme: https\n    tls_config:\n"
        f"      ca_file: {tls / 'ca.pem'}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
        f"  - job_name: without_ca\n    scheme: https\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prometheus = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            try:
                seen = targets(prometheus)
            except OSError:
                seen = {}
            if {"verified", "without_ca"} <= set(seen) and all(
                    t.get("lastScrape", "").startswith("20") and t.get("health") != "unknown"
                    for t in seen.values()):
                break
            time.sleep(0.5)
        assert seen["verified"]["health"] == "up", seen["verified"]
        assert seen["without_ca"]["health"] == "down", seen["without_ca"]
        assert "certificate" in seen["without_ca"]["lastError"], seen["without_ca"]
    finally:
        process.terminate()
        process.wait(timeout=30)
