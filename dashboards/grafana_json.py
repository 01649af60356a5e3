"""Grafana dashboard JSON from the panel data in dashboards/build.py, made with the official
grafana-foundation-sdk builders (its release for Grafana 11.3, the version docker-compose pins).

The SDK has no ClickHouse query type (the plugin is not one of Grafana's core data sources), so
`ClickHouseQuery` is that variant: the fields the grafana-clickhouse-datasource plugin reads from a
panel target (`rawSql`, `format`, `queryType`, `editorType`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    stat,
    table,
    timeseries,
    xychart,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import xychart as xymodel

if TYPE_CHECKING:
    from dashboards.build import Dashboard, Panel

GRID_WIDTH = 24  # Grafana's dashboard grid has 24 columns
PANEL_BUILDERS: dict[str, type[cogbuilder.Builder[model.Panel]]] = {
    "timeseries": timeseries.Panel, "stat": stat.Panel, "table": table.Panel,
    "barchart": barchart.Panel, "bargauge": bargauge.Panel, "xychart": xychart.Panel,
}


class ClickHouseQuery(cogvariants.Dataquery):
    """A grafana-clickhouse-datasource panel target in SQL editor mode."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: int, query_type: str,
                 datasource: model.DataSourceRef) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt
        self.query_type = query_type
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": self.datasource, "editorType": "sql",
                "format": self.format, "queryType": self.query_type, "rawSql": self.raw_sql}


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, datasource: model.DataSourceRef) -> None:
        self._internal = ClickHouseQuery("A", raw_sql, 1, "table", datasource)

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def format(self, fmt: int, query_type: str) -> Self:
        self._internal.format = fmt
        self._internal.query_type = query_type
        return self

    def build(self) -> cogvariants.Dataquery:
        return self._internal


def _ref(datasource: dict[str, str]) -> model.DataSourceRef:
    return model.DataSourceRef(type_val=datasource["type"], uid=datasource["uid"])


def _panel(p: Panel, panel_id: int, grid: model.GridPos, clickhouse_uid: str,
           timeseries_format: int) -> cogbuilder.Builder[model.Panel]:
    builder: Any = PANEL_BUILDERS[p.kind]()
    builder.id(panel_id).title(p.title).description(p.description).grid_pos(grid)
    builder.datasource(_ref(p.datasource))
    if p.unit:
        builder.unit(p.unit)
    if p.thresholds:
        builder.thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
            [model.Threshold(value=value, color=colour) for value, colour in p.thresholds]))
    if p.xy:
        # one scatter series with named columns (manual mode): "auto" would plot every numeric
        # column of the table against the first
        x, y = p.xy
        builder.series_mapping(xymodel.SeriesMapping.MANUAL).series(
            [xychart.ScatterSeriesConfig().x(x).y(y).name(p.title)
             .show(xymodel.ScatterShow.POINTS)])
    for i, query in enumerate(p.queries):
        ref_id = chr(ord("A") + i)
        if p.datasource["uid"] == clickhouse_uid:
            query_type = "timeseries" if p.fmt == timeseries_format else "table"
            builder.with_target(ClickHouseQueryBuilder(query, _ref(p.datasource))
                                .ref_id(ref_id).format(p.fmt, query_type))
        else:
            builder.with_target(prom.Dataquery().ref_id(ref_id).datasource(_ref(p.datasource))
                                .expr(query)
                                .legend_format(p.legends[i] if i < len(p.legends) else ""))
    return builder  # type: ignore[no-any-return]


def _variable(v: dict[str, Any]) -> cogbuilder.Builder[model.VariableModel]:
    current = model.VariableOption(text=v["current"]["text"], value=v["current"]["value"])
    if v["type"] == "custom":
        values = v["query"].split(",")
        return (dash.CustomVariable(v["name"]).label(v["label"]).values(v["query"])
                .current(current).multi(v.get("multi", False))
                .include_all(v.get("includeAll", False))
                .options([model.VariableOption(text=o, value=o,
                                               selected=o == v["current"]["value"])
                          for o in values]))
    return (dash.QueryVariable(v["name"]).label(v["label"]).query(v["query"])
            .datasource(_ref(v["datasource"])).current(current)
            .refresh(model.VariableRefresh(v["refresh"])))


def layout(panels: list[Panel]) -> list[model.GridPos]:
    """Left to right, a new row when the next panel does not fit in the 24 columns."""
    out: list[model.GridPos] = []
    x = y = row_h = 0
    for p in panels:
        if x + p.w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        out.append(model.GridPos(h=p.h, w=p.w, x=x, y=y))
        x += p.w
        row_h = max(row_h, p.h)
    return out


def dashboard_json(d: Dashboard, schema_version: int, clickhouse_uid: str,
                   timeseries_format: int) -> dict[str, Any]:
    builder = (dash.Dashboard(d.title).uid(d.uid).description(d.description).tags(d.tags)
               .timezone("utc").editable().tooltip(model.DashboardCursorSync.CROSSHAIR)
               .time(d.time_from, "now").refresh("1m").version(1))
    for v in d.variables:
        builder.with_variable(_variable(v))
    for panel_id, (p, grid) in enumerate(zip(d.panels, layout(d.panels), strict=True), start=1):
        builder.with_panel(_panel(p, panel_id, grid, clickhouse_uid, timeseries_format))
    doc: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # The SDK writes its own schemaVersion (the newest it knows); the file declares the one the
    # panels were written for, so Grafana migrates them the same way on every version.
    doc["schemaVersion"] = schema_version
    # The SDK leaves out empty lists; written out, the files read the same on every version.
    doc["templating"].setdefault("list", [])
    doc["annotations"].setdefault("list", [])
    return doc


def panel_ids(d: Dashboard) -> dict[str, int]:
    """Panel title -> id, as dashboard_json numbers them (alert rules link to panels by id)."""
    return {p.title: i for i, p in enumerate(d.panels, start=1)}
