"""How soon a follow-up case follows the bad moment that opens it, on the real servers (issue 17:
"within seconds").

    .venv/bin/python -m bench.followup_latency [--rate 200] [--probes 40] [--interval 1.0]

A `peakend worker` is started exactly as the integration tests start one
(`tests.support.stream.stream_setup` / `Worker`: a subprocess with its own topics,
consumer group, state directory and ClickHouse database on the shared stack). While generated
journeys (the default persona mix, starting 20 to 12 hours before now) are produced at a steady
`--rate` events/s as background load, a probe is produced every `--interval` seconds: one
hotline call of a new customer (`wait_seconds` 3600, 4 transfers, unresolved: a moment of -0.98
with the v1 scoring rules), dated now, which opens a `deep_negative_peak` case at once (the
trigger also fires on a journey still open). The wall time just before `producer.send` is the
probe's start. Two readers measure when its case is visible:
- topic: a consumer (read_committed) assigned to every partition of the cases topic from its end,
  polling with a 0.1 s timeout; the case is there when a record with the probe's journey id is
  returned (what a ticketing consumer such as `peakend followups` sees);
- ClickHouse: the start of the first query (every 0.2 s, `followups` table) that returns it;
  for comparison, the same for the probe's row in `journeys` (stage one's output, before the
  follow-up stage).
Latency = those times - the probe's start. The first probe warms the worker up and is not counted.
Printed: p50 / p95 / max of both, the background rate achieved, the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from jobs.generate import GeneratorConfig, encode_event, generate_events
from jobs.journey_builder import HOUR
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream.topics import followups_topic
from tests.support.stack import ClickHouseUrls, stack_env
from tests.support.stream import StreamSetup, Worker, stream_setup


def probe_event(tag: str, number: int, at: float) -> tuple[str, bytes, bytes]:
    """(journey id, key, value) of one probe: a bad hotline call dated `at` (wall time)."""
    journey = f"probe-{tag}-{number}"
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    value = {
        "event_id": f"{journey}-call", "schema_version": 1,
        "occurred_at": stamp.replace("+00:00", "Z"), "producer": "bench-followup-latency",
        "customer_id": f"probe-customer-{tag}-{number}", "journey_id": journey,
        "type": "interaction", "touchpoint": "hotline", "channel": "phone",
        "stage": "after_sales",
        "signals": {"wait_seconds": 3600, "transfers": 4, "resolved": False},
    }
    return journey, journey.encode(), json.dumps(value).encode()


PROBE_ROWS = {table: "SELECT DISTINCT journey_id FROM " + table + " WHERE journey_id IN %(ids)s"
              for table in ("followups", "journeys")}  # constant table names


class Seen:
    """When each probe journey's case was first seen, by reader."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.topic: dict[str, float] = {}
        self.clickhouse: dict[str, float] = {}
        self.journeys: dict[str, float] = {}  # the probe's journey row (stage one's output)
        self.stop = threading.Event()


def read_topic(setup: StreamSetup, seen: Seen, ready: threading.Event) -> None:
    topic = followups_topic(setup.settings())
    consumer = KafkaConsumer(bootstrap_servers=setup.env["PEAKEND_KAFKA_BOOTSTRAP"],
                             enable_auto_commit=False, isolation_level="read_committed")
    try:
        while not consumer.partitions_for_topic(topic):  # the worker creates it at start
            time.sleep(0.2)
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for part in parts:
            consumer.position(part)
        ready.set()
        while not seen.stop.is_set():
            batches = consumer.poll(timeout_ms=100)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    journey = json.loads(record.value).get("journey_id", "")
                    if journey.startswith("probe-"):
                        with seen.lock:
                            seen.topic.setdefault(journey, now)
    finally:
        consumer.close()


def read_clickhouse(setup: StreamSetup, seen: Seen, probes: list[str]) -> None:
    wh = setup.warehouse()
    try:
        while not seen.stop.is_set():
            began = time.time()
            for table, got in (("followups", seen.clickhouse), ("journeys", seen.journeys)):
                with seen.lock:
                    pending = tuple(j for j in probes if j not in got)
                if not pending:
                    continue
                with_table = wh.query(
                    "SELECT count() FROM system.tables WHERE database = %(db)s "
                    "AND name = %(t)s", {"db": setup.database, "t": table})
                if int(with_table[0][0]):
                    found = wh.query(PROBE_ROWS[table], {"ids": pending})
                    with seen.lock:
                        for (journey,) in found:
                            got.setdefault(journey, began)
            time.sleep(max(0.0, 0.2 - (time.time() - began)))
    finally:
        wh.close()


