"""Every Grafana panel and alert query, macros and variables expanded, runs on the real server (as
the read-only user Grafana uses) and on chdb against the scenario data and returns the columns
its panel expects; the Prometheus expressions parse and evaluate on the real Prometheus."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from dashboards import build
from tests.support.stack import run_stack, stack_env
from tests.unit.dashboards.grafana_macros import expand
from tests.unit.storage import scenario
from tests.unit.storage.ch_helpers import (
    Databases,
    engine_databases,
)

pytestmark = pytest.mark.integration

START = scenario.START.replace(tzinfo=None)
END = datetime(2026, 11, 23, 0, 0)
VARIABLES: dict[str, Any] = {
    "segment_dim": "all", "segment_value": "all", "min_n": "30",
    "stage": ["pre_purchase", "purchase", "use", "after_sales"],
    "driver_dim": "touchpoint", "driver_outcome": "nps",
}
# Tables the storage scenario does not fill (cases and driver runs come from other jobs): their
# queries must run and return their columns here; their numbers are checked on data in
# tests/integration/test_followups_panels.py and tests/integration/test_drivers_clickhouse.py.
NOT_IN_SCENARIO = ("followups", "key_drivers")


def ch_queries() -> list[tuple[str, str, list[str]]]:
    out = []
    for make in build.DASHBOARDS:
        d = make()
        for p in d.panels:
            if p.datasource["uid"] != build.CLICKHOUSE_UID:
                continue
            for i, (sql, cols) in enumerate(zip(p.queries, p.columns, strict=True)):
                out.append((f"{d.uid}/{p.title}/{i}", sql, cols))
        for v in d.variables:
            if v["type"] == "query":
                out.append((f"{d.uid}/var {v['name']}", v["query"], ["segment_value"]))
    for q in build.experience_rules():
        out.append((f"alert/{q.uid}", q.sql, q.columns))
    return out


@pytest.fixture(scope="module", params=["server", "chdb"])
def loaded(request: pytest.FixtureRequest) -> Iterator[Databases]:
    urls = request.getfixturevalue("clickhouse_urls") if request.param == "server" else None
    with engine_databases(request.param, "pe_dash", urls) as dbs:
        scenario.load(dbs.writer)
        yield dbs


@pytest.mark.parametrize(("name", "sql", "columns"), ch_queries(), ids=[q[0] for q in ch_queries()])
def test_query_runs_and_returns_the_panel_columns(
    loaded: Databases, name: str, sql: str, columns: list[str]
) -> None:
    text = expand(sql, START, END, 3600, VARIABLES)
    rows, cols = loaded.reader.query_with_columns(text)
    assert [c for c, _ in cols] == columns, name
    alert_on_empty = "no-journeys" in name or "nps-clearly" in name or "negative-ends" in name
    other_data = any(table in sql for table in NOT_IN_SCENARIO)
    if not alert_on_empty and "core-drop-warning" not in name and not other_data:
        assert rows, f"{name}: no rows on the scenario data"
    if "FORMAT" not in text and columns and columns[0] == "time":
        times = [r[0] for r in rows]
        assert times == sorted(times), f"{name}: time series must be ordered by time"


def test_core_drop_rules_page_what_the_core_fired_with_its_sentence(loaded: Databases) -> None:
    """The core-drop rules take the core's firing alerts as they are (no second sample-size
    gate: the scenario runs the core with min_n 30, and its alerts page) and carry each one's
    sentence; the hourly-metric rule keeps its own gate (it reads raw windows)."""
    latest = scenario.build().latest_alerts().values()
    for severity in ("critical", "warning"):
        q = next(r for r in build.experience_rules()
                 if r.uid == f"peakend-core-drop-{severity}")
        expanded = expand(q.sql, START, END, 3600, VARIABLES)
        firing = {f"{a.metric} {a.segment_dim}={a.segment_value}": a.message for a in latest
                  if a.state == "firing" and a.severity == severity}
        rows = loaded.reader.query(expanded)
        assert {r[0]: r[1] for r in rows} == firing, severity
        assert all(r[2] >= 1 for r in rows)
    assert any(a.state == "firing" and a.n < build.MIN_N for a in latest)
    assert all(a.message for a in latest)
    # the hourly-metric rule over the burst hours finds the NPS collapse once n is allowed
    nps = next(r for r in build.experience_rules() if r.uid == "peakend-nps-clearly-negative")
    burst = scenario.BURST_HOUR.replace(tzinfo=None)
    text = expand(nps.sql, burst, burst.replace(hour=burst.hour + 2), 3600, VARIABLES)
    by_series: dict[str, float] = dict(
        loaded.reader.query(text.replace(f"n >= {build.MIN_N}", "n >= 30")))
    assert by_series["all=all"] < 0


def _prom_exprs() -> list[str]:
    exprs = [t for make in build.DASHBOARDS for p in make().panels
             if p.datasource["uid"] == build.PROMETHEUS_UID for t in p.queries]
    exprs += [r[2] for r in build.PIPELINE_RULES]
    return exprs


def test_prometheus_expressions_evaluate() -> None:
    run_stack("start", "prometheus")
    base = stack_env()["PEAKEND_PROMETHEUS_URL"]
    for expr in _prom_exprs():
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", (expr, body)
