"""A private stack with TLS (issue 21): scripts/stack.sh with PEAKEND_STACK_TLS=1, its own data
directory (.stack/tls) and ports (27xxx), so the shared stack is never restarted or
reconfigured. The CA and server certificate are generated there on first start. The ports lie
below Linux's ephemeral range (32768-60999): at 47000, an outgoing connection of a busy machine
once held ClickHouse's port ("Address already in use")."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack.sh"
TLS_STACK_DIR = ROOT / ".stack" / "tls"
TLS_PORTS = {
    "PEAKEND_KAFKA_PORT": "27092",  # SSL 27098, SASL_PLAINTEXT 27096, SASL_SSL 27099
    "PEAKEND_KAFKA_CONTROLLER_PORT": "27097",
    "PEAKEND_CLICKHOUSE_TCP_PORT": "27000",  # secure native 27440
    "PEAKEND_CLICKHOUSE_HTTP_PORT": "27123",  # HTTPS 27443
    "PEAKEND_KAFKA_HEAP": "512m",
    "PEAKEND_PROMETHEUS_PORT": "27090",
    "PEAKEND_ALERTMANAGER_PORT": "27093",
    "PEAKEND_METRICS_PORT": "27108",  # the worker's /metrics that the stack's Prometheus scrapes
}


def _stack(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["bash", str(STACK), *args], capture_output=True, text=True,
                          timeout=600, check=False, env=env)
    if proc.returncode != 0:
        pytest.fail(f"scripts/stack.sh {' '.join(args)} (TLS stack) failed (exit "
                    f"{proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout


def _env() -> dict[str, str]:
    return {**os.environ, **TLS_PORTS, "PEAKEND_STACK_DIR": str(TLS_STACK_DIR),
            "PEAKEND_STACK_TLS": "1"}


def certificates() -> Path:
    """The private stack's TLS directory (`scripts/stack.sh tls`: generated on first use)."""
    return Path(_stack(_env(), "tls").strip().splitlines()[-1])


@contextmanager
def tls_stack(*services: str) -> Iterator[dict[str, str]]:
    """Start `services` of the private TLS stack; yields its `stack.sh env` variables; stops
    them afterwards (data and certificates are kept for the next run)."""
    env = _env()
    try:
        _stack(env, "start", *services)
        exported = {}
        for line in _stack(env, "env").splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                exported[name] = value
        yield exported
    finally:
        subprocess.run(["bash", str(STACK), "stop", *services], capture_output=True,
                       timeout=120, check=False, env=env)
