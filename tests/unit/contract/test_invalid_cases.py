"""Every invalid record is rejected with its specific reason and a message naming the rule."""

from __future__ import annotations

import pytest
from contract_corpus import INVALID, VALID, Bad

from pipeline.contract import REASONS, Rejected, parse_event


def test_corpus_is_large_and_names_are_unique() -> None:
    names = [case.name for case in INVALID]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    assert {case.reason for case in INVALID} == set(REASONS)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_record_is_rejected_with_reason_and_message(case: Bad) -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(case.data)
    assert caught.value.reason == case.reason, caught.value.error
    assert case.fragment in caught.value.error, caught.value.error


@pytest.mark.parametrize(("name", "data"), VALID, ids=[name for name, _ in VALID])
def test_valid_record_is_accepted(name: str, data: bytes) -> None:
    parse_event(data)


def test_event_id_is_reported_when_readable() -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(b'{"event_id": "e-9", "schema_version": 1}')
    assert caught.value.event_id == "e-9"
    with pytest.raises(Rejected) as caught:
        parse_event(b'{"event_id": 9}')
    assert caught.value.event_id == ""
    with pytest.raises(Rejected) as caught:
        parse_event(b"not json")
    assert caught.value.event_id == ""


def test_max_bytes_is_configurable() -> None:
    data = VALID[0][1]
    parse_event(data, max_bytes=len(data))
    with pytest.raises(Rejected) as caught:
        parse_event(data, max_bytes=len(data) - 1)
    assert caught.value.reason == "too_large"
    assert "PEAKEND_MAX_EVENT_BYTES" in caught.value.error


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(b'{"event_id": "e", "schema_version": "' + b"9" * 5000 + b'"}')
    assert len(caught.value.error) < 200


def test_unknown_fields_are_all_named() -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(b'{"zeta": 1, "alpha": 2}')
    assert "unknown fields 'alpha', 'zeta'" in caught.value.error
