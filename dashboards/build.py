"""Grafana provisioning for peakend, generated: `python -m dashboards.build` writes every file
under dashboards/grafana/ (tests check the committed files equal what this produces).

- datasources: ClickHouse (grafana-clickhouse-datasource, read-only user, password from
  $PEAKEND_CLICKHOUSE_READER_PASSWORD) and Prometheus.
Each panel and alert rule is data declared once (title, SQL or PromQL, unit, thresholds, the
columns it returns); the Grafana JSON is made by grafana-foundation-sdk's builders
(`dashboards/grafana_json.py`), YAML by PyYAML. A list of panels, variables or alert rules declared
in another module is added by one line in `EXTRA_PANELS`, `EXTRA_VARIABLES` or
`EXTRA_EXPERIENCE_RULES` (the follow-up and key-drivers lists: `dashboards/panels_grafana.py`).

- dashboards: experience overview; peak-end by stage and touchpoint; NPS/CES/CSAT trends with
  intervals and sample sizes; alert timeline; pipeline health (Prometheus); follow-up cases.
- alerting: rules for experience drops (core alerts as the core decided them, with its sentence;
  hourly metrics gated on sample size)
  and pipeline health, a contact point, a notification policy and message templates.

SQL runs on ClickHouse 18.16 and current ClickHouse alike (no toStartOfInterval: time buckets use
intDiv on the epoch second); Grafana macros used: $__timeFilter, $__fromTime, $__toTime,
$__interval_s and template variables.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from dashboards import grafana_json, panels_followups
from pipeline.core.event import STAGES
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent
GRAFANA = ROOT / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARD_DIR = GRAFANA / "dashboards"

CLICKHOUSE_UID = "peakend-clickhouse"
PROMETHEUS_UID = "peakend-prometheus"
CH = {"type": "grafana-clickhouse-datasource", "uid": CLICKHOUSE_UID}
PROM = {"type": "prometheus", "uid": PROMETHEUS_UID}
SCHEMA_VERSION = 39
# PEAKEND_ALERT_MIN_N default (declared once, in pipeline/settings.py): below this an interval is
# too wide to act on
MIN_N = Settings.from_env({}).alert_min_n
FOLDER = "peakend"
READER_MAX_EXECUTION_S = 30  # peakend_reader's max_execution_time (scripts/clickhouse/users.xml.in)
# clickhouse-go sends max_execution_time = the query's remaining time + 5 s (its context.go)
READER_QUERY_TIMEOUT_S = READER_MAX_EXECUTION_S - 5

# Grafana ClickHouse plugin query formats
FORMAT_TIMESERIES = 0
FORMAT_TABLE = 1

# Time bucket of $__interval_s seconds that both 18.16 and current ClickHouse understand.
def bucket(col: str) -> str:
    return f"toDateTime(intDiv(toUInt32({col}), $__interval_s) * $__interval_s)"


@dataclass
class Panel:
    title: str
    kind: str  # timeseries, stat, table, barchart, bargauge
    queries: list[str]
    columns: list[list[str]]  # expected result columns per query (tests check them)
    w: int = 12
    h: int = 8
    datasource: dict[str, str] = field(default_factory=lambda: dict(CH))
    fmt: int = FORMAT_TABLE
    unit: str = ""
    description: str = ""
    legends: list[str] = field(default_factory=list)  # Prometheus legend formats
    # (value, colour) steps from the lowest; the first value is None (the base colour)
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    xy: tuple[str, str] | None = None  # xychart: the (x, y) columns of its one scatter series


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[dict[str, Any]] = field(default_factory=list)
    time_from: str = "now-7d"
    tags: list[str] = field(default_factory=lambda: ["peakend"])


# ----------------------------------------------------------------------------- variables
SEGMENT_DIM = {
    "name": "segment_dim", "label": "Segment", "type": "custom",
    "query": "all,touchpoint,channel,stage,region,tier",
    "current": {"text": "all", "value": "all"},
}
SEGMENT_VALUE = {
    "name": "segment_value", "label": "Value", "type": "query", "datasource": CH,
    "query": "SELECT DISTINCT segment_value FROM metric_partials_latest "
             "WHERE segment_dim = '${segment_dim}' ORDER BY segment_value",
    "refresh": 2, "current": {"text": "all", "value": "all"},
}
MIN_N_VAR = {
    "name": "min_n", "label": "Minimum n", "type": "custom", "query": "30,100,300,1000",
    "current": {"text": str(MIN_N), "value": str(MIN_N)},
}
STAGE = {
    "name": "stage", "label": "End stage", "type": "custom",
    "query": ",".join(STAGES), "includeAll": True, "multi": True,
    "current": {"text": "All", "value": "$__all"},
}

# ----------------------------------------------------------------------------- dashboards


def overview() -> Dashboard:
    return Dashboard(
        "peakend-overview", "peakend / Experience overview",
        "Peak-end state of journeys that ended in the time range, headline NPS with its interval "
        "and n, and what is firing. For CX leads and on-call: one screen for 'are customers OK?'.",
        [
            Panel("Journeys ended", "stat", [
                "SELECT count() AS journeys FROM journeys_latest "
                "WHERE $__timeFilter(ended_at) AND status = 'closed'"],
                [["journeys"]], w=4, h=4),
            Panel("Mean peak-end score", "stat", [
                "SELECT avg(peak_end_score) AS avg_peak_end_score FROM journeys_latest "
                "WHERE $__timeFilter(ended_at) AND peak_end_score IS NOT NULL"],
                [["avg_peak_end_score"]], w=4, h=4, unit="none",
                description="(peak + end) / 2 in [-1, 1] over journeys ended in the range."),
            Panel("Negative-end share", "stat", [
                "SELECT countIf(end_valence < 0) / greatest(count(), 1) AS negative_end_share "
                "FROM journeys_latest WHERE $__timeFilter(ended_at) AND status = 'closed' "
                "AND end_valence IS NOT NULL"],
                [["negative_end_share"]], w=4, h=4, unit="percentunit"),
            Panel("NPS (range) with 95% interval and n", "stat", [
                "SELECT 100 * (promoters - detractors) / nullIf(answers, 0) AS nps, "
                "greatest(-100, 100 * ((p - d) - 1.96 * sqrt((p + d - (p - d) * (p - d)) / "
                "(answers + 3)))) AS ci_low, least(100, 100 * ((p - d) + 1.96 * sqrt((p + d - "
                "(p - d) * (p - d)) / (answers + 3)))) AS ci_high, answers FROM (SELECT "
                "promoters, detractors, answers, (promoters + 0.75) / (answers + 3) AS p, "
                "(detractors + 0.75) / (answers + 3) AS d FROM (SELECT sum(promoters) AS "
                "promoters, sum(detractors) AS detractors, sum(n) AS answers FROM "
                "metric_partials_latest WHERE metric = 'nps' AND segment_dim = 'all' AND "
                "$__timeFilter(window_start)))"],
                [["nps", "ci_low", "ci_high", "answers"]], w=8, h=4,
                description="Adjusted-Wald interval from the summed counts (docs/design.md)."),
            Panel("Alerts firing now", "stat", [
                "SELECT count() AS firing FROM alerts_latest WHERE state = 'firing'"],
                [["firing"]], w=4, h=4),
            Panel("Peak-end score and negative-end share over time", "timeseries", [
                f"SELECT {bucket('ended_at')} AS time, avg(peak_end_score) AS avg_peak_end_score, "
                "avg(mean_valence) AS avg_mean_valence, countIf(end_valence < 0) / count() AS "
                "negative_end_share FROM journeys_latest WHERE $__timeFilter(ended_at) AND "
                "status = 'closed' AND end_valence IS NOT NULL GROUP BY time ORDER BY time"],
                [["time", "avg_peak_end_score", "avg_mean_valence", "negative_end_share"]],
                w=16, h=8, fmt=FORMAT_TIMESERIES,
                description="Mean valence beside peak-end: the average hides peaks."),
            Panel("Top touchpoints by negative moments", "table", [
                "SELECT touchpoint, sum(negative_peaks) AS negative_peaks_sum, "
                "sum(negative_ends) AS negative_ends_sum, negative_peaks_sum + "
                "negative_ends_sum AS negative_moments FROM touchpoint_peak_end_daily WHERE "
                "$__timeFilter(day) GROUP BY touchpoint ORDER BY negative_moments DESC, "
                "touchpoint LIMIT 10"],
                [["touchpoint", "negative_peaks_sum", "negative_ends_sum", "negative_moments"]],
                w=8, h=8),
        ],
    )


def peak_end() -> Dashboard:
    return Dashboard(
        "peakend-peak-end", "peakend / Peak-end by journey stage and touchpoint",
        "Where journeys peak and end, by stage and touchpoint. For journey owners deciding "
        "which touchpoint to fix first (peaks and ends are what customers remember).",
        [
            Panel("By end stage", "table", [
                "SELECT end_stage, count() AS journeys, avg(peak_valence) AS avg_peak, "
                "avg(end_valence) AS avg_end, avg(peak_end_score) AS avg_peak_end, "
                "avg(mean_valence) AS avg_mean, countIf(end_valence < 0) / count() AS "
                "negative_end_share FROM journeys_latest WHERE $__timeFilter(ended_at) AND "
                "end_valence IS NOT NULL AND end_stage IN (${stage:singlequote}) "
                "GROUP BY end_stage ORDER BY negative_end_share DESC"],
                [["end_stage", "journeys", "avg_peak", "avg_end", "avg_peak_end", "avg_mean",
                  "negative_end_share"]], w=24, h=7),
            Panel("Negative peaks and ends by touchpoint", "barchart", [
                "SELECT touchpoint, sum(negative_peaks) AS negative_peaks_sum, "
                "sum(negative_ends) AS negative_ends_sum FROM touchpoint_peak_end_daily WHERE "
                "$__timeFilter(day) GROUP BY touchpoint ORDER BY negative_peaks_sum + "
                "negative_ends_sum DESC LIMIT 15"],
                [["touchpoint", "negative_peaks_sum", "negative_ends_sum"]], w=12, h=9),
            Panel("Worst moment of the journey, by touchpoint", "bargauge", [
                "SELECT worst_touchpoint AS touchpoint, count() AS journeys FROM journeys_latest "
                "WHERE $__timeFilter(ended_at) AND worst_valence < 0 GROUP BY touchpoint "
                "ORDER BY journeys DESC LIMIT 15"],
                [["touchpoint", "journeys"]], w=12, h=9),
            Panel("Peaked well, ended badly (latest 100)", "table", [
                "SELECT journey_id, peak_touchpoint, peak_valence, end_touchpoint, end_stage, "
                "end_valence, peak_end_score, ended_at FROM journeys_peak_good_end_bad WHERE "
                "$__timeFilter(ended_at) ORDER BY ended_at DESC LIMIT 100"],
                [["journey_id", "peak_touchpoint", "peak_valence", "end_touchpoint", "end_stage",
                  "end_valence", "peak_end_score", "ended_at"]], w=24, h=10),
        ],
        variables=[STAGE],
    )


def _metric_series(metric: str) -> str:
    return (
        "SELECT hour AS time, value, ci_low, ci_high, n FROM metrics_hourly WHERE metric = "
        f"'{metric}' AND segment_dim = '${{segment_dim}}' AND segment_value = "
        "'${segment_value}' AND $__timeFilter(hour) AND n >= ${min_n} ORDER BY time"
    )


def surveys() -> Dashboard:
    cols = [["time", "value", "ci_low", "ci_high", "n"]]
    return Dashboard(
        "peakend-surveys", "peakend / NPS, CES, CSAT trends with intervals",
        "Hourly survey metrics per segment with 95% intervals; hours with fewer than $min_n "
        "answers are hidden (noise must not look like a trend). For CX analysts.",
        [
            Panel("NPS (points) with adjusted-Wald interval", "timeseries",
                  [_metric_series("nps")], cols, w=24, fmt=FORMAT_TIMESERIES),
            Panel("CES mean (1-7, higher = easier) with interval", "timeseries",
                  [_metric_series("ces")], cols, w=12, fmt=FORMAT_TIMESERIES),
            Panel("CSAT satisfied share with Wilson interval", "timeseries",
                  [_metric_series("csat")], cols, w=12, fmt=FORMAT_TIMESERIES,
                  unit="percentunit"),
            Panel("Answers per hour (sample size)", "timeseries", [
                "SELECT hour AS time, sumIf(n, metric = 'nps') AS nps_n, sumIf(n, metric = "
                "'ces') AS ces_n, sumIf(n, metric = 'csat') AS csat_n FROM metrics_hourly "
                "WHERE segment_dim = '${segment_dim}' AND segment_value = '${segment_value}' "
                "AND $__timeFilter(hour) GROUP BY time ORDER BY time"],
                [["time", "nps_n", "ces_n", "csat_n"]], w=12, fmt=FORMAT_TIMESERIES),
            Panel("Daily scores with intervals", "table", [
                "SELECT day, metric, n, value, ci_low, ci_high FROM metrics_daily WHERE "
                "segment_dim = '${segment_dim}' AND segment_value = '${segment_value}' AND "
                "$__timeFilter(day) AND metric IN ('nps', 'ces', 'csat') ORDER BY day DESC, "
                "metric"],
                [["day", "metric", "n", "value", "ci_low", "ci_high"]], w=12),
        ],
        variables=[SEGMENT_DIM, SEGMENT_VALUE, MIN_N_VAR],
    )


def alert_timeline() -> Dashboard:
    return Dashboard(
        "peakend-alerts", "peakend / Experience alert timeline",
        "Experience-drop alerts from the core (window test and CUSUM), with their evidence. "
        "For on-call and CX leads reviewing what paged and why.",
        [
            Panel("Alerts fired per hour by metric", "timeseries", [
                f"SELECT {bucket('fired_at')} AS time, countIf(metric = 'nps') AS nps, "
                "countIf(metric = 'ces') AS ces, countIf(metric = 'csat') AS csat, "
                "countIf(metric = 'negative_end') AS negative_end FROM alerts_latest WHERE "
                "$__timeFilter(fired_at) GROUP BY time ORDER BY time"],
                [["time", "nps", "ces", "csat", "negative_end"]], w=24, h=7,
                fmt=FORMAT_TIMESERIES),
            Panel("Alert history (latest state)", "table", [
                "SELECT fired_at, resolved_at, state, severity, rule, metric, segment_dim, "
                "segment_value, value, baseline, effect, n, baseline_n, ci_low, ci_high, "
                "p_value, threshold, message FROM alerts_latest WHERE fired_at <= $__toTime "
                "AND (resolved_at IS NULL OR resolved_at >= $__fromTime) ORDER BY fired_at "
                "DESC LIMIT 500"],
                [["fired_at", "resolved_at", "state", "severity", "rule", "metric",
                  "segment_dim", "segment_value", "value", "baseline", "effect", "n",
                  "baseline_n", "ci_low", "ci_high", "p_value", "threshold", "message"]],
                w=24, h=12),
            Panel("Dead letters by reason", "timeseries", [
                f"SELECT {bucket('received_at')} AS time, reason, count() AS records FROM "
                "dead_letters FINAL WHERE $__timeFilter(received_at) GROUP BY time, reason "
                "ORDER BY time"],
                [["time", "reason", "records"]], w=24, h=7, fmt=FORMAT_TIMESERIES),
        ],
    )


def pipeline_health() -> Dashboard:
    def prom(title: str, exprs: list[str], legends: list[str], unit: str = "",
             w: int = 12) -> Panel:
        return Panel(title, "timeseries", exprs, [[] for _ in exprs], w=w,
                     datasource=dict(PROM), unit=unit, legends=legends)

    return Dashboard(
        "peakend-pipeline", "peakend / Pipeline health",
        "The worker's Prometheus metrics (pipeline/observability.py). For on-call: is data "
        "flowing, is it late, is anything rejected or failing to reach ClickHouse.",
        [
            prom("Events in per second", ["sum by (topic) (rate(peakend_events_in_total[5m]))"],
                 ["{{topic}}"], "ops"),
            # input never processed: refused (dead letters) or deleted by retention unread;
            # and copies of conflicting events whose withdrawal came too late to undo them
            # (results that can differ from replay: docs/streaming.md, Known limits)
            prom("Dead letters by reason, input lost to retention, withdrawals too late, "
                 "per second",
                 ["sum by (reason) (rate(peakend_dead_letters_total[5m]))",
                  "sum by (topic) (rate(peakend_input_records_expired_total[5m]))",
                  "sum by (topic) (rate(peakend_sink_records_expired_total[5m]))",
                  "sum by (why) (rate(peakend_withdrawals_too_late_total[5m]))"],
                 ["{{reason}}", "lost to retention {{topic}}",
                  "lost to retention before the sink {{topic}}",
                  "withdrawal too late ({{why}})"], "ops"),
            prom("Consumer lag (records)", ["sum by (topic) (peakend_consumer_lag)",
                                            "max by (partition) (peakend_consumer_lag)"],
                 ["total {{topic}}", "partition {{partition}}"]),
            prom("Seconds since the last input record",
                 ["time() - max(peakend_last_event_timestamp_seconds)"], ["idle"], "s"),
            prom("ClickHouse insert latency p95", [
                "histogram_quantile(0.95, sum by (le, table) "
                "(rate(peakend_sink_insert_seconds_bucket[5m])))"], ["{{table}}"], "s"),
            prom("ClickHouse rows and insert failures per second", [
                "sum by (table) (rate(peakend_sink_rows_total[5m]))",
                "sum by (table) (rate(peakend_sink_insert_failures_total[5m]))"],
                 ["rows {{table}}", "failures {{table}}"], "ops"),
            prom("ClickHouse up (last insert succeeded)", ["min(peakend_clickhouse_up)"],
                 ["up"], w=8),
            prom("Open journeys", ["sum(peakend_journeys_open)"], ["open"], w=8),
            prom("Experience alerts firing (core)", ["sum by (metric) (peakend_alerts_firing)"],
                 ["{{metric}}"], w=8),
        ],
        time_from="now-6h",
    )


def followups() -> Dashboard:
    return Dashboard(
        panels_followups.DASHBOARD_UID, panels_followups.DASHBOARD_TITLE,
        "Follow-up cases opened by the core's trigger rules (docs/followups.md): what is open "
        "and late, who to call first, and whether contacted customers' next journey recovered. "
        "For the CX team working the closed loop.",
        [],  # the panels are the list in EXTRA_PANELS
        time_from="now-30d",
    )


# Panel lists declared as data in other modules ("module:NAME", a list of Panel), appended to a
# dashboard's own panels (so existing panel ids stay): adding a list is one line here. They are
# imported when a dashboard is built, so such a module can import Panel, CH, bucket ... from here.
EXTRA_PANELS: dict[str, list[str]] = {
    "peakend-overview": [],
    "peakend-peak-end": ["dashboards.panels_grafana:DRIVER_PANELS"],
    "peakend-surveys": [],
    "peakend-alerts": [],
    "peakend-pipeline": [],
    "peakend-followups": ["dashboards.panels_grafana:FOLLOWUP_PANELS"],
}
# Template variable lists ("module:NAME", a list of variable dicts as above) likewise.
EXTRA_VARIABLES: dict[str, list[str]] = {
    "peakend-peak-end": ["dashboards.panels_grafana:DRIVER_VARIABLES"],
}


def load_list(ref: str) -> list[Any]:
    """The list `NAME` of module `module` named by "module:NAME"."""
    module, _, name = ref.partition(":")
    return list(getattr(importlib.import_module(module), name))


def with_extra_panels(make: Callable[[], Dashboard]) -> Callable[[], Dashboard]:
    @functools.wraps(make)
    def built() -> Dashboard:
        d = make()
        for ref in EXTRA_PANELS.get(d.uid, []):
            d.panels.extend(load_list(ref))
        for ref in EXTRA_VARIABLES.get(d.uid, []):
            d.variables.extend(load_list(ref))
        return d
    return built


DASHBOARDS = tuple(with_extra_panels(make) for make in (
    overview, peak_end, surveys, alert_timeline, pipeline_health, followups))


def dashboard_json(d: Dashboard) -> dict[str, Any]:
    return grafana_json.dashboard_json(d, SCHEMA_VERSION, CLICKHOUSE_UID, FORMAT_TIMESERIES)


def panel_id(dashboard_uid: str, title: str) -> int:
    """The id of the panel titled `title` on dashboard `dashboard_uid` (KeyError if none)."""
    d = next(make() for make in DASHBOARDS if make().uid == dashboard_uid)
    return grafana_json.panel_ids(d)[title]


# ----------------------------------------------------------------------------- provisioning
def datasources() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "peakend ClickHouse",
                "uid": CLICKHOUSE_UID,
                "type": "grafana-clickhouse-datasource",
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "host": "${PEAKEND_CLICKHOUSE_HOST}",
                    "port": 9000,
                    "protocol": "native",
                    "secure": False,
                    "username": "peakend_reader",
                    "defaultDatabase": "peakend",
                    # The plugin's client asks the server for max_execution_time = this + 5 s:
                    # 25 keeps it within the reader's 30 s limit (docs/dashboards.md).
                    "queryTimeout": str(READER_QUERY_TIMEOUT_S),
                },
                "secureJsonData": {"password": "${PEAKEND_CLICKHOUSE_READER_PASSWORD}"},
            },
            {
                "name": "peakend Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": "${PEAKEND_PROMETHEUS_URL}",
                "editable": False,
                "jsonData": {"timeInterval": "5s"},
            },
        ],
    }


def dashboard_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "peakend",
            "orgId": 1,
            "folder": FOLDER,
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": "/var/lib/grafana/dashboards/peakend"},
        }],
    }


@dataclass
class AlertQuery:
    uid: str
    title: str
    sql: str
    columns: list[str]
    value: str  # the numeric column the threshold reads
    op: str  # gt / lt
    threshold: float
    summary: str
    severity: str
    window_s: int = 3600
    for_: str = "0s"
    no_data: str = "OK"  # Grafana's noDataState: OK, NoData or Alerting
    _: KW_ONLY
    dashboard: str  # uid of the dashboard and title of the panel the rule links to
    panel: str


# The core's alert records decide everything about a drop (minimum answers, effect, the
# false-alarm budget's threshold, hysteresis, severity: docs/alerts.md): the rules page on the
# firing rows as they are, with no gate of their own (a second `n >= 100` here would silently
# drop the alerts of a deployment that lowers PEAKEND_ALERT_MIN_N). The page carries the core's
# sentence (`message`, a label: it is fixed for an alert id and severity, so the instance does
# not change while it fires); rows written before migration 004 have none.
CORE_DROP_SQL = (
    "SELECT concat(metric, ' ', segment_dim, '=', segment_value) AS segment, "
    "any(message) AS message, toFloat64(count()) AS firing FROM alerts_latest WHERE "
    "state = 'firing' AND severity = '{severity}' GROUP BY segment")
CORE_DROP_SUMMARY = "{{ $labels.segment }}: {{ $labels.message }}"

EXPERIENCE_RULES = [
    AlertQuery(
        "peakend-core-drop-critical", "Experience drop (critical) from the core",
        CORE_DROP_SQL.format(severity="critical"),
        ["segment", "message", "firing"], "firing", "gt", 0, CORE_DROP_SUMMARY,
        "critical", dashboard="peakend-alerts", panel="Alert history (latest state)"),
    AlertQuery(
        "peakend-core-drop-warning", "Experience drop (warning) from the core",
        CORE_DROP_SQL.format(severity="warning"),
        ["segment", "message", "firing"], "firing", "gt", 0, CORE_DROP_SUMMARY,
        "warning", dashboard="peakend-alerts", panel="Alert history (latest state)"),
    AlertQuery(
        "peakend-nps-clearly-negative", "NPS clearly negative in the last hour",
        "SELECT concat(segment_dim, '=', segment_value) AS segment, toFloat64(max(ci_high)) AS "
        "nps_ci_high FROM metrics_hourly WHERE metric = 'nps' AND hour >= $__fromTime AND "
        f"hour < $__toTime AND n >= {MIN_N} GROUP BY segment",
        ["segment", "nps_ci_high"], "nps_ci_high", "lt", 0,
        "{{ $labels.segment }}: even the upper bound of the hourly NPS is below 0 "
        f"(n >= {MIN_N})", "warning", window_s=7200,
        dashboard="peakend-surveys", panel="NPS (points) with adjusted-Wald interval"),
    AlertQuery(
        "peakend-negative-ends-high", "Negative-end share above 40% in the last hour",
        "SELECT concat(segment_dim, '=', segment_value) AS segment, toFloat64(max(ci_low)) AS "
        "negative_end_ci_low FROM metrics_hourly WHERE metric = 'negative_end' AND hour >= "
        f"$__fromTime AND hour < $__toTime AND n >= {MIN_N} GROUP BY segment",
        ["segment", "negative_end_ci_low"], "negative_end_ci_low", "gt", 0.4,
        "{{ $labels.segment }}: more than 40 percent of journeys end negatively (Wilson lower "
        f"bound, n >= {MIN_N})", "warning", window_s=7200,
        dashboard="peakend-overview", panel="Peak-end score and negative-end share over time"),
    AlertQuery(
        "peakend-no-journeys-stored", "No journeys stored in ClickHouse for 30 minutes",
        "SELECT toFloat64(count()) AS journeys_updated FROM journeys WHERE "
        "$__timeFilter(ended_at)",
        ["journeys_updated"], "journeys_updated", "lt", 1,
        "No journey was written to ClickHouse in 30 minutes: check the worker and the sink",
        "critical", window_s=1800, for_="5m", no_data="Alerting",
        dashboard="peakend-overview", panel="Journeys ended"),
]


# Lists of AlertQuery declared in other modules ("module:NAME"), added to the experience rules.
EXTRA_EXPERIENCE_RULES: list[str] = ["dashboards.panels_grafana:FOLLOWUP_RULES"]


def experience_rules() -> list[AlertQuery]:
    return [*EXPERIENCE_RULES, *(q for ref in EXTRA_EXPERIENCE_RULES for q in load_list(ref))]


def _links(dashboard: str, panel: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The rule's link to its panel, both ways Grafana reads it: the documented file fields
    (dashboardUid, panelId) and the annotations its rule validation requires together."""
    pid = panel_id(dashboard, panel)
    return ({"dashboardUid": dashboard, "panelId": pid},
            {"__dashboardUid__": dashboard, "__panelId__": str(pid)})


