"""touchpoint_events keeps the core's winner of a changed redelivery, on either engine.

Shared by the chdb unit tests (test_touchpoint_conflicts.py) and the ClickHouse 18.16 integration
tests (tests/integration/test_touchpoint_events_conflicts.py). Two copies of one event_id with
different content are inserted in both orders, each copy in an insert of its own (a part of its
own, as two sink batches would write them); `SELECT ... FROM touchpoint_events FINAL` must show
the copy the core keeps (`JourneyTracker`: the second copy is `conflict` when the first stays,
`replaced` when it wins), and so must the table once ClickHouse has merged the parts.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.contract import event_to_dict
from pipeline.core.config import JourneyConfig
from pipeline.core.event import Survey, TouchpointEvent
from pipeline.core.journeys import CONFLICT, REPLACED, JourneyTracker
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage import migrate, tables
from pipeline.storage.warehouse import Warehouse

SCORING_RULES = load_scoring_rules()

BASE = TouchpointEvent(
    "evt-1", datetime(2026, 11, 12, 9, 30, tzinfo=UTC), "survey-svc", "c-1", "survey",
    "hotline", "phone", "after_sales", journey_id="j-1", survey=Survey(nps=10),
    attributes={"region": "north"})

# (name, copy one, copy two): any field may differ, the time too (another day, same month;
# within the lateness: copies further apart keep the older whatever the digests, which the
# table cannot follow, `FAR_APART` and docs/contract.md)
CHANGES: list[tuple[str, TouchpointEvent, TouchpointEvent]] = [
    ("nps", BASE, replace(BASE, survey=Survey(nps=0))),
    ("day", BASE, replace(BASE, occurred_at=datetime(2026, 11, 13, 8, 0, tzinfo=UTC),
                          occurred_ms=-1)),
    ("attributes", BASE, replace(BASE, attributes={"region": "south"})),
    ("comment", replace(BASE, survey=Survey(nps=7, comment="slow")),
     replace(BASE, survey=Survey(nps=7, comment="fast"))),
]


# Two copies further apart in event time than the lateness and a bucket (two days and more).
FAR_APART = (BASE, replace(BASE, occurred_at=datetime(2026, 11, 14, 9, 30, tzinfo=UTC),
                           occurred_ms=-1))


def core_keeps(first: TouchpointEvent, second: TouchpointEvent) -> TouchpointEvent:
    """The copy the core keeps when `first` arrives before `second`."""
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    watermark = min(first.occurred_ms, second.occurred_ms)
    assert tracker.apply(first, watermark)[1] is None
    verdict = tracker.apply(second, watermark)[1]
    assert verdict in (CONFLICT, REPLACED), verdict
    return first if verdict == CONFLICT else second


def with_id(event: TouchpointEvent, event_id: str) -> TouchpointEvent:
    return replace(event, event_id=event_id)


def insert(warehouse: Warehouse, event: TouchpointEvent) -> None:
    columns, data = tables.rows("touchpoint_events", [event_to_dict(event)])
    warehouse.insert("touchpoint_events", columns, data)


def _shown(warehouse: Warehouse, final: bool) -> dict[str, list[tuple[Any, ...]]]:
    rows = warehouse.query(
        "SELECT event_id, occurred_at_ms, nps, comment, attribute_values, version "
        f"FROM touchpoint_events {'FINAL' if final else ''} ORDER BY event_id, version")
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(str(row[0]), []).append(tuple(row[1:]))
    return out


def carried(event: TouchpointEvent) -> tuple[Any, ...]:
    """`expected_row` of a row carried over by migration 003 (version 0)."""
    return (*expected_row(event)[:-1], 0)


def expected_row(event: TouchpointEvent) -> tuple[Any, ...]:
    columns, [row] = tables.rows("touchpoint_events", [event_to_dict(event)])
    values = dict(zip(columns, row, strict=True))
    return tuple(values[c] for c in ("occurred_at_ms", "nps", "comment", "attribute_values",
                                     "version"))


def check_both_orders(writer: Warehouse, reader: Warehouse) -> int:
    """Insert every pair of `CHANGES` in one order, then (table emptied) in the other; each time
    FINAL (and, after OPTIMIZE ... FINAL, the plain table) shows the core's winner, the same one
    in both orders. Returns the number of cases checked."""
    shown: list[dict[str, list[tuple[Any, ...]]]] = []
    for flip in (False, True):
        writer.execute("TRUNCATE TABLE touchpoint_events")
        expected: dict[str, TouchpointEvent] = {}
        for name, one, two in CHANGES:
            first, second = with_id(one, name), with_id(two, name)
            if flip:
                first, second = second, first
            insert(writer, first)
            insert(writer, second)
            expected[name] = core_keeps(first, second)
        winners = {eid: [expected_row(e)] for eid, e in expected.items()}
        assert _shown(reader, final=True) == winners
        # merged, the parts hold the winners alone (OPTIMIZE does nothing while a background
        # merge of the partition runs: ask again)
        for _ in range(40):
            writer.execute("OPTIMIZE TABLE touchpoint_events FINAL")
            if _shown(reader, final=False) == winners:
                break
            time.sleep(0.25)
        assert _shown(reader, final=False) == winners
        shown.append(winners)
    assert shown[0] == shown[1]  # the table does not depend on the arrival order
    return 2 * len(CHANGES)


def migrations_up_to(version: int) -> Path:
    """A directory with the migrations 001..`version` (same files, same checksums)."""
    directory = Path(tempfile.mkdtemp(prefix="peakend-mig-"))
    for m in migrate.load():
        if m.version <= version:
            (directory / m.name).write_text(m.text, encoding="utf-8")
    return directory


# The columns of touchpoint_events before 003: not its `version`, nor what later migrations
# added (009: ces_higher_means).
_NOT_YET = frozenset({"version", "ces_higher_means"})
OLD_COLUMNS = tuple(c for c in tables.TABLES["touchpoint_events"].columns if c not in _NOT_YET)


def old_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of today's table as the table before 003 took it (`OLD_COLUMNS`)."""
    return tuple(value for column, value in zip(tables.TABLES["touchpoint_events"].columns, row,
                                                strict=True) if column not in _NOT_YET)


