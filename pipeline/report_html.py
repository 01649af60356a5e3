"""A static HTML report from the ClickHouse views, for pictures without Grafana.

`make demo` writes one (`out/demo-report.html`); `peakend report --output FILE` writes one from
any peakend database (the reader URL, else PEAKEND_CLICKHOUSE_URL, else the embedded chdb). Five
charts, each from the view an analyst or a Grafana panel reads, drawn with plotly (offline: its
JavaScript is inlined, so the file opens anywhere without a network):

- NPS and CES per channel by hour, with the 95% interval of each hour as a band
  (`metrics_hourly`, the intervals the view computes);
- the peak-end distribution: how the peaks and the ends of journeys felt (`journeys_latest`);
- the worst touchpoints by the negative peaks and ends they caused (`touchpoint_ranking`);
- the alerts on a timeline, from firing to resolution, by segment and severity (`alerts_latest`).
"""

from __future__ import annotations

import argparse
import html
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import plotly.graph_objects as go

from pipeline.storage.warehouse import Warehouse

# Chart ids in the page: the test in headless Chromium looks for these.
CHART_IDS = ("chart-nps", "chart-ces", "chart-peak-end", "chart-touchpoints", "chart-alerts")
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f")
_SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e"}


class Band(NamedTuple):
    hour: datetime
    n: int
    value: float
    ci_low: float
    ci_high: float


class ReportData(NamedTuple):
    nps: dict[str, list[Band]]
    ces: dict[str, list[Band]]
    peak_bins: list[tuple[float, int]]  # (lower edge of a 0.1-wide valence bin, journeys)
    end_bins: list[tuple[float, int]]
    touchpoints: list[tuple[str, int, int]]  # (touchpoint, negative peaks, negative ends)
    alerts: list[tuple[str, str, str, datetime, datetime | None, float, float]]
    # (segment, metric and rule, severity, fired at, resolved at, value, baseline)


def _bands(wh: Warehouse, metric: str) -> dict[str, list[Band]]:
    rows = wh.query(
        "SELECT segment_value, hour, n, value, ci_low, ci_high FROM metrics_hourly "
        "WHERE metric = %(metric)s AND segment_dim = 'channel' AND n > 0 "
        "ORDER BY segment_value, hour",
        {"metric": metric},
    )
    out: dict[str, list[Band]] = defaultdict(list)
    for channel, hour, n, value, low, high in rows:
        out[str(channel)].append(Band(hour, int(n), float(value), float(low), float(high)))
    return dict(out)


def _valence_bins(wh: Warehouse, column: str) -> list[tuple[float, int]]:
    # `column` is one of two constants below, never user input; values are binned in SQL so the
    # report reads one row per bin whatever the number of journeys.
    rows = wh.query(
        f"SELECT least(floor({column} * 10), 9) AS bin, count() FROM journeys_latest "
        f"WHERE {column} IS NOT NULL GROUP BY bin ORDER BY bin"
    )
    return [(float(b) / 10, int(c)) for b, c in rows]


def collect(wh: Warehouse, touchpoints: int = 10, alerts: int = 50) -> ReportData:
    """Everything the report shows, read through `wh` (the read-only user is enough)."""
    ranking = wh.query(
        "SELECT touchpoint, negative_peaks, negative_ends FROM touchpoint_ranking "
        "LIMIT %(limit)s", {"limit": touchpoints})
    alert_rows = wh.query(
        "SELECT concat(segment_dim, '=', segment_value), concat(metric, ' ', rule), severity, "
        "fired_at, resolved_at, value, baseline FROM alerts_latest "
        "ORDER BY fired_at LIMIT %(limit)s", {"limit": alerts})
    return ReportData(
        nps=_bands(wh, "nps"),
        ces=_bands(wh, "ces"),
        peak_bins=_valence_bins(wh, "peak_valence"),
        end_bins=_valence_bins(wh, "end_valence"),
        touchpoints=[(str(t), int(p), int(e)) for t, p, e in ranking],
        alerts=[(str(s), str(m), str(sev), fired, resolved or None, float(v), float(b))
                for s, m, sev, fired, resolved, v, b in alert_rows],
    )


def _band_figure(series: dict[str, list[Band]], title: str, unit: str) -> go.Figure:
    figure = go.Figure()
    for i, (channel, bands) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        hours = [b.hour for b in bands]
        figure.add_trace(go.Scatter(
            x=[*hours, *reversed(hours)],
            y=[*(b.ci_high for b in bands), *(b.ci_low for b in reversed(bands))],
            fill="toself", fillcolor=color, opacity=0.18, line={"width": 0},
            hoverinfo="skip", showlegend=False, legendgroup=channel))
        figure.add_trace(go.Scatter(
            x=hours, y=[b.value for b in bands], mode="lines", name=channel,
            line={"color": color}, legendgroup=channel,
            customdata=[[b.n, b.ci_low, b.ci_high] for b in bands],
            hovertemplate=(f"{channel} %{{x}}<br>{unit} %{{y:.1f}} "
                           "[%{customdata[1]:.1f}, %{customdata[2]:.1f}], n=%{customdata[0]}"
                           "<extra></extra>")))
    figure.update_layout(title=title, xaxis_title="hour (UTC)", yaxis_title=unit)
    return figure


