"""Follow-up cases dashboard and SLA-breach alert, as data (titles + SQL) for the dashboard
builder (docs/followups.md); dashboards/panels_grafana.py wires them into the dashboard
`peakend-followups` and its alert rule. Every query reads the views of migration
005_followups.sql as Grafana's read-only user; `tests/integration/test_followups_panels.py`
runs each one on the real ClickHouse server (18.16) with case data and checks its columns and
its numbers.

Grafana macros used: `$__timeFilter(column)` (the dashboard's time range) only where a panel is
a time series of case openings; tables of open cases and breaches show the current state.
"""

from __future__ import annotations

from dataclasses import dataclass

# declared beside the demo that prints it too (dashboards/ is not an installed package)
from pipeline.followups_cli import TOP_OPEN_CASES_SQL

DASHBOARD_UID = "peakend-followups"
DASHBOARD_TITLE = "peakend / Follow-up cases (closed loop)"


@dataclass(frozen=True)
class Panel:
    """One panel: Grafana panel type, title, SQL, and the columns the SQL returns."""

    kind: str  # table, timeseries, stat, barchart
    title: str
    sql: str
    columns: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class AlertQuery:
    """A Grafana alert rule's query: fires when `value` is above `threshold` for `for_`."""

    uid: str
    title: str
    sql: str
    columns: tuple[str, ...]
    threshold: float
    for_: str
    severity: str
    summary: str


PANELS: tuple[Panel, ...] = (
    Panel(
        "stat", "Open cases past due (SLA breached)",
        "SELECT count() AS breached FROM followups_sla_breaches WHERE status = 'open'",
        ("breached",),
        "Open cases whose due time (opened + the trigger's SLA) has passed.",
    ),
    Panel(
        "table", "Open cases by priority and age",
        "SELECT priority, count() AS cases, countIf(overdue) AS overdue, "
        "round(max(age_hours), 1) AS oldest_hours, round(avg(age_hours), 1) AS mean_age_hours "
        "FROM followups_open GROUP BY priority, priority_rank ORDER BY priority_rank",
        ("priority", "cases", "overdue", "oldest_hours", "mean_age_hours"),
        "How many cases wait, how old the oldest is, per priority (high first).",
    ),
    Panel(
        "table", "Top open cases (call these first)",
        TOP_OPEN_CASES_SQL,
        ("case_id", "customer_id", "trigger", "priority", "opened_at", "due_at", "silent",
         "peak_touchpoint", "peak", "end_valence"),
        "Highest priority, then the earliest due; silent = no survey answer in the journey.",
    ),
    Panel(
        "timeseries", "Cases opened per hour, by trigger",
        "SELECT toStartOfHour(opened_at) AS time, trigger, count() AS cases "
        "FROM followups_latest WHERE $__timeFilter(opened_at) "
        "GROUP BY time, trigger ORDER BY time, trigger",
        ("time", "trigger", "cases"),
    ),
    Panel(
        "table", "SLA breaches",
        "SELECT case_id, trigger, priority, status, due_at, round(breach_hours, 1) AS hours_late "
        "FROM followups_sla_breaches ORDER BY breach_hours DESC, case_id LIMIT 100",
        ("case_id", "trigger", "priority", "status", "due_at", "hours_late"),
        "Open past due, or closed after due, latest first by lateness.",
    ),
    Panel(
        "table", "Recovery: next journey after contact vs not contacted",
        "SELECT trigger, contacted, cases, with_next_journey, "
        "round(next_peak_end_score, 3) AS next_peak_end, round(recovery_rate, 3) AS recovery_rate, "
        "with_next_nps, round(next_nps, 1) AS next_nps, round(next_nps_ci_low, 1) AS nps_low, "
        "round(next_nps_ci_high, 1) AS nps_high "
        "FROM followups_recovery ORDER BY trigger, contacted",
        ("trigger", "contacted", "cases", "with_next_journey", "next_peak_end",
         "recovery_rate", "with_next_nps", "next_nps", "nps_low", "nps_high"),
        "recovery_rate: share of next journeys whose peak-end score is not negative. next_nps: "
        "NPS of the customers' next answers (nps_low-nps_high: its 95% interval).",
    ),
    Panel(
        "barchart", "Silent cases (no survey answer) by trigger",
        "SELECT trigger, countIf(silent = 1) AS silent_cases, countIf(silent = 0) AS answered "
        "FROM followups_latest GROUP BY trigger ORDER BY trigger",
        ("trigger", "silent_cases", "answered"),
        "Most unhappy customers never say so: cases found without any survey answer.",
    ),
)

# Pages when a high-priority case has been past due for a while (the CX team is not keeping up).
SLA_BREACH_ALERT = AlertQuery(
    uid="peakend-followup-sla-breach",
    title="Follow-up cases past due (high priority)",
    sql="SELECT count() AS value FROM followups_sla_breaches "
        "WHERE status = 'open' AND priority = 'high'",
    columns=("value",),
    threshold=0.0,
    for_="15m",
    severity="warning",
    summary="{{ $values.B }} high-priority follow-up cases are past their response-time target",
)
