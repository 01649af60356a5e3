"""One changed state key written one record per key (`ChangelogTable`) against a journal chunk
(`JournalTable`), in one run (issue 15, docs/streaming.md "seventh round").

    .venv/bin/python -m bench.bench_journal [--batches 200] [--rounds 3]

Each batch changes what the claims and segment stages change on one partition: 200 claims
(event_id -> [digest, journey key, partition, time]), 160 bucket members, and, from the sixth
batch on, the removal of the claims of five batches before. Both tables write to a real Faust
table (RocksDB store, no broker) and queue their changelog records, which are then grouped as
the worker's delivery groups them (`delivery.group`; aiokafka's appends and the broker are not
in the figure). CPU time per changed key, the rounds alternating the two tables.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from faust.types import TP

from bench.host import cpu_model, loadavg
from pipeline.stream.delivery import BatchDelivery, group
from pipeline.stream.journal import JournalTable
from pipeline.stream.segments import member_key
from pipeline.stream.state_writer import ChangelogTable
from tests.support.faust_tables import rocksdb_table

ROLE = "state:t"
TOPIC = "bench-t-changelog"


def batch_pairs(number: int) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        (f"evt-{number}-{i:04d}", [1234567 + i, f"c{i}@2026-11-22T17:10:00.000Z", 2,
                                   1795000000000]) for i in range(200)]
    pairs += [(member_key("channel=web", "nps", 60000 * number, f"e{number}-{i}"),
               {"v": 3, "d": True, "a": [1, 0, 1]}) for i in range(160)]
    if number >= 5:
        pairs += [(f"evt-{number - 5}-{i:04d}", None) for i in range(200)]
    return pairs


def per_key_us(kind: str, batches: int) -> tuple[float, float]:
    """CPU us per changed key, and Kafka records per changed key."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
        table = rocksdb_table(Path(folder), partitions=4)
        delivery = BatchDelivery(lambda: None, {ROLE: TOPIC})  # type: ignore[arg-type,return-value]
        writer = (ChangelogTable(table, delivery, ROLE, TP) if kind == "one record per key"
                  else JournalTable(table, delivery, ROLE, TP))
        prepared = [batch_pairs(number) for number in range(batches)]
        keys = records = 0
        started = time.process_time()
        for pairs in prepared:
            writer.write_pairs(1, pairs, {})
            pending = list(delivery._pending)
            delivery._pending.clear()
            group(pending, delivery.topic_of, lambda topic: 4)
            keys += len(pairs)
            records += len(pending)
        cpu = time.process_time() - started
        for db in table.data._dbs.values():
            db.close()
    return cpu / keys * 1e6, records / keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.set_event_loop(asyncio.new_event_loop())  # a Faust app takes the current loop
    print(f"bench_journal: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
          f"{cpu_model()}, load {loadavg()}")
    results: dict[str, list[float]] = {}
    ratio: dict[str, float] = {}
    for _ in range(args.rounds):
        for kind in ("one record per key", "journal"):
            us, per_key = per_key_us(kind, args.batches)
            results.setdefault(kind, []).append(us)
            ratio[kind] = per_key
            print(f"  {kind:18s} {us:6.2f} us per changed key, {per_key:.4f} records per key",
                  flush=True)
    for kind, samples in results.items():
        print(f"{kind:18s} best {min(samples):6.2f} us per changed key, "
              f"{ratio[kind]:.4f} Kafka records per changed key")
    print(f"journal / one record per key: "
          f"{min(results['journal']) / min(results['one record per key']):.2f}x "
          f"(load {loadavg()})")


if __name__ == "__main__":
    main()
