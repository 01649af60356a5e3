"""A batch whose rows span more months than `max_partitions_per_insert_block` (100 by default on
chdb and current ClickHouse servers) lands: the warehouse lifts the cap for its inserts, and
should an insert still be refused for it, the sink's `isolate` inserts halves instead of
retrying the batch forever (`failure_kind`). The contract admits 2000-2099, and one batch of a
backfill or of a late stream can span years."""

from __future__ import annotations

from pipeline.contract import event_to_dict, parse_event
from pipeline.storage.sink import isolate
from pipeline.storage.tables import rows
from tests.unit.storage.ch_helpers import chdb_database


def month_events(months: int) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for m in range(months):
        line = (f'{{"event_id":"m{m}","schema_version":1,"occurred_at":'
                f'"{2000 + m // 12}-{m % 12 + 1:02d}-15T12:00:00Z","producer":"p",'
                '"customer_id":"c","type":"interaction","touchpoint":"web","channel":"web",'
                '"stage":"use"}')
        out.append(event_to_dict(parse_event(line.encode())))
    return out


def test_a_batch_over_150_months_lands_whole() -> None:
    with chdb_database("pe_parts") as db:
        records = month_events(150)

        def insert(chunk: list[dict]) -> None:  # type: ignore[type-arg]
            columns, values = rows("touchpoint_events", chunk)
            db.writer.insert("touchpoint_events", columns, values)

        rejected: list[tuple[dict, BaseException]] = []  # type: ignore[type-arg]
        isolate([records], insert, rejected)
        assert rejected == []
        [(n,)] = db.reader.query("SELECT count() FROM touchpoint_events")
        assert n == 150
