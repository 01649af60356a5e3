"""windows.jsonl of `peakend replay` equals `metrics_hourly` / `metrics_daily` on the real
ClickHouse server (18.16 here), read as the read-only user."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import ClickHouseUrls
from tests.unit.storage.ch_helpers import server_database
from tests.unit.storage.windows_check import (
    CES_SIZES,
    assert_ces_intervals_equal_core,
    assert_windows_equal_views,
    read,
    replay_scenario,
)

pytestmark = pytest.mark.integration


def test_replay_windows_equal_the_views_on_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clickhouse_urls: ClickHouseUrls) -> None:
    out = replay_scenario(tmp_path, monkeypatch)
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_windows") as dbs:
        assert assert_windows_equal_views(out, dbs) == len(read(out / "windows.jsonl"))


def test_ces_t_intervals_of_the_views_equal_the_core_on_the_server(
        clickhouse_urls: ClickHouseUrls) -> None:
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_ces_t") as dbs:
        assert assert_ces_intervals_equal_core(dbs) == len(CES_SIZES) + 2