def _grafana_rule(uid: str, title: str, query: dict[str, Any], window_s: int, op: str,
                  threshold: float, reduce_settings: dict[str, Any], no_data: str, for_: str,
                  summary: str, labels: dict[str, str], dashboard: str,
                  panel: str) -> dict[str, Any]:
    fields, annotations = _links(dashboard, panel)
    reduce_model: dict[str, Any] = {"refId": "B", "type": "reduce", "expression": "A",
                                    "reducer": "last"}
    if reduce_settings:
        reduce_model["settings"] = reduce_settings
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": window_s, "to": 0},
             "datasourceUid": query["datasource"]["uid"],
             "model": {"refId": "A", **{k: v for k, v in query.items() if k != "datasource"}}},
            {"refId": "B", "datasourceUid": "__expr__", "model": reduce_model},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": op, "params": [threshold]}}]}},
        ],
        **fields,
        "noDataState": no_data,
        "execErrState": "Error",
        "for": for_,
        "annotations": {"summary": summary, "runbook_url": "docs/dashboards.md#alert-rules",
                        **annotations},
        "labels": labels,
        "isPaused": False,
    }


def _rule(q: AlertQuery) -> dict[str, Any]:
    query = {"datasource": CH, "editorType": "sql", "format": FORMAT_TABLE,
             "queryType": "table", "rawSql": q.sql, "intervalMs": 60000, "maxDataPoints": 43200}
    return _grafana_rule(q.uid, q.title, query, q.window_s, q.op, q.threshold,
                         {"mode": "dropNN"}, q.no_data, q.for_, q.summary,
                         {"severity": q.severity, "team": "cx", "source": "peakend"},
                         q.dashboard, q.panel)


