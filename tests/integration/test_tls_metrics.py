"""Prometheus scrapes the worker's /metrics over HTTPS (issue 21).

The private TLS stack (tests/integration/tls_stack.py) starts its Prometheus the way
`PEAKEND_STACK_TLS=1 scripts/stack.sh start` does: the `peakend-worker` job scrapes https with
the stack's CA. `WorkerMetrics.serve` stands in for the worker, with the certificate and key that
`stack.sh env` exports (`PEAKEND_METRICS_TLS_*`), on the port the job targets. Prometheus itself
must report that target up over https; the same job without the CA (a second, private
Prometheus on a copy of the config the stack's one runs, stopped afterwards) fails its scrapes
with a certificate error."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.observability import WorkerMetrics
from tests.integration.tls_stack import TLS_PORTS, tls_stack

pytestmark = pytest.mark.integration

JOB = "peakend-worker"  # scripts/prometheus/prometheus.yml


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api(prometheus: str, path: str) -> Any:
    with urllib.request.urlopen(f"{prometheus}/api/v1/{path}", timeout=5) as answer:
        return json.load(answer)["data"]


def scraped_target(prometheus: str, job: str, health: str, timeout: float = 60
                   ) -> dict[str, Any]:
    """The target of `job` once Prometheus reports it `health` ("up"/"down") after a scrape,
    else, at `timeout`, as last seen (the caller's assertion shows it). Waiting for the wanted
    state, not the first scrape: a scrape before the metrics server listened is down too."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            active = api(prometheus, "targets")["activeTargets"]
        except OSError:
            active = []
        seen = next((t for t in active if t["labels"]["job"] == job), {})
        if seen.get("lastScrape", "").startswith("20") and seen.get("health") == health:
            break
        time.sleep(0.5)
    return seen


@contextmanager
def private_prometheus(config: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    """The stack's Prometheus binary on `config`, its own port and data directory."""
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_stacks_prometheus_scrapes_the_worker_over_verified_tls(tmp_path: Path) -> None:
    with tls_stack("prometheus") as env:
        ca = env["PEAKEND_TEST_TLS_CAFILE"]
        metrics_port = int(TLS_PORTS["PEAKEND_METRICS_PORT"])
        WorkerMetrics.create().serve(metrics_port, certfile=env["PEAKEND_METRICS_TLS_CERTFILE"],
                                     keyfile=env["PEAKEND_METRICS_TLS_KEYFILE"])
        prometheus = env["PEAKEND_PROMETHEUS_URL"]
        assert prometheus.endswith(f":{TLS_PORTS['PEAKEND_PROMETHEUS_PORT']}"), prometheus

        # the configuration Prometheus runs, as it reports it: https, our CA, verification on
        running = yaml.safe_load(api(prometheus, "status/config")["yaml"])
        job = next(j for j in running["scrape_configs"] if j["job_name"] == JOB)
        assert job["scheme"] == "https"
        assert job["tls_config"]["ca_file"] == ca
        assert not job["tls_config"].get("insecure_skip_verify", False)

        target = scraped_target(prometheus, JOB, "up")
        assert target["scrapeUrl"] == f"https://127.0.0.1:{metrics_port}/metrics", target
        assert target["health"] == "up", target.get("lastError")

    # the same job without the CA: every scrape fails on the worker's certificate
    del job["tls_config"]["ca_file"]
    with private_prometheus({"global": running["global"], "scrape_configs": [job]},
                            tmp_path) as untrusting:
        refused = scraped_target(untrusting, JOB, "down")
    assert refused["scrapeUrl"].startswith("https://"), refused
    assert refused["health"] == "down", refused
    assert "certificate" in refused["lastError"], refused
