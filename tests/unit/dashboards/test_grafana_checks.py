"""What Grafana itself checks when it loads our provisioning (Grafana cannot run here, so its
checks are encoded from its schema and source):

- dashboards: Grafana's dashboard JSON schema (dashboards/schema/README.md says where it is from);
- alert rules: the checks file provisioning applies before it stores a rule. A single failing
  rule stops alerting provisioning and with it Grafana's start-up, so every rule must pass.
  Sources, grafana/grafana at commit a18d82be340a9a9d9365bb78e943911a94134f23:
  pkg/services/provisioning/alerting/file/rules_types.go (AlertRuleGroupV1.MapToModel,
  AlertRuleV1.mapToModel), pkg/services/ngalert/models/alert_rule.go (ValidateAlertRule,
  SetDashboardAndPanelFromAnnotations, ErrStateFromString, NoDataStateFromString,
  ValidateRuleGroupInterval) and pkg/util/shortid_generator.go (ValidateUID).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dashboards import build

SCHEMA = json.loads((Path(build.ROOT) / "schema" / "dashboard.jsonschema.json").read_text())

# alert_rule.go: the states Grafana 11.3 accepts (KeepLast came later, so it is not used here)
NO_DATA_STATES = {"Alerting", "NoData", "OK"}
EXEC_ERR_STATES = {"Alerting", "Error", "OK"}
BASE_INTERVAL_S = 10  # [unified_alerting] base_interval default: group intervals are multiples
UID = re.compile(r"[a-zA-Z0-9\-_]{1,40}")  # shortid_generator.go: MaxUIDLength 40, IsValidShortUID
# prometheus/common model.ParseDuration, which file provisioning uses for `for` and `interval`
PROM_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
DURATION_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1,
                  "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds, or ValueError as Grafana's model.ParseDuration would refuse it."""
    if text == "0":
        return 0
    if not text or not PROM_DURATION.fullmatch(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", text))


def grafana_rule_errors(group: dict[str, Any], datasource_uids: set[str],
                        panels: dict[str, dict[int, str]]) -> list[str]:
    """What Grafana's file provisioning would refuse in this rule group (empty: accepted)."""
    errors: list[str] = []
    if not str(group.get("name", "")).strip():
        errors.append("rule group has no name set")
    if not str(group.get("folder", "")).strip():
        errors.append("rule group has no folder set")
    try:
        interval = parse_duration(str(group.get("interval", "")))
        if interval <= 0 or interval % BASE_INTERVAL_S:
            errors.append(f"interval {group['interval']} is not a multiple of {BASE_INTERVAL_S}s")
    except ValueError as e:
        errors.append(str(e))
    titles: set[str] = set()
    for rule in group.get("rules", []):
        title = rule.get("title", "")
        if not title:
            errors.append("rule has no title set")
        if title in titles:
            errors.append(f"{title}: two rules with the same title in one folder")
        titles.add(title)
        if not UID.fullmatch(str(rule.get("uid", ""))):
            errors.append(f"{title}: uid {rule.get('uid')!r} missing, too long or invalid")
        try:
            if parse_duration(str(rule.get("for", "0s"))) < 0:
                errors.append(f"{title}: for is negative")
        except ValueError as e:
            errors.append(f"{title}: {e}")
        if rule.get("execErrState", "Alerting") not in EXEC_ERR_STATES:
            errors.append(f"{title}: unknown Error state option {rule['execErrState']}")
        if rule.get("noDataState", "NoData") not in NO_DATA_STATES:
            errors.append(f"{title}: unknown NoData state option {rule['noDataState']}")
        data = rule.get("data", [])
        if not data:
            errors.append(f"{title}: no data set")
        refs = {q.get("refId") for q in data}
        if not rule.get("condition"):
            errors.append(f"{title}: no condition set")
        elif rule["condition"] not in refs:
            errors.append(f"{title}: condition {rule['condition']} is no query's refId")
        for q in data:
            if q.get("datasourceUid") not in datasource_uids | {"__expr__"}:
                errors.append(f"{title}: data source {q.get('datasourceUid')} not provisioned")
            if q["datasourceUid"] == "__expr__" and q["model"].get("expression") not in refs:
                errors.append(f"{title}: expression reads unknown {q['model'].get('expression')}")
        annotations = rule.get("annotations", {})
        dash_uid = annotations.get("__dashboardUid__", "")
        panel_id = annotations.get("__panelId__", "")
        if bool(dash_uid) != bool(panel_id):
            errors.append(f"{title}: both annotations __dashboardUid__ and __panelId__ must be "
                          "specified")
        if dash_uid:
            if not re.fullmatch(r"-?\d+", panel_id):
                errors.append(f"{title}: annotation __panelId__ must be a valid integer Panel ID")
            elif int(panel_id) not in panels.get(dash_uid, {}):
                errors.append(f"{title}: no panel {panel_id} on dashboard {dash_uid}")
            if (rule.get("dashboardUid", dash_uid), str(rule.get("panelId", panel_id))) != (
                    dash_uid, panel_id):
                errors.append(f"{title}: dashboardUid/panelId disagree with the annotations")
        for label in rule.get("labels", {}):
            if label.startswith("__"):
                errors.append(f"{title}: system reserved label {label}")
    return errors


def _datasource_uids() -> set[str]:
    return {d["uid"] for d in build.datasources()["datasources"]}


def _panels() -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for make in build.DASHBOARDS:
        doc = build.dashboard_json(make())
        out[doc["uid"]] = {p["id"]: p["title"] for p in doc["panels"]}
    return out


def _rules_file() -> dict[str, Any]:
    return yaml.safe_load((build.PROVISIONING / "alerting" / "rules.yml").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("make", build.DASHBOARDS, ids=lambda m: m.__name__)
def test_dashboard_matches_grafanas_schema(make: Any) -> None:
    doc = json.loads((build.DASHBOARD_DIR / f"{make().uid}.json").read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(doc)


def test_the_schema_check_catches_a_broken_dashboard() -> None:
    doc = build.dashboard_json(build.overview())
    broken = copy.deepcopy(doc)
    broken["panels"][0]["gridPos"]["w"] = "wide"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)
    broken = copy.deepcopy(doc)
    broken["panels"][0]["sqlQuery"] = "SELECT 1"  # panels allow no unknown keys
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_every_provisioned_rule_passes_grafanas_checks() -> None:
    doc = _rules_file()
    assert doc["apiVersion"] == 1
    uids = [r["uid"] for g in doc["groups"] for r in g["rules"]]
    assert len(uids) == len(set(uids)), "rule uids must be unique"
    for group in doc["groups"]:
        assert grafana_rule_errors(group, _datasource_uids(), _panels()) == [], group["name"]


def test_every_rule_links_to_its_panel() -> None:
    panels = _panels()
    declared = [(q.uid, q.dashboard, q.panel) for q in build.experience_rules()]
    declared += [(r.uid, r.dashboard, r.panel) for r in build.PIPELINE_RULES]
    rules = {r["uid"]: r for g in _rules_file()["groups"] for r in g["rules"]}
    assert set(rules) == {uid for uid, _, _ in declared}
    for uid, dashboard, panel in declared:
        annotations = rules[uid]["annotations"]
        assert annotations["__dashboardUid__"] == dashboard
        assert panels[dashboard][int(annotations["__panelId__"])] == panel, uid


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["annotations"].pop("__panelId__"), "both annotations"),
    (lambda r: r["annotations"].update({"__panelId__": "first"}), "valid integer Panel ID"),
    (lambda r: r["annotations"].update({"__panelId__": "999"}), "no panel 999"),
    (lambda r: r.update({"uid": "x" * 41}), "uid"),
    (lambda r: r.update({"noDataState": "Ok"}), "unknown NoData state"),
    (lambda r: r.update({"execErrState": "KeepLast"}), "unknown Error state"),
    (lambda r: r.update({"for": "5 min"}), "not a duration"),
    (lambda r: r.update({"condition": "D"}), "condition D"),
    (lambda r: r["data"][0].update({"datasourceUid": "clickhouse"}), "not provisioned"),
])
def test_the_rule_checks_catch_what_grafana_refuses(mutate: Any, message: str) -> None:
    group = copy.deepcopy(_rules_file()["groups"][0])
    mutate(group["rules"][0])
    errors = grafana_rule_errors(group, _datasource_uids(), _panels())
    assert any(message in e for e in errors), errors


