"""`PEAKEND_PARTITIONS` changed under existing internal topics (docs/streaming.md, "Partition
count"): the worker refuses to start with one line naming the topic, where it used to stall
(more partitions set than the topics have: every send failed with "Unrecognized partition")
or to split journeys without a word (fewer: events placed away from their state). And a worker
whose metrics port is taken refuses in one line naming PEAKEND_METRICS_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stream.topics import ensure_topics, internal_topics
from tests.support.stack import ClickHouseUrls
from tests.support.stream import stream_setup

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("later", [8, 2])
def test_a_worker_refuses_another_partition_count(tmp_path: Path, kafka_bootstrap: str,
                                                  clickhouse_urls: ClickHouseUrls,
                                                  later: int) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    ensure_topics(setup.settings())
    env = {**os.environ, **setup.env, "PEAKEND_PARTITIONS": str(later)}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("peakend worker: topic "), lines
    named = lines[0].removeprefix("peakend worker: topic ").split()[0]
    assert named in internal_topics(setup.settings())
    assert f"has 4 partitions where PEAKEND_PARTITIONS={later} wants {later}" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_worker_whose_metrics_port_is_taken_says_so_in_one_line(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    """It crashed inside Faust with a traceback (2026-12-07); now the port is bound before
    Faust starts."""
    import socket

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, **setup.env, "PEAKEND_METRICS_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"peakend: PEAKEND_METRICS_PORT={port}: cannot serve /metrics on 127.0.0.1:{port}: "
        "Address already in use"], done.stderr[-3000:]
