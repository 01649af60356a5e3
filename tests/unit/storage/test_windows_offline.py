"""windows.jsonl of `peakend replay` equals `metrics_hourly` / `metrics_daily` on chdb (the
real server: tests/integration/test_windows_offline.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.core.stats import T95_EXPANSION, T95_TABLE, Z975
from pipeline.storage import migrate
from tests.unit.storage.ch_helpers import chdb_database
from tests.unit.storage.windows_check import (
    CES_SIZES,
    assert_ces_intervals_equal_core,
    assert_windows_equal_views,
    read,
    replay_scenario,
)


def test_replay_windows_equal_the_views_on_chdb(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = replay_scenario(tmp_path, monkeypatch)
    with chdb_database(prefix="pe_windows") as dbs:
        compared = assert_windows_equal_views(out, dbs)
    windows = read(out / "windows.jsonl")
    assert compared == len(windows)
    # every metric and both windows, with intervals, and the NPS burst visible in its hour
    assert {(w["metric"], w["window"]) for w in windows} == {
        (m, win) for m in ("nps", "ces", "csat", "negative_end") for win in ("1h", "1d")}
    burst = [w for w in windows if w["metric"] == "nps" and w["window"] == "1h"
             and w["segment_value"] == "hotline"
             and w["window_start"] == "2026-11-22T14:00:00.000Z"]
    assert len(burst) == 1 and burst[0]["n"] >= 45 and burst[0]["value"] < -50
    assert burst[0]["ci_low"] <= burst[0]["value"] < burst[0]["ci_high"]


def test_ces_t_intervals_of_the_views_equal_the_core_on_chdb() -> None:
    with chdb_database(prefix="pe_ces_t") as dbs:
        assert assert_ces_intervals_equal_core(dbs) == len(CES_SIZES) + 2


def test_the_views_t_quantile_constants_are_the_cores() -> None:
    """Migration 010 writes the core's t quantiles (`stats.T95_TABLE`, the expansion's
    constants) as literals, in both views: the same rule, stated once in the core."""
    sql = (migrate.MIGRATIONS_DIR / "010_ces_t_interval.sql").read_text()
    tables_in_sql = re.findall(r"arrayElement\(\[([^\]]*)\]", sql)
    assert len(tables_in_sql) == 2
    for literal in tables_in_sql:
        assert tuple(float(x) for x in literal.split(",")) == T95_TABLE
    for constant in (Z975, *T95_EXPANSION):
        assert sql.count(repr(constant)) == 2, constant
    assert "1.96 * sqrt(ces_var" not in sql and sql.count("ces_t * sqrt(ces_var / n)") == 4
