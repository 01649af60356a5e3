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
            assert (tables.to_ms(w["window_end"]) - tables.to_ms(w["window_start"])
                    == length * 1000)
        compared += len(want)
    return compared
