"""The ClickHouse sink's own CPU per event, without Kafka or the worker: decode, rows, insert.

    .venv/bin/python -m bench.bench_sink [--events 20000] [--flush 1000] [--rounds 3]

Input: the generator's default mix (`jobs.generate`, as `bench/bench_pipeline.py` makes it: a
day of event time) run through the worker's stages in-process (parse, scrub, stage one per
partition, coalesce, stage two), encoded as the worker writes its output topics: journeys,
metric and alert records as orjson JSON, the valid events as the entry stage's batch records
(`pipeline.stream.batches`). Each "flush" takes the records of `--flush` input events, as the
sink's 0.5 s batch would.

Two paths over the same records, into a fresh migrated database on the real ClickHouse server
(the stack's, `scripts/stack.sh`), measured in one run, alternating, `--rounds` times each
(best round kept, and each round's ratio printed):

- `rows`: the sink before this bench (json.loads, `tables.rows` per record, the row-oriented
  `Warehouse.insert`): kept here as the reference;
- `columns`: the sink's path now (`sink.loads`, `tables.columnar`, `Warehouse.insert_columns`;
  touchpoint_events from the batch records' flat rows, `decode_entries` and
  `tables.touchpoint_columns`);
- `nomemo`: `columns` without the memo of parsed times (`tables._TIMES`).

Each path inserts into a database of its own; at the end the two databases' tables are
compared (FINAL, every column): the bench fails when they differ. CPU is this process's (user +
system): the decoding, the row or column building and clickhouse-driver's encoding and sending.
The server's own work is not in it. Per table the building alone is timed too (no insert).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.host import cpu_model, loadavg
from jobs.generate import GeneratorConfig, encode_event, generate_events
from pipeline.contract import Rejected, parse_event
from pipeline.core.partitioner import partition_for
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings
from pipeline.storage import sink as sink_module
from pipeline.storage import tables
from pipeline.storage.tables import columnar, rows, touchpoint_columns
from pipeline.storage.warehouse import Warehouse
from pipeline.stream import messages
from pipeline.stream.batches import (
    DIGEST_AT,
    EVENT_AT,
    OCCURRED_MS_AT,
    decode_entries,
    decode_rows,
    encode_item,
    join_items,
)
from pipeline.stream.partition import PartitionProcessor, coalesce
from pipeline.stream.segments import SegmentStage

# (table, JSON record) or ("touchpoint_events", batch record)
Message = tuple[str, bytes]
BATCH_TABLE = "touchpoint_events"


@dataclass
class Flush:
    """The output records of `--flush` input events, per table, as the sink reads them."""

    events: int
    messages: dict[str, list[bytes]] = field(default_factory=dict)


def make_flushes(events: int, per_flush: int, settings: Settings,
                 start_ms: int = 1_795_000_000_000) -> list[Flush]:
    """The worker's output records for `events` generated events, cut into flushes."""
    config = GeneratorConfig(events=events, seed=7, start_ms=start_ms, span_ms=24 * 3_600_000,
                             id_prefix="bsink")
    core = settings.core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    privacy = PersonalData.from_settings(settings)
    parts = settings.partitions
    stage_one: dict[int, PartitionProcessor] = {}
    stage_two: dict[int, SegmentStage] = {}
    values = [encode_event(e) for e in generate_events(config)]
    flushes: list[Flush] = []
    offset = 0
    for start in range(0, len(values), per_flush):
        flush = Flush(min(per_flush, len(values) - start))
        out = flush.messages
        by_partition: dict[int, list[Any]] = {}
        items: dict[int, list[tuple[bytes, bytes]]] = {}  # (encoded item, raw record)
        for raw in values[start:start + per_flush]:
            offset += 1
            try:
                event = privacy.scrub(parse_event(raw, max_bytes=settings.max_event_bytes))
            except Rejected:
                continue
            part = partition_for(event.journey_key, parts)
            proc = stage_one.get(part)
            if proc is None:
                proc = stage_one[part] = PartitionProcessor(part, core, rules)
            by_partition.setdefault(part, []).append(proc.process(event))
            items.setdefault(part, []).append(
                (encode_item(part, offset, event.occurred_ms, raw, event), raw))
        for held in items.values():  # one batch record per partition and flush
            out.setdefault(BATCH_TABLE, []).append(
                join_items([item for item, _ in held], [raw for _, raw in held]))
        contributions: dict[int, list[dict[str, Any]]] = {}
        for part, outputs in by_partition.items():
            merged = coalesce(outputs)
            out.setdefault("journeys", []).extend(
                orjson.dumps(r.to_dict()) for r in merged.journeys)
            grouped: dict[str, list[dict[str, Any]]] = {}
            for seg_key, message in merged.contributions:
                grouped.setdefault(seg_key, []).append(message)
            for seg_key, group in grouped.items():
                contributions.setdefault(partition_for(seg_key, parts), []).append(
                    messages.batch(group))
            if merged.watermark is not None:
                for target in range(parts):
                    contributions.setdefault(target, []).append(
                        messages.watermark(part, merged.watermark))
        for part, batch in contributions.items():
            stage = stage_two.get(part)
            if stage is None:
                stage = stage_two[part] = SegmentStage(core)
            result = stage.process_batch(batch)
            out.setdefault("metric_buckets", []).extend(
                orjson.dumps(r.to_dict()) for r in result.metrics)
            out.setdefault("alerts", []).extend(orjson.dumps(r.to_dict()) for r in result.alerts)
        flushes.append(flush)
    return flushes