def check_carry_over(warehouse: Warehouse) -> None:
    """`warehouse`: an empty database. Rows written under migrations 001-002 (no version; two
    copies on one day, of which the old table kept the last, and a copy on another day) are
    carried over by 003 with version 0; a copy written afterwards replaces a carried row; running
    the migrations again (also after an interruption right after the swap) changes nothing."""
    old = migrations_up_to(2)
    try:
        migrate.migrate(warehouse, cluster="", directory=old)
    finally:
        shutil.rmtree(old)
    one, two = CHANGES[0][1], CHANGES[0][2]
    rows = [
        with_id(one, "same-day"), with_id(two, "same-day"),  # old rule: the last one stays
        with_id(one, "kept"),
        with_id(BASE, "other-day"),
        with_id(CHANGES[1][2], "other-day"),
    ]
    for event in rows:
        _, [row] = tables.rows("touchpoint_events", [event_to_dict(event)])
        warehouse.insert("touchpoint_events", OLD_COLUMNS, [old_row(row)])
    assert migrate.migrate(warehouse, cluster="") == [
        m.name for m in migrate.load() if m.version > 2]
    shown = _shown(warehouse, final=True)
    assert shown["same-day"] == [carried(two)]
    assert shown["kept"] == [carried(one)]
    # the old key had the day in it: both copies were there; now one row (either copy)
    assert len(shown["other-day"]) == 1 and shown["other-day"][0][-1] == 0
    assert set(shown) == {"same-day", "kept", "other-day"}
    # any copy written after the migration replaces a carried-over row
    insert(warehouse, with_id(two, "kept"))
    assert _shown(warehouse, final=True)["kept"] == [expected_row(with_id(two, "kept"))]
    # nothing left behind, and nothing to do again
    names = {str(r[0]) for r in warehouse.query(
        "SELECT name FROM system.tables WHERE database = %(db)s", {"db": warehouse.database})}
    assert "touchpoint_events_before_003" not in names
    assert "touchpoint_events_next" not in names
    assert migrate.migrate(warehouse, cluster="") == []
    [(create,)] = warehouse.query(f"SHOW CREATE TABLE {warehouse.database}.touchpoint_events")
    flat = " ".join(str(create).split())
    assert "ENGINE = ReplacingMergeTree(version)" in flat and "ORDER BY event_id" in flat, flat


def check_interrupted(warehouse: Warehouse) -> None:
    """`warehouse`: an empty database. 003 stopped right after its swap (the copy not done, not
    recorded): running the migrations again copies the old rows and finishes."""
    old = migrations_up_to(2)
    try:
        migrate.migrate(warehouse, cluster="", directory=old)
    finally:
        shutil.rmtree(old)
    _, [row] = tables.rows("touchpoint_events", [event_to_dict(with_id(BASE, "old"))])
    warehouse.insert("touchpoint_events", OLD_COLUMNS, [old_row(row)])
    [m003] = [m for m in migrate.load() if m.version == 3]
    create, swap = m003.steps(warehouse.database)[:2]
    for step in (create, swap):
        for statement in step.statements:
            warehouse.execute(statement)
    assert not migrate.needed(warehouse, create.guard)
    assert migrate.migrate(warehouse, cluster="") == [
        m.name for m in migrate.load() if m.version >= 3]  # 003 finished, later ones run
    assert _shown(warehouse, final=True) == {"old": [carried(with_id(BASE, "old"))]}
