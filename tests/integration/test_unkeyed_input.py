"""Events placed by journey whatever their Kafka key (issue 15): a file sent with Kafka's own
console producer, unkeyed (the default of most clients) or all under one wrong key, gives the
journeys, metrics and dead letters that `peakend replay --partitions N` computes, exactly like
the producer library's keyed input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.storage.tables import rows
from tests.integration.test_stream_end_to_end import assert_same_as_replay
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    count,
    dead_letter_counts,
    journeys_in_clickhouse,
    journeys_of_replay,
    metrics_of_replay,
    read_lines,
    replay_records,
    stream_setup,
    wait_for_metrics,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def as_seen(journeys: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    """What analysts see of the journeys: those not superseded, every column but the version.
    Events of one journey sent unkeyed sit on several partitions and can reach stage one in
    another order than the file's (seconds apart); the core gives the same journeys in any
    order, but a customer session whose first event came second was briefly known by another
    id (a `superseded` row) and its version counts on above that."""
    columns, _ = rows("journeys", [])
    status, version = columns.index("status"), columns.index("version")
    return {k: tuple(v for i, v in enumerate(row) if i != version)
            for k, row in journeys.items() if row[status] != "superseded"}


def console_produce(bootstrap: str, topic: str, lines: list[bytes], key: str | None,
                    codec: str | None = None) -> None:
    """`kafka-console-producer` (org.apache.kafka.tools.ConsoleProducer from the stack's Kafka
    jars), one record per line; with `key`, every record carries that key; with `codec`, its
    record batches are compressed with it (gzip, snappy, lz4, zstd)."""
    libs = Path(os.environ.get("PEAKEND_STACK_DIR", ROOT / ".stack")) / "kafka" / "libs"
    command = ["java", "-cp", f"{libs}/*", "org.apache.kafka.tools.ConsoleProducer",
               "--bootstrap-server", bootstrap, "--topic", topic]
    if codec is not None:
        command += ["--compression-codec", codec]
    data = b"\n".join(lines) + b"\n"
    if key is not None:
        command += ["--property", "parse.key=true", "--property", "key.separator=\t"]
        data = b"\n".join(key.encode() + b"\t" + line for line in lines) + b"\n"
    done = subprocess.run(command, input=data, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


@pytest.mark.parametrize("key", [None, "the-same-wrong-key"], ids=["unkeyed", "one_wrong_key"])
def test_console_producer_input_equals_replay(tmp_path: Path, kafka_bootstrap: str,
                                              clickhouse_urls: ClickHouseUrls,
                                              key: str | None) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    # No deliberately late lines: unkeyed records of one journey sit on several partitions,
    # and how the entry stage interleaves them decides which of two events far apart in time
    # comes first, so a verdict at the lateness boundary depends on the placement.
    out = tmp_path / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--events", "3000", "--seed", "14",
         "--span", "6h", "--late-fraction", "0", "--invalid-fraction", "0.03",
         "--output", str(out), "--quiet"],
        cwd=ROOT, check=True,
    )
    lines = read_lines(out)
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        from pipeline.stream.topics import ensure_topics

        ensure_topics(setup.settings())
        console_produce(kafka_bootstrap, setup.topic, lines, key)
        replay = replay_records(lines, setup.partitions, setup.settings())
        valid = len(lines) - len(replay.dead_letters)
        wait_until(lambda: count(setup, "SELECT count() FROM touchpoint_events FINAL") == valid,
                   240, f"{valid} events in ClickHouse", worker.log_tail)
        want = as_seen(journeys_of_replay(replay))
        wait_until(lambda: as_seen(journeys_in_clickhouse(setup)) == want, 90,
                   "journeys in ClickHouse to equal replay", worker.log_tail)
        if key is not None:  # one partition in file order: row for row, versions included
            assert_same_as_replay(setup, lines)
        else:
            wait_for_metrics(setup, metrics_of_replay(replay), 120)
            reasons: dict[str, int] = {}
            for letter in replay.dead_letters:
                reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
            assert dead_letter_counts(setup) == reasons
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