def decode_old(table: str, values: list[bytes]) -> list[dict[str, Any]]:
    if table == BATCH_TABLE:
        return [event for value in values for event, _sp, _off, _raw in decode_rows(value)]
    return [json.loads(v) for v in values]


def decode_new(table: str, values: list[bytes]) -> list[Any]:
    """The sink's records: the batch records' entries (flat rows) for touchpoint_events, the
    output records' dicts for the others."""
    if table == BATCH_TABLE:
        return [entry for value in values for entry in decode_entries(value)]
    return [sink_module.loads(v) for v in values]


def path_rows(wh: Warehouse | None, table: str, values: list[bytes]) -> int:
    columns, data = rows(table, decode_old(table, values))
    if wh is not None:
        wh.insert(table, columns, data)
    return len(data)


def path_columns(wh: Warehouse | None, table: str, values: list[bytes]) -> int:
    records = decode_new(table, values)
    if table == BATCH_TABLE:  # the sink's path (storage/sink.py, `_insert_chunk`)
        columns, data = touchpoint_columns(records, EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)
    else:
        columns, data = columnar(table, records)
    if wh is not None:
        wh.insert_columns(table, columns, data)
    return len(records)


PATHS: dict[str, Callable[[Warehouse | None, str, list[bytes]], int]] = {
    "rows": path_rows,
    "columns": path_columns,
    # the same without the memo of parsed times (it holds one entry at a time): does it pay?
    "nomemo": path_columns,
}


def run_path(name: str, flushes: list[Flush], wh: Warehouse | None,
             per_table: dict[str, float]) -> float:
    """CPU seconds of one pass of `name` over every flush; adds each table's to `per_table`."""
    tables._TIMES.clear()  # a fresh sink process starts with an empty memo
    path = PATHS[name]
    memo_size = tables._TIMES_MAX
    if name == "nomemo":
        tables._TIMES_MAX = 0
    total = 0.0
    try:
        for flush in flushes:
            for table, values in flush.messages.items():
                began = time.process_time()
                path(wh, table, values)
                spent = time.process_time() - began
                per_table[table] = per_table.get(table, 0.0) + spent
                total += spent
    finally:
        tables._TIMES_MAX = memo_size
    return total


def main() -> None:
    from tests.support.stack import stack_env
    from tests.unit.storage.ch_helpers import server_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--flush", type=int, default=1_000,
                        help="input events per sink batch (0.5 s at 2,000 events/s)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env({})
    flushes = make_flushes(args.events, args.flush, settings)
    counts: dict[str, int] = {}
    for flush in flushes:
        for table, values in flush.messages.items():
            n = len(decode_old(table, values))
            counts[table] = counts.get(table, 0) + n
    events = sum(f.events for f in flushes)
    print(f"{events} events -> rows: " + ", ".join(f"{t} {n}" for t, n in counts.items())
          + f"; {len(flushes)} flushes")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; load {loadavg()} at start")
    env = stack_env()
    best: dict[str, dict[str, float]] = {}
    urls = (env["PEAKEND_CLICKHOUSE_ADMIN_URL"], env["PEAKEND_CLICKHOUSE_URL"],
            env["PEAKEND_CLICKHOUSE_READER_URL"])
    # one database per path, so that their contents can be compared afterwards
    with server_database(*urls, prefix="pe_bsink") as old_db, \
            server_database(*urls, prefix="pe_bsink") as new_db:
        for label, insert in (("build only", False), ("build + insert", True)):
            print(f"\n{label}: us of CPU per input event (best of {args.rounds}; ratio per round)")
            totals: dict[str, list[float]] = {name: [] for name in PATHS}
            tables_best: dict[str, dict[str, float]] = {name: {} for name in PATHS}
            for _ in range(args.rounds):
                for name in PATHS:  # alternating: the same load for both
                    wh = (old_db if name == "rows" else new_db).writer if insert else None
                    per_table: dict[str, float] = {}
                    totals[name].append(run_path(name, flushes, wh, per_table))
                    kept = tables_best[name]
                    for table, spent in per_table.items():
                        kept[table] = min(kept.get(table, spent), spent)
                with contextlib.suppress(ZeroDivisionError):
                    last = {name: spent[-1] / totals["rows"][-1] for name, spent in totals.items()}
                    print(f"  round: columns / rows = {last['columns']:.2f}, nomemo / rows = "
                          f"{last['nomemo']:.2f} (load {loadavg()})")
            best[label] = {name: min(v) for name, v in totals.items()}
            for name in PATHS:
                by_table = ", ".join(f"{t} {s / events * 1e6:.1f}"
                                     for t, s in tables_best[name].items())
                print(f"  {name:8s} {best[label][name] / events * 1e6:6.1f} us/event"
                      f"  ({by_table})")
            print(f"  ratio columns / rows: {best[label]['columns'] / best[label]['rows']:.2f}"
                  f"; nomemo / columns: {best[label]['nomemo'] / best[label]['columns']:.2f}")
        for table in counts:
            spec = tables.TABLES[table]
            # FINAL: the rounds inserted every row several times; the newest copy per key
            sql = (f"SELECT {', '.join(spec.columns)} FROM {table} FINAL "
                   f"ORDER BY {', '.join(spec.columns)}")
            same = old_db.reader.query(sql) == new_db.reader.query(sql)
            print(f"{table}: the two paths stored {'the same' if same else 'DIFFERENT'} rows")
            if not same:
                raise SystemExit(f"{table}: the column path stored other rows than the row path")
    print(f"\nload {loadavg()} at the end")


if __name__ == "__main__":
    main()
