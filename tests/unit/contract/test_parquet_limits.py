"""Backfill's Parquet reader applies the contract's limits like the JSON parser: the fast path
(`clean_rows`) never clears a row the parser would reject, and the slow path (`BatchDicts` ->
`parse_dict`) rejects it by name instead of crashing or silently changing it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from jobs.columns import clean_rows
from jobs.parquet_schema import SCHEMA, BatchDicts, events_to_batch
from pipeline.contract import Rejected, parse_dict

BASE: dict[str, Any] = {
    "event_id": "pq-1", "schema_version": 1, "occurred_at": "2026-11-22T17:10:09.123Z",
    "producer": "p", "customer_id": "c", "type": "interaction", "touchpoint": "t",
    "channel": "web", "stage": "use",
}


def _with_attribute_pairs(batch: pa.RecordBatch, pairs: list[tuple[str, str]]) -> pa.RecordBatch:
    index = SCHEMA.get_field_index("attributes")
    column = pa.array([pairs], type=SCHEMA.field("attributes").type)
    return batch.set_column(index, SCHEMA.field("attributes"), column)


def test_repeated_map_keys_are_rejected_not_merged() -> None:
    batch = _with_attribute_pairs(events_to_batch([BASE]), [("region", "eu"), ("tier", "gold"),
                                                           ("region", "us")])
    assert clean_rows(batch, 65536) == [False]
    with pytest.raises(Rejected) as caught:
        parse_dict(BatchDicts(batch).row(0))
    assert caught.value.reason == "invalid"
    assert "attributes.region: key 'region' appears more than once" in caught.value.error


def test_distinct_map_keys_stay_on_the_fast_path() -> None:
    batch = _with_attribute_pairs(events_to_batch([BASE]), [("region", "eu"), ("tier", "gold")])
    assert clean_rows(batch, 65536) == [True]
    assert parse_dict(BatchDicts(batch).row(0)).attributes == {"region": "eu", "tier": "gold"}


@pytest.mark.parametrize(("change", "words"), [
    ({"signals": {"transfers": 2**31}}, "signals.transfers: 2147483648 is above the maximum"),
    ({"signals": {"wait_seconds": 1e300}}, "signals.wait_seconds: 1e+300 is above the maximum"),
    ({"signals": {"handle_seconds": 31536001.0}}, "signals.handle_seconds: 31536001.0 is above"),
    ({"producer": "p" * 201}, "producer: 201 characters, above the maximum 200"),
    ({"customer_id": "c" * 201}, "customer_id: 201 characters"),
    ({"journey_id": "j" * 201}, "journey_id: 201 characters"),
    ({"touchpoint": "t" * 201}, "touchpoint: 201 characters"),
    ({"occurred_at": "1960-01-01T00:00:00.000Z"}, "outside the years 2000-2099 UTC"),
    ({"occurred_at": "1999-12-31T23:59:59.999Z"}, "outside the years 2000-2099 UTC"),
    ({"occurred_at": "2100-01-01T00:00:00.000Z"}, "outside the years 2000-2099 UTC"),
])
def test_rows_beyond_the_limits_are_rejected(change: dict[str, Any], words: str) -> None:
    batch = events_to_batch([{**BASE, **change}])
    assert clean_rows(batch, 65536) == [False]
    with pytest.raises(Rejected) as caught:
        parse_dict(BatchDicts(batch).row(0))
    assert caught.value.reason == "invalid"
    assert words in caught.value.error


def test_a_timestamp_datetime_cannot_hold_is_rejected_not_a_crash() -> None:
    batch = events_to_batch([BASE])
    index = SCHEMA.get_field_index("occurred_at")
    far = pa.array([900_000_000_000_000], type=pa.int64()).cast(SCHEMA.field("occurred_at").type)
    batch = batch.set_column(index, SCHEMA.field("occurred_at"), far)  # about year 30,000
    assert clean_rows(batch, 65536) == [False]
    with pytest.raises(Rejected) as caught:
        parse_dict(BatchDicts(batch).row(0))
    assert "occurred_at: '900000000000000 ms since 1970-01-01T00:00:00Z'" in caught.value.error


def test_the_limits_themselves_stay_on_the_fast_path() -> None:
    edge = {**BASE, "producer": "p" * 200, "customer_id": "c" * 200, "journey_id": "j" * 200,
            "touchpoint": "t" * 200, "occurred_at": "2000-01-01T00:00:00.000Z",
            "signals": {"transfers": 2**31 - 1, "wait_seconds": 31536000.0}}
    batch = events_to_batch([edge])
    assert clean_rows(batch, 65536) == [True]
    parse_dict(BatchDicts(batch).row(0))