class PromAlert(NamedTuple):
    uid: str
    title: str
    expr: str
    op: str  # gt / lt
    threshold: float
    severity: str
    for_: str
    summary: str
    dashboard: str  # uid of the dashboard and title of the panel the rule links to
    panel: str
    no_data: str = "OK"


PIPELINE_RULES = [
    PromAlert("peakend-worker-down", "peakend worker not scraped", "up{job=\"peakend-worker\"}",
              "lt", 1, "critical", "2m", "Prometheus cannot scrape the peakend worker",
              "peakend-pipeline", "Events in per second", no_data="Alerting"),
    PromAlert("peakend-clickhouse-down", "ClickHouse unreachable from the sink",
              "min(peakend_clickhouse_up)", "lt", 1, "critical", "2m",
              "The sink's last ClickHouse insert failed",
              "peakend-pipeline", "ClickHouse up (last insert succeeded)"),
    PromAlert("peakend-lag-high", "Consumer lag above 100k records", "sum(peakend_consumer_lag)",
              "gt", 100000, "warning", "10m", "The worker is more than 100k records behind",
              "peakend-pipeline", "Consumer lag (records)"),
]


def _prom_rule(r: PromAlert) -> dict[str, Any]:
    query = {"datasource": PROM, "expr": r.expr, "instant": True, "intervalMs": 15000,
             "maxDataPoints": 43200}
    return _grafana_rule(r.uid, r.title, query, 600, r.op, r.threshold, {}, r.no_data, r.for_,
                         r.summary, {"severity": r.severity, "team": "platform",
                                     "source": "peakend"}, r.dashboard, r.panel)


