"""The `DateTime` values the sink and the backfill hand clickhouse-driver mean the same instant
whatever the client's and the server's time zones.

They are epoch seconds (`tables.to_seconds`). Until 2026-12-03 they were naive UTC `datetime`s,
which the driver reads in the server's zone when it differs from the client's, and in the
client's local zone when both are the same: a server in America/New_York stored every time five
hours off, a sink and a server both in Europe/Berlin one hour off; only a UTC server was right.
Each case runs in a child process, as the driver reads the client's zone from the environment.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.storage import tables

TIMES = ["2026-11-22T17:10:09.123Z", "2026-03-29T02:30:00.5+02:00", "1970-01-01T00:00:00Z",
         "2105-12-31T23:59:59.999-01:00"]

# The driver's own column for a `DateTime` column of a server in `server` (its time zone as
# the server reports it in the handshake), fed the values our tables build.
_CHILD = """
import json, sys
from types import SimpleNamespace
from clickhouse_driver.columns.datetimecolumn import create_datetime_column
from pipeline.storage import tables
server, texts = sys.argv[1], json.loads(sys.argv[2])
context = SimpleNamespace(settings={}, client_settings={},
                          server_info=SimpleNamespace(get_timezone=lambda: server))
column = create_datetime_column("DateTime", {"context": context})
seconds, _ = tables.time_columns(texts, memo=False)
column.before_write_items(seconds)
print(json.dumps(seconds))
"""


@pytest.mark.parametrize(("client", "server"), [
    ("UTC", "UTC"), ("Europe/Berlin", "Europe/Berlin"), ("Europe/Berlin", "UTC"),
    ("UTC", "America/New_York"), ("Asia/Kolkata", "Pacific/Chatham"),
])
def test_datetime_values_are_the_instant_in_any_zones(client: str, server: str) -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, server, json.dumps(TIMES)],
                          env={"TZ": client, "PATH": ""}, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent == [tables.to_ms(t) // 1000 for t in TIMES]  # type: ignore[operator]
    assert sent == [tables.to_seconds(t) for t in TIMES]
