"""touchpoint_events follows the core's conflict rule (issue 14), on chdb: the smaller content
digest wins whatever the insert order; the batch jobs' rows carry the same version as the sink's;
migration 003 carries the old rows over. The same checks on ClickHouse 18.16:
tests/integration/test_touchpoint_events_conflicts.py."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from jobs.columns import EventBuilder, touchpoint_columns, touchpoint_row
from jobs.parquet_schema import events_to_batch
from pipeline.contract import event_to_dict, parse_dict
from pipeline.core.event import content_digest
from pipeline.privacy import PersonalData
from pipeline.storage import tables
from tests.chdb_util import shared_chdb
from tests.unit.storage import touchpoint_conflicts as tc
from tests.unit.storage.ch_helpers import chdb_database


def test_version_is_the_core_digest_turned_around() -> None:
    for _, one, two in tc.CHANGES:
        for event in (one, two):
            columns, [row] = tables.rows("touchpoint_events", [event_to_dict(event)])
            version = dict(zip(columns, row, strict=True))["version"]
            assert version == (1 << 32) - content_digest(event)
        kept = tc.core_keeps(one, two)
        assert kept is tc.core_keeps(two, one)
        assert tc.expected_row(kept)[-1] > tc.expected_row(two if kept is one else one)[-1]
    with pytest.raises(ValueError, match="not a content digest"):
        tables.digest_version(1 << 32)


def test_copies_further_apart_than_the_lateness_keep_the_older_in_either_order() -> None:
    """The core keeps the older of two such copies (docs/contract.md); the table, whose version
    is a row's own, keeps the smaller digest and can show the other (the documented limit)."""
    older, newer = tc.FAR_APART
    assert tc.core_keeps(older, newer) is older
    assert tc.core_keeps(newer, older) is older


def test_a_record_that_is_not_an_event_is_refused_by_name() -> None:
    record = event_to_dict(tc.BASE)
    record["channel"] = "pigeon"
    with pytest.raises(ValueError, match="touchpoint_events: not a valid event: invalid: channel"):
        tables.rows("touchpoint_events", [record])


def test_final_shows_the_core_winner_in_both_orders() -> None:
    with chdb_database(prefix="pe_conflict") as dbs:
        assert tc.check_both_orders(dbs.writer, dbs.reader) == 2 * len(tc.CHANGES)


def test_migration_003_carries_the_old_rows_over() -> None:
    wh = shared_chdb(f"pe_mig003_{uuid.uuid4().hex[:10]}")
    try:
        tc.check_carry_over(wh)
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.database}")


def test_migration_003_resumes_after_an_interruption() -> None:
    wh = shared_chdb(f"pe_mig003i_{uuid.uuid4().hex[:10]}")
    try:
        tc.check_interrupted(wh)
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.database}")


@pytest.mark.parametrize("key", [b"", b"pseudonym-key"])
@pytest.mark.parametrize("keep_comments", [False, True])
def test_backfill_rows_carry_the_sinks_version(key: bytes, keep_comments: bool) -> None:
    """The backfill's columns (built from Arrow), its row builder and the sink's mapping (the
    scrubbed event's dict) give every copy the version of the digest the core computes."""
    personal = PersonalData(key=key, keep_comments=keep_comments)
    events = [c for _, one, two in tc.CHANGES for c in (one, replace(two, event_id="x"))]
    batch = events_to_batch([event_to_dict(e) for e in events])
    builder = EventBuilder(personal)
    columns = touchpoint_columns(batch, list(range(len(events))), builder)
    spec = tables.TABLES["touchpoint_events"]
    assert len(columns) == len(spec.columns)
    for i, event in enumerate(events):
        scrubbed = personal.scrub(parse_dict(event_to_dict(event)))
        sink_row = spec.row(event_to_dict(scrubbed))
        assert sink_row[-1] == (1 << 32) - content_digest(scrubbed)
        assert touchpoint_row(scrubbed)[-1] == sink_row[-1]
        assert columns[-1][i] == sink_row[-1]