def alert_rules() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": "peakend-experience", "folder": FOLDER, "interval": "1m",
             "rules": [_rule(q) for q in experience_rules()]},
            {"orgId": 1, "name": "peakend-pipeline", "folder": FOLDER, "interval": "30s",
             "rules": [_prom_rule(r) for r in PIPELINE_RULES]},
        ],
    }


TEMPLATE = """{{ define "peakend.title" -}}
[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}]
{{- " " }}{{ .CommonLabels.alertname }}
{{- end }}

{{ define "peakend.message" -}}
{{ range .Alerts -}}
{{ .Labels.severity }} | {{ .Annotations.summary }}
{{ if .Values }}values: {{ range $k, $v := .Values }}{{ $k }}={{ $v }} {{ end }}{{ end }}
dashboard: {{ .DashboardURL }}  runbook: {{ .Annotations.runbook_url }}
{{ end -}}
{{- end }}"""


def contact_points() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "contactPoints": [
            {"orgId": 1, "name": "peakend-oncall", "receivers": [{
                "uid": "peakend-oncall-webhook", "type": "webhook", "disableResolveMessage": False,
                "settings": {"url": "${PEAKEND_ALERT_WEBHOOK_URL}", "httpMethod": "POST",
                             "title": '{{ template "peakend.title" . }}',
                             "message": '{{ template "peakend.message" . }}'}}]},
            # A webhook, not e-mail: e-mail needs an SMTP server (GF_SMTP_*) we cannot assume.
            {"orgId": 1, "name": "peakend-cx", "receivers": [{
                "uid": "peakend-cx-webhook", "type": "webhook", "disableResolveMessage": False,
                "settings": {"url": "${PEAKEND_CX_ALERT_WEBHOOK_URL}", "httpMethod": "POST",
                             "title": '{{ template "peakend.title" . }}',
                             "message": '{{ template "peakend.message" . }}'}}]},
        ],
    }


