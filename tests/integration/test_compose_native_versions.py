"""docker-compose.yml runs the versions the native stack runs (scripts/stack.sh installs them
from Debian): Prometheus and Alertmanager exactly. ClickHouse is the one declared difference
(dashboards/compose.py): Debian ships only 18.16, whose HTTP interface the Grafana plugin's client
cannot use; this test fails when Debian's version changes, so the choice is made again."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from dashboards import compose
from tests.support.stack import ROOT, run_stack

pytestmark = pytest.mark.integration


def _version(*command: str) -> str:
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    assert match, out
    return match.group(1)


def test_compose_images_are_the_native_stacks_versions() -> None:
    run_stack("install", "prometheus", "alertmanager", "clickhouse")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["prometheus"]["image"] == (
        f"prom/prometheus:v{_version('prometheus', '--version')}")
    assert services["alertmanager"]["image"] == (
        f"prom/alertmanager:v{_version('prometheus-alertmanager', '--version')}")
    native_clickhouse = _version("clickhouse-client", "--version")
    assert native_clickhouse.startswith("18.16."), (
        f"Debian now ships ClickHouse {native_clickhouse}: align {compose.CLICKHOUSE_IMAGE} "
        "in dashboards/compose.py and the reader's constraint in scripts/clickhouse/users.xml.in")
