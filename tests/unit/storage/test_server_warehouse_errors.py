"""A ClickHouse server that cannot be reached is one error, not a logged traceback: the driver
logs each failed connection with `exc_info`, which reached users of `peakend export` and the
other commands on stderr (issue 21, a certificate not trusted)."""

from __future__ import annotations

import logging
import socket

import pytest
from clickhouse_driver.errors import NetworkError

from pipeline.storage.warehouse import ServerWarehouse, Timeouts


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


def test_a_failed_connection_is_raised_not_logged_with_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warehouse = ServerWarehouse(f"clickhouse://w:p@127.0.0.1:{closed_port()}/peakend",
                                timeouts=Timeouts(connect=2, send_receive=2, sync_request=2))
    with caplog.at_level(logging.DEBUG), pytest.raises(NetworkError):
        warehouse.query("SELECT 1")
    warehouse.close()
    logged = [r for r in caplog.records
              if r.name.startswith("clickhouse_driver") and r.levelno >= logging.WARNING]
    assert not logged, [(r.getMessage(), r.exc_info is not None) for r in logged]