def _peak_end_figure(data: ReportData) -> go.Figure:
    figure = go.Figure()
    for name, bins in (("peak (most intense moment)", data.peak_bins),
                       ("end (last moment)", data.end_bins)):
        figure.add_trace(go.Bar(x=[edge + 0.05 for edge, _ in bins], y=[c for _, c in bins],
                                name=name))
    figure.update_layout(title="Peak-end distribution: valence of journeys' peaks and ends",
                         barmode="group", xaxis_title="valence (-1 worst, +1 best)",
                         yaxis_title="journeys", xaxis={"range": [-1.05, 1.05]})
    return figure


def _touchpoint_figure(data: ReportData) -> go.Figure:
    names = [t for t, _, _ in reversed(data.touchpoints)]
    figure = go.Figure([
        go.Bar(y=names, x=[p for _, p, _ in reversed(data.touchpoints)], orientation="h",
               name="negative peaks"),
        go.Bar(y=names, x=[e for _, _, e in reversed(data.touchpoints)], orientation="h",
               name="negative ends"),
    ])
    figure.update_layout(title="Worst touchpoints: negative peaks and ends they caused",
                         barmode="stack", xaxis_title="journeys")
    return figure


def _alert_figure(data: ReportData, until: datetime | None) -> go.Figure:
    figure = go.Figure()
    for severity in sorted({a[2] for a in data.alerts}):
        xs: list[datetime | None] = []
        ys: list[str | None] = []
        texts: list[str | None] = []
        for segment, metric, sev, fired, resolved, value, baseline in data.alerts:
            if sev != severity:
                continue
            label = f"{segment} ({metric})"
            end = resolved or until or fired
            note = (f"{label}: {value:.1f} vs {baseline:.1f}, fired {fired:%Y-%m-%d %H:%M}, "
                    + (f"resolved {resolved:%H:%M}" if resolved else "open"))
            xs += [fired, end, None]
            ys += [label, label, None]
            texts += [note, note, None]
        figure.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=severity, text=texts, hoverinfo="text",
            line={"width": 8, "color": _SEVERITY_COLORS.get(severity, "#7f7f7f")}))
    figure.update_layout(title="Alerts: from firing to resolution (open ones to the last hour)",
                         xaxis_title="time (UTC)")
    return figure


def _last_hour(data: ReportData) -> datetime | None:
    hours = [b.hour for series in (data.nps, data.ces) for bands in series.values()
             for b in bands]
    return max(hours) if hours else None


def render(data: ReportData, title: str = "peakend report") -> str:
    """One self-contained HTML page (plotly's JavaScript inlined once)."""
    figures: Sequence[tuple[str, go.Figure, bool]] = (
        (CHART_IDS[0], _band_figure(data.nps, "NPS by channel and hour, 95% interval band",
                                    "NPS"), bool(data.nps)),
        (CHART_IDS[1], _band_figure(data.ces, "CES by channel and hour (1-7, higher = easier), "
                                              "95% interval band", "CES"), bool(data.ces)),
        (CHART_IDS[2], _peak_end_figure(data), bool(data.peak_bins or data.end_bins)),
        (CHART_IDS[3], _touchpoint_figure(data), bool(data.touchpoints)),
        (CHART_IDS[4], _alert_figure(data, _last_hour(data)), bool(data.alerts)),
    )
    parts = []
    for index, (div_id, figure, has_data) in enumerate(figures):
        figure.update_layout(template="plotly_white", height=420,
                             margin={"l": 60, "r": 20, "t": 60, "b": 50})
        if not has_data:
            figure.add_annotation(text="no data", showarrow=False, font={"size": 20},
                                  xref="paper", yref="paper", x=0.5, y=0.5)
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0,
                                    div_id=div_id, config={"displaylogo": False}))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em;max-width:1200px}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write(wh: Warehouse, path: Path, title: str = "peakend report") -> Path:
    """Collect, render and write the report; the parent directory is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(collect(wh), title), encoding="utf-8")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="out/report.html",
                        help="the HTML file to write (default out/report.html)")
    parser.add_argument("--url", help="clickhouse://user:password@host:port/db (default "
                                      "PEAKEND_CLICKHOUSE_READER_URL, else PEAKEND_CLICKHOUSE_URL; "
                                      "both empty: the embedded chdb at PEAKEND_CHDB_PATH)")
    parser.add_argument("--title", default="peakend report", help="the page's heading")


def run(args: argparse.Namespace) -> int:
    """`peakend report`: read the views (the read-only user is enough), write the page."""
    from pipeline.settings import Settings
    from pipeline.storage.warehouse import connect

    settings = Settings.from_env()
    url = args.url or settings.clickhouse_reader_url or settings.clickhouse_url
    wh = connect(url, chdb_path=settings.chdb_path, database=settings.clickhouse_database,
                 ca_file=settings.clickhouse_ssl_cafile)
    try:
        print(write(wh, Path(args.output), args.title))
    finally:
        wh.close()
    return 0


if __name__ == "__main__":
    from pipeline.cli import main

    raise SystemExit(main(["report", *sys.argv[1:]]))
