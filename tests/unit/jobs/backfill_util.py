"""Shared by the backfill tests: a recording warehouse, replay's rows, and table reduction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.generate import (
    GeneratorConfig,
    Shift,
    encode_record,
    generate_records,
    write_parquet,
)
from jobs.journey_builder import HOUR
from pipeline.contract.jsonl import iter_records
from pipeline.core.config import CoreConfig, DropConfig
from pipeline.replay import Replay
from pipeline.storage.tables import TABLES, rows
from tests.support.tables import read_back

START = GeneratorConfig().start_ms
# A small file with enough answers for the drop detector to fire, invalid and late rows.
EVENTS = GeneratorConfig(
    events=6000, seed=21, span_ms=10 * HOUR, invalid_fraction=0.02, late_fraction=0.02,
    mix=(("bank", 0.5), ("invest", 0.2), ("telecom", 0.1), ("ecommerce", 0.2)),
    shifts=(Shift("drop", "channel", "phone", START + 6 * HOUR, 40),))
CORE = CoreConfig(drops=DropConfig(min_n=15, min_baseline_n=15, p_value=0.05))

# Columns that legitimately differ between replay and backfill of the same events.
IGNORED = {
    "dead_letters": {"received_at", "received_at_ms", "original_b64", "source_topic"},
}
VERSIONED = {"journeys", "metric_buckets", "alerts"}


class RecordingWarehouse:
    """The Warehouse calls backfill makes, kept in memory."""

    engine = "memory"
    database = "memory"

    def __init__(self) -> None:
        self.inserted: dict[str, list[dict[str, Any]]] = {}

    def insert(self, table: str, columns: Sequence[str], data: Iterable[Sequence[Any]]) -> int:
        out = self.inserted.setdefault(table, [])
        count = 0
        for row in data:
            out.append(dict(zip(columns, row, strict=True)))
            count += 1
        return count

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        return self.insert(table, columns, zip(*data, strict=True))

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise AssertionError("backfill only inserts")

    def close(self) -> None:
        pass


def final(table: str, data: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """What ReplacingMergeTree keeps (FINAL): the highest version per key, or the last row per
    key for unversioned tables; as sorted tuples without the ignored columns, in the form a
    query reads them back (`read_back`)."""
    spec = TABLES[table]
    kept: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for written in data:
        row = read_back(table, written)
        key = tuple(row[k] for k in spec.key)
        old = kept.get(key)
        if old is None or table not in VERSIONED or row["version"] >= old["version"]:
            kept[key] = row
    ignored = IGNORED.get(table, set())
    columns = [c for c in spec.columns if c not in ignored]
    return sorted((tuple(row[c] for c in columns) for row in kept.values()), key=repr)


def replay_tables(jsonl: Path, config: CoreConfig, partitions: int) -> dict[str, list[Any]]:
    """`peakend replay` over a file, as the final table contents."""
    replay = Replay(config, partitions, jsonl.name, 65536)
    with open(jsonl, "rb") as handle:
        for number, raw in iter_records(handle):
            replay.line(number, raw)
    replay.keep(replay.engine.finish())
    out: dict[str, list[Any]] = {}
    for table, records in (
        ("journeys", [r.to_dict() for r in replay.journeys.values()]),
        ("metric_buckets", [r.to_dict() for r in replay.metrics.values()]),
        ("alerts", [r.to_dict() for r in replay.alerts]),
        ("dead_letters", [d.to_dict() for d in replay.dead_letters]),
    ):
        columns, data = rows(table, records)
        out[table] = final(table, (dict(zip(columns, r, strict=True)) for r in data))
    return out


def write_both(config: GeneratorConfig, directory: Path) -> tuple[Path, Path, int]:
    """The same records as JSONL and Parquet (invalid ones included); (jsonl, parquet, rows)."""
    records = [r for r in generate_records(config, json_only=False) if isinstance(r, dict)]
    jsonl = directory / "events.jsonl"
    jsonl.write_bytes(b"".join(encode_record(r) + b"\n" for r in records))
    parquet = directory / "events.parquet"
    write_parquet(records, parquet, batch_rows=1000)
    return jsonl, parquet, len(records)
