from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import FIELDS, PROTECTION_FIELDS, DeadLetter


def letter_for(data: bytes) -> DeadLetter:
    with pytest.raises(Rejected) as caught:
        parse_event(data)
    return DeadLetter.from_rejection(caught.value, original=data, source_topic="cx.touchpoints",
                                     source_partition=2, source_offset=41)


def test_fields_are_exactly_those_of_docs_records_md() -> None:
    letter = letter_for(b'{"event_id": "e1"}')
    assert tuple(letter.to_dict()) == FIELDS + PROTECTION_FIELDS
    assert FIELDS == ("reason", "error", "source_topic", "source_partition", "source_offset",
                      "received_at", "event_id", "original_b64")
    assert PROTECTION_FIELDS == ("original_form", "original_sha256", "redacted")


def test_from_rejection_carries_reason_error_event_id_and_original() -> None:
    data = b'{"event_id": "e1", "colour": 1}'
    letter = letter_for(data)
    assert letter.reason == "invalid"
    assert "unknown field 'colour'" in letter.error
    assert letter.event_id == "e1"
    assert letter.original == data
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "cx.touchpoints", 2, 41)


def test_received_at_is_utc_milliseconds_z() -> None:
    moment = datetime(2026, 11, 22, 18, 10, 9, 123999, tzinfo=timezone(timedelta(hours=1)))
    letter = DeadLetter.make("late", "31 h late", original=b"{}", source_topic="t",
                             source_partition=0, source_offset=0, received_at=moment)
    assert letter.to_dict()["received_at"] == "2026-11-22T17:10:09.123Z"


def test_naive_received_at_is_refused() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        DeadLetter.make("late", "x", original=b"", source_topic="t", source_partition=0,
                        source_offset=0, received_at=datetime(2026, 1, 1))


@given(st.binary(max_size=200), st.sampled_from(["not_utf8", "invalid", "late"]),
       st.text(max_size=50), st.integers(0, 2**31), st.integers(0, 2**62),
       st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1)))
def test_round_trip_through_json(original: bytes, reason: str, error: str, partition: int,
                                 offset: int, received: datetime) -> None:
    letter = DeadLetter.make(reason, error, original=original, source_topic="cx.touchpoints",
                             source_partition=partition, source_offset=offset,
                             event_id="e", received_at=received)
    again = DeadLetter.from_json(letter.to_json())
    assert again == letter
    assert again.original == original
    assert json.loads(letter.to_json()) == letter.to_dict()


def test_non_utf8_original_is_kept_byte_for_byte() -> None:
    data = b'{"customer_id": "c\xfc"}'
    letter = letter_for(data)
    assert letter.reason == "not_utf8"
    assert DeadLetter.from_json(letter.to_json()).original == data


@pytest.mark.parametrize(("change", "message"), [
    ({"source_offset": "7"}, "source_offset must be an integer"),
    ({"original_b64": "***"}, "dead letter"),
    ({"received_at": "yesterday"}, "dead letter"),
    ({"reason": None}, "reason must be a string"),
])
def test_malformed_dead_letters_are_refused(change: dict[str, object], message: str) -> None:
    data = letter_for(b"[]").to_dict() | change
    with pytest.raises(ValueError, match=message):
        DeadLetter.from_dict(data)
    with pytest.raises(ValueError, match="missing field"):
        DeadLetter.from_dict({"reason": "x"})
