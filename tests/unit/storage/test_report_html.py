"""The static HTML report: built from data loaded into chdb, opened in headless Chromium.

The storage scenario (tests/unit/storage/scenario.py: journeys over several channels and a burst
of hotline failures that fires and resolves an NPS alert) goes into a fresh chdb database through
the real record -> row path; the report is built from the views, then Debian's `chromium` runs
its JavaScript offline (`--dump-dom`, no network) and the test finds every chart drawn, with
traces, in the resulting DOM. scripts/setup-tools.sh installs chromium.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import report_html
from pipeline.storage.warehouse import Warehouse
from tests.unit.storage import scenario
from tests.unit.storage.ch_helpers import chdb_database


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Warehouse, scenario.Scenario]]:
    with chdb_database(prefix="pe_report") as dbs:
        yield dbs.reader, scenario.load(dbs.writer)


def test_report_data_comes_from_the_views(
        loaded: tuple[Warehouse, scenario.Scenario]) -> None:
    wh, sc = loaded
    data = report_html.collect(wh)
    assert data.nps and data.ces, "NPS and CES per channel"
    # The view's intervals (adjusted Wald for NPS) need not contain the raw estimate at small n.
    assert all(-100 <= b.ci_low <= b.ci_high <= 100 for bands in data.nps.values() for b in bands)
    assert all(1 <= b.ci_low <= b.ci_high <= 7 for bands in data.ces.values() for b in bands)
    assert sum(b.n for bands in data.nps.values() for b in bands) > 0
    closed_with_peak = sum(1 for j in sc.latest_journeys().values()
                           if j.peak_valence is not None)
    assert sum(c for _, c in data.peak_bins) == closed_with_peak
    assert data.touchpoints and data.touchpoints[0][1] + data.touchpoints[0][2] > 0
    assert {a[1].split()[0] for a in data.alerts} >= {"nps"}
    assert len(data.alerts) == len(sc.latest_alerts())


def test_report_renders_every_chart_in_headless_chromium(
        loaded: tuple[Warehouse, scenario.Scenario], tmp_path: Path) -> None:
    wh, _ = loaded
    page = report_html.write(wh, tmp_path / "report.html")
    text = page.read_text()
    assert "<script src=" not in text, "plotly must be inlined (offline)"
    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: run bash scripts/setup-tools.sh"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for chart_id in report_html.CHART_IDS:
        match = re.search(rf'<div id="{chart_id}"[^>]*class="[^"]*js-plotly-plot', dom)
        assert match, f"{chart_id} was not drawn"
    drawn = dom.split('id="chart-nps"', 1)[1]
    assert drawn.count('class="main-svg"') >= len(report_html.CHART_IDS)
    assert "no data" not in dom
    assert len(re.findall(r'class="(?:scatter|bars|trace [a-z]+)', dom)) >= 10
