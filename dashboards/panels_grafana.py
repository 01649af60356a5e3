"""The follow-up (issue 17) and key-drivers (issue 18) panel data, as the builder's `Panel`,
`AlertQuery` and variable lists: dashboards/build.py adds each list by one line in
`EXTRA_PANELS`, `EXTRA_VARIABLES` or `EXTRA_EXPERIENCE_RULES`. Titles, SQL and columns stay
declared once in panels_followups.py and panels_drivers.py (their integration tests run them
with data); only the layout and the Grafana wiring are added here.
"""

from __future__ import annotations

from typing import Any

from dashboards import panels_drivers, panels_followups
from dashboards.build import FORMAT_TABLE, FORMAT_TIMESERIES, AlertQuery, Panel

# (width, height) on Grafana's 24-column grid, by panel kind
_SIZE: dict[str, tuple[int, int]] = {
    "stat": (6, 5), "table": (12, 9), "timeseries": (12, 8), "barchart": (12, 8),
}
# the wide ones: a summary beside the stat, the case list across the screen
_WIDTH: dict[str, int] = {
    "Open cases by priority and age": 18,
    "Top open cases (call these first)": 24,
}


def _followup_panel(p: panels_followups.Panel) -> Panel:
    w, h = _SIZE[p.kind]
    return Panel(p.title, p.kind, [p.sql], [list(p.columns)],
                 w=_WIDTH.get(p.title, w), h=h, description=p.description,
                 fmt=FORMAT_TIMESERIES if p.kind == "timeseries" else FORMAT_TABLE)


FOLLOWUP_PANELS: list[Panel] = [_followup_panel(p) for p in panels_followups.PANELS]

_SLA = panels_followups.SLA_BREACH_ALERT
# The rule links to the breaches table: it lists the late cases with their priority.
FOLLOWUP_RULES: list[AlertQuery] = [AlertQuery(
    _SLA.uid, _SLA.title, _SLA.sql, list(_SLA.columns), _SLA.columns[0], "gt", _SLA.threshold,
    _SLA.summary, _SLA.severity, for_=_SLA.for_,
    dashboard=panels_followups.DASHBOARD_UID, panel="SLA breaches")]

_DRIVER_COLUMNS = ["driver", "importance_share", "performance", "expectation", "gap", "priority",
                   "quadrant", "significant", "visits", "journeys", "average_share"]
DRIVER_PANELS: list[Panel] = [Panel(
    panels_drivers.TITLE, "xychart", [panels_drivers.SQL], [_DRIVER_COLUMNS], w=24, h=12,
    description=panels_drivers.DESCRIPTION, xy=("importance_share", "performance"))]

_LABELS = {"driver_dim": "Driver dimension", "driver_outcome": "Outcome"}
DRIVER_VARIABLES: list[dict[str, Any]] = [
    {"name": name, "label": _LABELS[name], "type": "custom", "query": ",".join(values),
     "current": {"text": values[0], "value": values[0]}}
    for name, values in panels_drivers.VARIABLES.items()]
