"""Raw limits of the clients on this machine, no peakend code in the timed loops:

- kafka-python produce rate, acks=all, batching like `pipeline.producer.TouchpointProducer`
  (linger 20 ms, 256 KiB batches, its default compression), keyed by journey like the library;
- aiokafka consume rate of the same records (a fresh consumer group, from the beginning);
- clickhouse-driver insert rate of one columnar batch into a table created by the real
  migrations (the `journeys` table), rows built from real journey records.

    .venv/bin/python -m bench.bench_raw [--events N]

Events are realistic schema-v1 JSON from `jobs.generate` (~300-350 bytes each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jobs.generate import GeneratorConfig, encode_event, generate_events
from pipeline.contract import parse_event
from pipeline.producer import default_compression
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()


@dataclass
class Rate:
    what: str
    count: int
    seconds: float
    nbytes: int = 0

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def line(self) -> str:
        extra = f", {self.mb_per_s:.1f} MB/s" if self.nbytes else ""
        return (f"{self.what}: {self.per_s:,.0f}/s{extra} "
                f"({self.count:,} in {self.seconds:.2f} s)")


def event_lines(n: int, seed: int = 7, prefix: str = "") -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: n realistic events keyed like the producer library (journey key)."""
    config = GeneratorConfig(events=n, seed=seed, span_ms=max(3_600_000, n * 20),
                             late_fraction=0.0, id_prefix=prefix or f"raw{uuid.uuid4().hex[:6]}")
    out = []
    for event in generate_events(config):
        value = encode_event(event)
        out.append((parse_event(value).journey_key.encode(), value))
    return out


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    except Exception:  # best effort: a leftover topic only costs disk
        pass
    finally:
        admin.close()


def kafka_produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> Rate:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=256 * 1024, compression_type=default_compression(),
                             max_request_size=4 * 1024 * 1024)
    nbytes = sum(len(v) for _, v in records)
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return Rate(f"kafka-python produce (acks=all, linger 20 ms, {default_compression()})",
                len(records), seconds, nbytes)


async def _consume(bootstrap: str, topic: str, expected: int) -> tuple[int, int, float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    count = nbytes = 0
    started: float | None = None
    try:
        while count < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if started is None and batches:
                started = time.perf_counter()  # group join and first fetch excluded
            for messages in batches.values():
                count += len(messages)
                nbytes += sum(len(m.value or b"") for m in messages)
    finally:
        await consumer.stop()
    return count, nbytes, time.perf_counter() - (started or time.perf_counter())


def aiokafka_consume(bootstrap: str, topic: str, expected: int) -> Rate:
    count, nbytes, seconds = asyncio.run(_consume(bootstrap, topic, expected))
    return Rate("aiokafka consume (getmany, 5000/poll)", count, seconds, nbytes)


def journey_rows(n: int) -> tuple[list[str], list[list[Any]]]:
    """Columns and column-wise data of >= n real journey records (the core over generated
    events), repeated with fresh ids until there are n."""
    from pipeline.core.config import CoreConfig
    from pipeline.core.engine import ExperienceEngine
    from pipeline.storage.tables import rows

    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    latest: dict[str, dict[str, Any]] = {}
    config = GeneratorConfig(events=min(n * 4, 100_000), seed=3, late_fraction=0.0)
    for event in generate_events(config):
        out, _ = engine.process(parse_event(encode_event(event)))
        for record in out.journeys:
            latest[record.journey_id] = record.to_dict()
    base = list(latest.values())
    records = []
    for i in range(n):
        r = dict(base[i % len(base)])
        r["journey_id"] = f"{r['journey_id']}-{i}"
        records.append(r)
    columns, data = rows("journeys", records)
    return list(columns), [list(c) for c in zip(*data, strict=True)]


def clickhouse_insert(admin_url: str, n: int, repeat: int = 3) -> Rate:
    from clickhouse_driver import Client

    from pipeline.storage.migrate import migrate
    from pipeline.storage.warehouse import ServerWarehouse

    columns, data = journey_rows(n)
    name = f"pe_raw_{uuid.uuid4().hex[:8]}"
    admin = ServerWarehouse(admin_url)
    admin.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    target = ServerWarehouse(f"{base}/{name}")
    try:
        migrate(target, cluster="")
        client: Client = target._client  # the warehouse's own clickhouse-driver client
        sql = f"INSERT INTO journeys ({', '.join(columns)}) VALUES"
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            client.execute(sql, data, columnar=True)
            best = min(best, time.perf_counter() - started)
    finally:
        target.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    return Rate(f"clickhouse-driver columnar insert into journeys ({len(columns)} columns, "
                f"best of {repeat})", n, best)


def run(bootstrap: str, admin_url: str, events: int, insert_rows: int) -> dict[str, Rate]:
    records = event_lines(events)
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 4)
    try:
        produced = kafka_produce(bootstrap, topic, records)
        consumed = aiokafka_consume(bootstrap, topic, len(records))
    finally:
        delete_topic(bootstrap, topic)
    inserted = clickhouse_insert(admin_url, insert_rows)
    mean = sum(len(v) for _, v in records) / len(records)
    produced.what += f", mean event {mean:.0f} bytes"
    return {"produce": produced, "consume": consumed, "insert": inserted}


def main() -> None:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    env = stack_env()
    for rate in run(env["PEAKEND_KAFKA_BOOTSTRAP"], env["PEAKEND_CLICKHOUSE_ADMIN_URL"],
                    args.events, args.rows).values():
        print(rate.line())
    print(json.dumps({"note": "records/s; MB/s of JSON values"}))


if __name__ == "__main__":
    main()