def test_group_interval_must_fit_the_scheduler() -> None:
    group = copy.deepcopy(_rules_file()["groups"][0])
    group["interval"] = "45s"
    assert grafana_rule_errors(group, _datasource_uids(), _panels())


# jsonData keys grafana-clickhouse-datasource 4.14.1 reads (pkg/plugin/settings.go, LoadSettings,
# at grafana/clickhouse-datasource commit 1bcda949^, the last before 4.15.0 required Grafana 11.6)
PLUGIN_JSON_DATA = {"server", "host", "port", "protocol", "secure", "path", "tlsSkipVerify",
                    "tlsAuth", "tlsAuthWithCACert", "username", "defaultDatabase", "timeout",
                    "dialTimeout", "queryTimeout", "customSettings", "forwardGrafanaHeaders",
                    "connMaxLifetime", "maxIdleConns", "maxOpenConns", "enableRowLimit",
                    "httpHeaders"}


def test_the_clickhouse_data_source_uses_only_settings_the_plugin_reads() -> None:
    ch = next(d for d in build.datasources()["datasources"]
              if d["type"] == "grafana-clickhouse-datasource")
    assert set(ch["jsonData"]) <= PLUGIN_JSON_DATA
    assert ch["jsonData"]["protocol"] in {"native", "http"}
    assert int(ch["jsonData"]["queryTimeout"]) == build.READER_QUERY_TIMEOUT_S
