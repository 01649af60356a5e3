"""`peakend replay`'s windows.jsonl against the views `metrics_hourly` and `metrics_daily`, on
either engine: replay the scenario's events, load replay's own metrics.jsonl into ClickHouse
through the sink's row mapping, and compare the views row for row with windows.jsonl."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import CesWindow
from pipeline.storage import tables
from tests.unit.storage import oracle, scenario
from tests.unit.storage.ch_helpers import Databases

COLUMNS = ("n", "value", "ci_low", "ci_high", "promoters", "passives", "detractors", "total",
           "total_sq", "easy", "hard", "positives", "share_easy", "share_hard", "partials")
VIEWS = {"1h": ("metrics_hourly", "hour"), "1d": ("metrics_daily", "day")}


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def replay_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replay the storage scenario's events (3 partitions, its settings); the output dir."""
    lines = scenario._Builder(random.Random(20261122)).build()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(raw + b"\n" for _, raw in lines))
    for name, value in scenario.SETTINGS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    status = main(["replay", str(events), "--output", str(out), "--partitions",
                   str(scenario.PARTITIONS), "--now", "2030-01-01T00:00:00Z"])
    assert status == 0
    return out


def assert_windows_equal_views(out: Path, dbs: Databases) -> int:
    """Load out/metrics.jsonl (every partial twice, as a redelivering sink would) and compare;
    returns the number of rows compared."""
    metrics = read(out / "metrics.jsonl")
    columns, data = tables.rows("metric_buckets", metrics + metrics[: len(metrics) // 3])
    dbs.writer.insert("metric_buckets", columns, data)
    windows = read(out / "windows.jsonl")
    compared = 0
    for window, (view, time_column) in VIEWS.items():
        want = [(w["metric"], w["segment_dim"], w["segment_value"],
                 tables.to_datetime(w["window_start"]), *(w[c] for c in COLUMNS))
                for w in windows if w["window"] == window]
        got = dbs.reader.query(
            f"SELECT metric, segment_dim, segment_value, {time_column}, {', '.join(COLUMNS)} "
            f"FROM {view} ORDER BY metric, segment_dim, segment_value, {time_column}")
        assert len(want) > 100, f"the scenario must give {view} rows to compare"
        oracle.assert_rows(got, want, f"{view} on {dbs.engine}")
        for w in windows:
            length = 3600 if w["window"] == "1h" else 86400
            end, start = tables.to_ms(w["window_end"]), tables.to_ms(w["window_start"])
            assert end is not None and start is not None and end - start == length * 1000
        compared += len(want)
    return compared


CES_SIZES = (*range(1, 41), 45, 60, 100, 250, 1000, 5000)
CES_HOUR_MS = 3_600_000
CES_START_MS = 1_795_305_600_000  # 2026-11-22T00:00:00Z


def ces_buckets() -> list[CesWindow]:
    """One hour of CES answers per size in CES_SIZES (the t quantile's table and its
    expansion), drawn narrow (3-5.5 on 1-7) so that small-n intervals are mostly not clamped."""
    rng = random.Random(16)
    out = []
    for size in CES_SIZES:
        window = CesWindow()
        for _ in range(size):
            window.update(rng.choice((3.0, 3.5, 4.0, 4.5, 5.0, 5.5)))
        out.append(window)
    return out


def estimate_fields(window: CesWindow) -> tuple[float | None, float | None, float | None]:
    """A metric record's value, ci_low and ci_high: the window's estimate."""
    estimate = window.result()
    return estimate.value, estimate.ci_low, estimate.ci_high


def assert_ces_intervals_equal_core(dbs: Databases) -> int:
    """The CES mean interval of `metrics_hourly` and `metrics_daily` equals the core's
    (`CesWindow.result`, Student t) at every size of CES_SIZES; returns the rows compared."""
    windows = ces_buckets()
    records = [MetricRecord("ces", "all", "all", CES_START_MS + i * CES_HOUR_MS,
                            CES_START_MS + i * CES_HOUR_MS + 60_000, 0, w.n,
                            *estimate_fields(w), 0, 0, 0, w.total, w.total_sq, w.easy,
                            w.hard, 0, 1).to_dict() for i, w in enumerate(windows)]
    columns, data = tables.rows("metric_buckets", records)
    dbs.writer.insert("metric_buckets", columns, data)
    got = dbs.reader.query("SELECT n, ci_low, ci_high FROM metrics_hourly "
                           "WHERE metric = 'ces' ORDER BY hour")
    want = [(w.n, w.result().ci_low, w.result().ci_high) for w in windows]
    oracle.assert_rows(got, want, f"metrics_hourly CES intervals on {dbs.engine}")
    inside = [lo for (n, lo, hi) in want if 2 <= n <= 40 and lo is not None and lo > 1.0]
    assert len(inside) >= 30, "the small-n intervals must not all be clamped to the scale"
    days: dict[int, CesWindow] = {}
    for i, w in enumerate(windows):
        day = i * CES_HOUR_MS // 86_400_000
        days[day] = days[day].merge(w) if day in days else w
    got = dbs.reader.query("SELECT n, ci_low, ci_high FROM metrics_daily "
                           "WHERE metric = 'ces' ORDER BY day")
    want_days = [(w.n, w.result().ci_low, w.result().ci_high)
                 for _, w in sorted(days.items())]
    oracle.assert_rows(got, want_days, f"metrics_daily CES intervals on {dbs.engine}")
    return len(want) + len(want_days)