def policies() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "policies": [{
            "orgId": 1,
            "receiver": "peakend-oncall",
            "group_by": ["grafana_folder", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "peakend-oncall", "object_matchers": [["team", "=", "platform"]],
                 "group_by": ["alertname"], "repeat_interval": "1h"},
                {"receiver": "peakend-cx", "object_matchers": [["team", "=", "cx"]],
                 "group_by": ["alertname", "segment"], "repeat_interval": "12h",
                 "continue": True},
                {"receiver": "peakend-oncall", "object_matchers": [["team", "=", "cx"],
                                                                   ["severity", "=", "critical"]]},
            ],
        }],
    }


def templates() -> dict[str, Any]:
    return {"apiVersion": 1,
            "templates": [{"orgId": 1, "name": "peakend", "template": TEMPLATE}]}


HEADER = "Generated by dashboards/build.py (python -m dashboards.build); do not edit by hand."


def dump_yaml(data: dict[str, Any], header: str) -> str:
    """YAML text with `header` as comment lines; keys kept in the order they were declared."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def outputs() -> dict[Path, str]:
    files: dict[Path, str] = {
        PROVISIONING / "datasources" / "clickhouse.yml": dump_yaml(datasources(), HEADER),
        PROVISIONING / "dashboards" / "peakend.yml": dump_yaml(dashboard_provider(), HEADER),
        PROVISIONING / "alerting" / "rules.yml": dump_yaml(alert_rules(), HEADER),
        PROVISIONING / "alerting" / "contact-points.yml": dump_yaml(contact_points(), HEADER),
        PROVISIONING / "alerting" / "policies.yml": dump_yaml(policies(), HEADER),
        PROVISIONING / "alerting" / "templates.yml": dump_yaml(templates(), HEADER),
    }
    for make in DASHBOARDS:
        d = make()
        files[DASHBOARD_DIR / f"{d.uid}.json"] = json.dumps(dashboard_json(d), indent=2) + "\n"
    return files


def main() -> int:
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
