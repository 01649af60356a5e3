"""windows.jsonl of `peakend replay` equals `metrics_hourly` / `metrics_daily` on chdb (the
real server: tests/integration/test_windows_offline.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.storage.ch_helpers import chdb_database
from tests.unit.storage.windows_check import assert_windows_equal_views, read, replay_scenario


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
