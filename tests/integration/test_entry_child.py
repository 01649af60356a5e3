"""The entry stage's child process (pipeline/stream/entry_process.py) on the real broker: its
reports give the worker the count of what it read and of its dead letters, and it is gone within
a second of a SIGKILLed worker (pipeline/child_process.py), as the sink child is
(tests/integration/test_sink_servers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stream.topics import ensure_topics
from tests.support.children import kill_both, seconds_to_outlive_a_sigkill
from tests.support.stack import ClickHouseUrls
from tests.support.stream import produce_lines, stream_setup

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# A stand-in for the worker: starts the entry child as the worker does and prints its reports.
PARENT = """
from pipeline.stream.entry_process import EntryProcess
import time
child = EntryProcess(lambda records, dead, at: print("read", records, sum(dead.values()),
                                                     flush=True),
                     lambda partition, lag: None, lambda partition, records: None)
child.start()
print("pid", child.proc.pid, flush=True)
time.sleep(600)
"""


def test_the_entry_child_reports_what_it_read_and_dies_within_1_s_of_a_sigkilled_worker(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls)
    ensure_topics(setup.settings())
    valid = [b'{"schema_version": 1, "event_id": "e%d", "occurred_at": "2026-11-22T10:00:0%dZ", '
             b'"producer": "t", "customer_id": "c%d", "type": "interaction", '
             b'"touchpoint": "web", "channel": "web", "stage": "use"}' % (i, i, i)
             for i in range(5)]
    produce_lines(kafka_bootstrap, setup.topic, [*valid, b"not json", b"{}"])
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT,
                              env={**os.environ, **setup.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        first = parent.stdout.readline().split()
        assert first[0] == "pid", first
        child_pid = int(first[1])
        read = dead = 0
        while read < 7:  # the reports, every 0.5 s, until all seven records are counted
            line = parent.stdout.readline().split()
            assert line, "the parent ended before the child reported every record"
            read += int(line[1])
            dead += int(line[2])
        assert (read, dead) == (7, 2)
        took = seconds_to_outlive_a_sigkill(parent, child_pid)
        print(f"entry child gone {took:.2f} s after the worker's SIGKILL")
        assert took < 1.0
    finally:
        kill_both(parent, child_pid)
