"""The private stacks' fixed ports (TLS stack, fault stack, cluster) lie below Linux's ephemeral
port range, 32768-60999 by default: a port inside it can be held by any outgoing connection of
a busy machine, and the server then fails to start ("Address already in use": the TLS stack's
ClickHouse at 47000 and the cluster's kafka3 at 41094 both did, on 2026-11-30)."""

from __future__ import annotations

import re
from pathlib import Path

from bench.faults import FAULT_PORTS
from tests.integration.tls_stack import TLS_PORTS

ROOT = Path(__file__).resolve().parents[2]
EPHEMERAL_LOW = 32768
# stack.sh's ports derived from the ones set: Kafka SSL/SASL_SSL +6/+7, ClickHouse secure native
# +440 and HTTPS +320
DERIVED = {"PEAKEND_KAFKA_PORT": 7, "PEAKEND_CLICKHOUSE_TCP_PORT": 440,
           "PEAKEND_CLICKHOUSE_HTTP_PORT": 320}


def highest(ports: dict[str, str]) -> int:
    return max(int(v) + DERIVED.get(k, 0) for k, v in ports.items() if k.endswith("_PORT"))


def test_the_private_stacks_ports_are_below_the_ephemeral_range() -> None:
    assert highest(TLS_PORTS) < EPHEMERAL_LOW, TLS_PORTS
    assert highest(FAULT_PORTS) < EPHEMERAL_LOW, FAULT_PORTS


def test_the_clusters_ports_are_below_the_ephemeral_range() -> None:
    script = (ROOT / "scripts" / "cluster.sh").read_text()
    base = int(re.search(r"BASE=\$\{PEAKEND_CLUSTER_PORT_BASE:-(\d+)\}", script).group(1))  # type: ignore[union-attr]
    offsets = [int(n) for n in re.findall(r"\$\(\(BASE \+ (\d+)", script)]
    assert offsets and base + max(offsets) + 4 < EPHEMERAL_LOW, (base, offsets)
