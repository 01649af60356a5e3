"""The HTML report's queries on the real ClickHouse 18.16, as the read-only user, give the same
report data as on chdb (tests/unit/storage/test_report_html.py renders it in Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import demo, report_html
from tests.support.stack import ClickHouseUrls
from tests.unit.storage import scenario
from tests.unit.storage.ch_helpers import chdb_database, server_database, with_database

pytestmark = pytest.mark.integration


def summary(data: report_html.ReportData) -> dict[str, object]:
    """Engine-neutral facts of the report (times aside: the engines return them differently)."""
    def bands(series: dict[str, list[report_html.Band]]) -> dict[str, list[tuple[int, float]]]:
        return {channel: [(b.n, round(b.value, 6)) for b in rows]
                for channel, rows in series.items()}
    return {
        "nps": bands(data.nps), "ces": bands(data.ces), "peak_bins": data.peak_bins,
        "end_bins": data.end_bins, "touchpoints": data.touchpoints,
        "alerts": sorted((a[0], a[1], a[2], a[4] is None) for a in data.alerts),
    }


def test_report_data_is_the_same_on_clickhouse_server_and_chdb(
        clickhouse_urls: ClickHouseUrls) -> None:
    sc = scenario.build()
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_report") as server:
        scenario.load(server.writer, sc)
        on_server = report_html.collect(server.reader)
    with chdb_database(prefix="pe_report") as embedded:
        scenario.load(embedded.writer, sc)
        on_chdb = report_html.collect(embedded.reader)
    assert on_server.nps and on_server.alerts
    assert summary(on_server) == summary(on_chdb)


def test_the_demo_writes_its_html_report_as_the_reader(
        clickhouse_urls: ClickHouseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo`'s last step (pipeline/demo.py): the page, from a peakend database on 18.16 read
    through the reader's URL, holds every chart with data (test_report_html.py draws it)."""
    monkeypatch.setattr(demo, "ROOT", tmp_path)  # out/demo-report.html under tmp_path
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_demo_report") as server:
        scenario.load(server.writer)
        demo._html_report(with_database(clickhouse_urls.reader, server.writer.database))
    page = (tmp_path / "out" / "demo-report.html").read_text(encoding="utf-8")
    for chart_id in report_html.CHART_IDS:
        assert f'id="{chart_id}"' in page, chart_id
    assert "no data" not in page
    assert "peakend demo" in page
