"""The batch path and the stream path give the same results: the same generated events, once
backfilled from Parquet (`jobs.backfill.run_backfill`) into one ClickHouse database and once
produced to Kafka and processed by the real worker into another, leave equal journeys (latest
version per id) and equal metric bucket sums."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.backfill import BackfillOptions, run_backfill
from jobs.generate import GeneratorConfig, encode_event, generate_records, write_parquet
from pipeline.storage.migrate import migrate
from pipeline.stream.lag import wait_caught_up
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    journeys_in_clickhouse,
    metrics_in_clickhouse,
    produce_lines,
    stream_setup,
    wait_for_metrics,
    wait_until,
)

pytestmark = pytest.mark.integration
PARTITIONS = 4
HOUR = 3_600_000


def test_backfill_equals_stream(tmp_path: Path, kafka_bootstrap: str,
                                clickhouse_urls: ClickHouseUrls) -> None:
    config = GeneratorConfig(events=3000, seed=21, span_ms=6 * HOUR, late_fraction=0.05,
                             invalid_fraction=0.01)
    records = [r for r in generate_records(config, json_only=False) if not isinstance(r, bytes)]
    parquet = tmp_path / "events.parquet"
    write_parquet(records, parquet)

    # batch: a fresh database, the same partition count as the stream's input topic
    batch = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=PARTITIONS)
    warehouse = batch.warehouse()
    try:
        migrate(warehouse)
        result = run_backfill([str(parquet)], warehouse, batch.settings().core_config(),
                              BackfillOptions(partitions=PARTITIONS, batch_rows=1000))
    finally:
        warehouse.close()
    assert result.rows == len(records)

    # stream: the real worker on the same events, in the same order
    stream = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=PARTITIONS)
    worker = Worker(stream, tmp_path, "a")
    try:
        produce_lines(kafka_bootstrap, stream.topic, [encode_event(r) for r in records])
        try:
            wait_caught_up(stream.settings(), 180)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{worker.log_tail()}") from exc
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()

    want = journeys_in_clickhouse(batch)
    assert len(want) > 100

    def diff() -> str:
        got = journeys_in_clickhouse(stream)
        differ = [(got[k], want[k]) for k in sorted(got.keys() & want.keys()) if got[k] != want[k]]
        return (f"{len(got)} journeys from the stream, {len(want)} from the backfill; only in "
                f"the stream {sorted(got.keys() - want.keys())[:3]}; only in the backfill "
                f"{sorted(want.keys() - got.keys())[:3]}; {len(differ)} differ, e.g. "
                f"{differ[:1]}")

    wait_until(lambda: journeys_in_clickhouse(stream) == want, 30,
               "journeys of the stream to equal the backfill's", diff)
    metrics = metrics_in_clickhouse(batch)
    assert metrics
    wait_for_metrics(stream, metrics, 60)
