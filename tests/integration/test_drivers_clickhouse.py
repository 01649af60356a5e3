"""`peakend drivers` over the real ClickHouse server (18.16 here) equals the offline run on the
same events; the job writes key_drivers as the writer, the view key_drivers_latest and the
quadrant panel's query (dashboards/panels_drivers.py) run as the read-only user."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import ClickHouseUrls
from tests.unit.storage.ch_helpers import server_database
from tests.unit.storage.drivers_check import (
    check_answers_after_the_journey,
    check_clickhouse_equals_offline,
    offline,
)

pytestmark = pytest.mark.integration


def test_drivers_on_the_server_equal_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             clickhouse_urls: ClickHouseUrls) -> None:
    want = offline(tmp_path, monkeypatch)
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_drivers") as dbs:
        check_clickhouse_equals_offline(dbs, want)


def test_answers_after_the_journey_on_the_server_equal_offline(
        tmp_path: Path, clickhouse_urls: ClickHouseUrls) -> None:
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_drivers_after") as dbs:
        check_answers_after_the_journey(dbs, tmp_path)
