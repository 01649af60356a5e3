"""Grafana provisioning: committed files equal the generator's output and read back with PyYAML,
dashboards validate against Grafana's dashboard JSON schema, every data source uid is provisioned,
alert rules pass the checks Grafana's file provisioning applies, and Prometheus panels use only
the worker's metric names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from dashboards import build
from pipeline.observability import WorkerMetrics

PROV = build.PROVISIONING


def load_yaml(path: str) -> Any:
    return yaml.safe_load((PROV / path).read_text(encoding="utf-8"))


def test_committed_files_equal_the_generated_ones() -> None:
    for path, text in build.outputs().items():
        assert path.exists(), f"{path} missing: run python -m dashboards.build"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from dashboards/build.py: run python -m dashboards.build")
    committed = set(build.DASHBOARD_DIR.glob("*.json"))
    assert committed == {p for p in build.outputs() if p.suffix == ".json"}


def test_yaml_reads_back_to_the_same_data() -> None:
    for name, make in [("datasources/clickhouse.yml", build.datasources),
                       ("dashboards/peakend.yml", build.dashboard_provider),
                       ("alerting/rules.yml", build.alert_rules),
                       ("alerting/contact-points.yml", build.contact_points),
                       ("alerting/policies.yml", build.policies),
                       ("alerting/templates.yml", build.templates)]:
        assert load_yaml(name) == make(), name


def test_yaml_keeps_strings_that_look_like_other_types() -> None:
    value: dict[str, Any] = {"a": "yes", "b": "x: y", "c": ["on", "1", 2.5, None, True],
                             "d": "line 1\n  line 2\n\nline 4", "e": {}, "weird key": "#x",
                             "f": "${PEAKEND_X}", "g": "0s", "h": "1"}
    text = build.dump_yaml(value, "header\n\nmore")
    assert text.startswith("# header\n#\n# more\n")
    assert yaml.safe_load(text) == value


def _datasource_uids() -> set[str]:
    doc = load_yaml("datasources/clickhouse.yml")
    return {d["uid"] for d in doc["datasources"]}


def test_datasources_use_the_reader_and_no_literal_secret() -> None:
    doc = load_yaml("datasources/clickhouse.yml")
    ch = next(d for d in doc["datasources"] if d["type"] == "grafana-clickhouse-datasource")
    assert ch["jsonData"]["username"] == "peakend_reader"
    assert ch["secureJsonData"]["password"] == "${PEAKEND_CLICKHOUSE_READER_PASSWORD}"
    for path in PROV.rglob("*.yml"):
        text = path.read_text()
        for match in re.finditer(r"(password|secret|token)\w*:\s*(\S+)", text, re.IGNORECASE):
            assert match.group(2).strip('"').startswith("${"), f"{path}: {match.group(0)}"


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(build.DASHBOARD_DIR.glob("*.json"))]


@pytest.mark.parametrize("doc", dashboards(), ids=lambda d: d["uid"])
def test_dashboard_structure(doc: dict[str, Any]) -> None:
    for key in ("uid", "title", "panels", "schemaVersion", "time", "templating", "version"):
        assert key in doc, key
    assert doc["schemaVersion"] == build.SCHEMA_VERSION
    assert len(doc["uid"]) <= 40
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uids = _datasource_uids()
    occupied: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        assert p["type"] in {"timeseries", "stat", "table", "barchart", "bargauge",
                             "xychart"}
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and g["w"] >= 1 and g["h"] >= 1
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"{p['title']} overlaps another panel"
        occupied |= cells
        assert p["datasource"]["uid"] in uids
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] in uids
            assert ("rawSql" in t) != ("expr" in t)
    for var in doc["templating"]["list"]:
        assert var["name"] and var["type"] in {"custom", "query"}
        if var["type"] == "query":
            assert var["datasource"]["uid"] in uids


def test_five_dashboards_cover_the_issue() -> None:
    titles = " | ".join(d["title"] for d in dashboards())
    for word in ("overview", "Peak-end", "NPS, CES, CSAT", "alert timeline", "Pipeline health",
                 "Follow-up cases"):
        assert word in titles


def _worker_metric_names() -> set[str]:
    names: set[str] = set()
    for metric in WorkerMetrics.create().registry.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
        names.update({metric.name + s for s in ("_total", "_bucket", "_sum", "_count")})
    return names


def test_prometheus_queries_use_worker_metric_names() -> None:
    known = _worker_metric_names() | {"up"}
    exprs = [t["expr"] for d in dashboards() for p in d["panels"] for t in p["targets"]
             if "expr" in t]
    exprs += [q["model"]["expr"] for g in build.alert_rules()["groups"] for r in g["rules"]
              for q in r["data"] if "expr" in q["model"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\b(peakend_\w+|up)\b", expr):
            assert name in known, f"{name} in {expr} is not a worker metric"


def test_alert_rules_are_well_formed() -> None:
    doc = build.alert_rules()
    uids = _datasource_uids() | {"__expr__"}
    seen: set[str] = set()
    for group in doc["groups"]:
        assert re.fullmatch(r"\d+[smh]", group["interval"])
        for rule in group["rules"]:
            assert rule["uid"] not in seen and len(rule["uid"]) <= 40
            seen.add(rule["uid"])
            refs = {q["refId"] for q in rule["data"]}
            assert rule["condition"] in refs
            for q in rule["data"]:
                assert q["datasourceUid"] in uids
                assert q["model"]["refId"] == q["refId"]
                if q["datasourceUid"] == "__expr__":
                    assert q["model"]["expression"] in refs
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
    # rules on the hourly metrics respect the sample size; rules on the core's alert records
    # do not gate again (the core did: its min_n is a setting, declared once) and page with
    # the core's sentence
    core_rules = [q for q in build.experience_rules() if "alerts_latest" in q.sql]
    assert {q.uid for q in core_rules} >= {"peakend-core-drop-critical",
                                           "peakend-core-drop-warning"}
    for q in build.experience_rules():
        if "metrics_hourly" in q.sql:
            assert f"n >= {build.MIN_N}" in q.sql, q.uid
    for q in core_rules:
        assert not re.search(r"\bn >=", q.sql), q.uid
        assert "message" in q.columns and "{{ $labels.message }}" in q.summary, q.uid
    policy = build.policies()["policies"][0]
    receivers = {c["name"] for c in build.contact_points()["contactPoints"]}
    assert policy["receiver"] in receivers
    assert all(r["receiver"] in receivers for r in policy["routes"])
    template = build.templates()["templates"][0]["template"]
    for name in re.findall(r'template "([\w.]+)"', json.dumps(build.contact_points())):
        assert f'define "{name}"' in template


def test_dashboard_provider_points_at_the_generated_dashboards() -> None:
    doc = load_yaml("dashboards/peakend.yml")
    assert doc["providers"][0]["type"] == "file"
    assert doc["providers"][0]["options"]["path"].endswith("/peakend")


def test_panel_expectations_match_queries() -> None:
    for make in build.DASHBOARDS:
        for p in make().panels:
            assert len(p.columns) == len(p.queries), p.title
            for sql, cols in zip(p.queries, p.columns, strict=True):
                if p.fmt == build.FORMAT_TIMESERIES and p.datasource["uid"] == build.CLICKHOUSE_UID:
                    assert cols[0] == "time", p.title
                if p.datasource["uid"] == build.CLICKHOUSE_UID:
                    assert sql.strip().upper().startswith("SELECT") and cols, p.title


# A panel and an alert rule declared as data elsewhere, as panels_followups.py and friends do.
EXAMPLE_PANELS = [build.Panel(
    "Example: closed journeys per hour", "timeseries",
    [f"SELECT {build.bucket('ended_at')} AS time, count() AS journeys FROM journeys_latest "
     "WHERE $__timeFilter(ended_at) GROUP BY time ORDER BY time"],
    [["time", "journeys"]], fmt=build.FORMAT_TIMESERIES, unit="short",
    thresholds=[(None, "green"), (100.0, "red")])]
EXAMPLE_RULES = [build.AlertQuery(
    "peakend-example-rule", "Example rule", "SELECT toFloat64(count()) AS n FROM journeys_latest",
    ["n"], "n", "lt", 1, "example", "warning", dashboard="peakend-overview",
    panel="Example: closed journeys per hour")]


def test_a_list_of_panels_or_rules_is_added_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    here = "tests.unit.dashboards.test_provisioning"
    before = build.dashboard_json(build.DASHBOARDS[0]())
    monkeypatch.setitem(build.EXTRA_PANELS, "peakend-overview", [f"{here}:EXAMPLE_PANELS"])
    monkeypatch.setattr(build, "EXTRA_EXPERIENCE_RULES", [f"{here}:EXAMPLE_RULES"])
    after = build.dashboard_json(build.DASHBOARDS[0]())
    assert after["panels"][:-1] == before["panels"], "existing panels and ids must not move"
    added = after["panels"][-1]
    assert added["title"] == EXAMPLE_PANELS[0].title and added["id"] == len(before["panels"]) + 1
    assert added["fieldConfig"]["defaults"]["unit"] == "short"
    assert [s["value"] for s in added["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None, 100.0]
    rules = {r["uid"]: r for g in build.alert_rules()["groups"] for r in g["rules"]}
    assert rules["peakend-example-rule"]["annotations"]["__panelId__"] == str(added["id"])


def test_every_registered_list_loads() -> None:
    for refs in build.EXTRA_PANELS.values():
        for ref in refs:
            assert all(isinstance(p, build.Panel) for p in build.load_list(ref)), ref
    for ref in build.EXTRA_EXPERIENCE_RULES:
        assert all(isinstance(q, build.AlertQuery) for q in build.load_list(ref)), ref


def test_followup_and_driver_panels_are_wired() -> None:
    """Issue 17's panels make the follow-up dashboard and its SLA rule links to one of them;
    issue 18's quadrant is on the peak-end dashboard with the variables its SQL uses, plotting
    two columns its query returns."""
    from dashboards import panels_drivers, panels_followups
    by_uid = {d["uid"]: d for d in dashboards()}
    followups = by_uid[panels_followups.DASHBOARD_UID]
    assert [p["title"] for p in followups["panels"]] == [p.title for p in panels_followups.PANELS]
    assert [t["rawSql"] for p in followups["panels"] for t in p["targets"]] == [
        p.sql for p in panels_followups.PANELS]
    rules = {r["uid"]: r for g in build.alert_rules()["groups"] for r in g["rules"]}
    sla = rules[panels_followups.SLA_BREACH_ALERT.uid]
    assert sla["dashboardUid"] == followups["uid"]
    linked = next(p for p in followups["panels"] if p["id"] == sla["panelId"])
    assert "followups_sla_breaches" in linked["targets"][0]["rawSql"]
    assert sla["for"] == panels_followups.SLA_BREACH_ALERT.for_
    peak_end = by_uid["peakend-peak-end"]
    quadrant = next(p for p in peak_end["panels"] if p["title"] == panels_drivers.TITLE)
    assert quadrant["type"] == "xychart"
    [series] = quadrant["options"]["series"]
    panel = next(p for make in build.DASHBOARDS for p in make().panels
                 if p.title == panels_drivers.TITLE)
    assert {series["x"], series["y"]} <= set(panel.columns[0])
    used = set(re.findall(r"\$\{(\w+)\}", panels_drivers.SQL))
    variables = {v["name"]: v for v in peak_end["templating"]["list"]}
    assert used == set(panels_drivers.VARIABLES) and used <= set(variables)
    for name in used:
        assert [o["value"] for o in variables[name]["options"]] == list(
            panels_drivers.VARIABLES[name])