def background(setup: StreamSetup, rate: float, events: int, stop: threading.Event,
               sent: list[int]) -> None:
    """Up to `events` generated events at a steady `rate` until `stop` (keyed by journey, like
    the producer library)."""
    now_ms = int(time.time() * 1000)
    # dated within the allowed lateness (24 h) behind the probes, which are dated now; events of
    # long journeys dated after now are dead letters `future`: load all the same
    config = GeneratorConfig(events=events, seed=11, start_ms=now_ms - 20 * HOUR,
                             span_ms=8 * HOUR,
                             late_fraction=0.0, id_prefix=f"bg{uuid.uuid4().hex[:6]}")
    producer = KafkaProducer(bootstrap_servers=setup.env["PEAKEND_KAFKA_BOOTSTRAP"],
                             acks="all", linger_ms=5)
    started = time.time()
    try:
        for event in generate_events(config):
            if stop.is_set():
                break
            ahead = started + sent[0] / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
            key = event.get("journey_id") or event["customer_id"]
            producer.send(setup.topic, key=str(key).encode(), value=encode_event(event))
            sent[0] += 1
        producer.flush()
    finally:
        producer.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0,
                        help="background events/s (0: none)")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between probes")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the last case after the last probe")
    args = parser.parse_args()
    # stopped with SIGTERM (a timeout): the worker is stopped and the database dropped all the same
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    tag = uuid.uuid4().hex[:8]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="followup-latency-") as tmp:
        tmp_path = Path(tmp)
        setup = stream_setup(tmp_path, env["PEAKEND_KAFKA_BOOTSTRAP"], ch, partitions=4)
        worker = Worker(setup, tmp_path, "a")
        seen = Seen()
        probes = [f"probe-{tag}-{n}" for n in range(args.probes + 1)]
        ready = threading.Event()
        readers = [threading.Thread(target=read_topic, args=(setup, seen, ready), daemon=True),
                   threading.Thread(target=read_clickhouse, args=(setup, seen, probes),
                                    daemon=True)]
        for reader in readers:
            reader.start()
        producer = KafkaProducer(bootstrap_servers=env["PEAKEND_KAFKA_BOOTSTRAP"], acks="all")
        sent_at: dict[str, float] = {}
        stop_load = threading.Event()
        load_sent = [0]
        try:
            if not ready.wait(180):
                raise SystemExit("the worker did not create the cases topic within 180 s:\n"
                                 + worker.log_tail())
            # warm-up probe: the worker joins its groups and migrates ClickHouse first
            journey, key, value = probe_event(tag, 0, time.time())
            sent_at[journey] = time.time()
            producer.send(setup.topic, key=key, value=value)
            producer.flush()
            deadline = time.time() + 300
            while journey not in seen.clickhouse and time.time() < deadline:
                time.sleep(0.2)
            if journey not in seen.clickhouse:
                raise SystemExit("no case for the warm-up probe within 300 s:\n"
                                 + worker.log_tail())
            # enough events for the probes and the wait after them; stopped when all are seen
            budget = int(args.rate * (10 + args.probes * args.interval + args.timeout))
            loader = threading.Thread(target=background,
                                      args=(setup, args.rate, budget, stop_load, load_sent),
                                      daemon=True)
            load_started = time.time()
            if args.rate > 0:
                loader.start()
                time.sleep(5)  # the load reaches the worker before the first probe
            for number in range(1, args.probes + 1):
                journey, key, value = probe_event(tag, number, time.time())
                sent_at[journey] = time.time()
                producer.send(setup.topic, key=key, value=value)
                producer.flush()
                time.sleep(args.interval)
            deadline = time.time() + args.timeout
            while time.time() < deadline:
                with seen.lock:
                    if all(p in seen.clickhouse and p in seen.topic for p in probes):
                        break
                time.sleep(0.2)
            stop_load.set()
            load_seconds = time.time() - load_started
            if loader.is_alive():
                loader.join(30)
        finally:
            seen.stop.set()
            producer.close()
            worker.stop()
            admin = ServerWarehouse(ch.admin)
            admin.execute(f"DROP DATABASE IF EXISTS {setup.database}")
            admin.close()
    load_after = os.getloadavg()
    measured = probes[1:]
    topic = [seen.topic[p] - sent_at[p] for p in measured if p in seen.topic]
    warehouse = [seen.clickhouse[p] - sent_at[p] for p in measured if p in seen.clickhouse]
    journeys = [seen.journeys[p] - sent_at[p] for p in measured if p in seen.journeys]
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, "
          f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC; load average "
          f"{' '.join(f'{x:.1f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.1f}' for x in load_after)} after")
    print(f"background load: {load_sent[0]:,} events in {load_seconds:.0f} s "
          f"({load_sent[0] / load_seconds:,.0f}/s, asked {args.rate:,.0f}/s); "
          f"{len(measured)} probes, one every {args.interval:g} s")
    for name, values in (("cases topic", topic), ("ClickHouse followups", warehouse),
                         ("ClickHouse journeys (for comparison)", journeys)):
        missing = len(measured) - len(values)
        if values:
            print(f"{name}: p50 {pct(values, 50):.2f} s, p95 {pct(values, 95):.2f} s, "
                  f"max {max(values):.2f} s ({len(values)} cases, {missing} not seen)")
        else:
            print(f"{name}: no case seen ({missing} not seen)")


if __name__ == "__main__":
    main()
