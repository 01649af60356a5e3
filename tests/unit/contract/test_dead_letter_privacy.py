"""Dead letters without raw personal data when pseudonymisation is on (issue 21, docs/privacy.md):
the sealed letter keeps reason, error, offsets, digest and a redacted copy; the original is
encrypted with the operators' key or dropped; `peakend replay-dead-letters` re-sends what it can
open and counts the rest."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_corpus import event
from fake_kafka import FakeKafkaProducer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import producer as producer_module
from pipeline.cli import main
from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.privacy import REDACTED, PersonalData

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()
# Personal values drawn from letters that are no hex digit, so a digest or pseudonym (hex)
# cannot contain them by chance.
personal_text = st.from_regex(r"[g-z]{12,24}", fullmatch=True)


def sealed(privacy: PersonalData, original: bytes, offset: int = 7) -> DeadLetter:
    try:
        parse_event(original)
    except Rejected as rejected:
        letter = DeadLetter.from_rejection(rejected, original=original,
                                           source_topic="cx.touchpoints", source_partition=1,
                                           source_offset=offset)
    else:
        letter = DeadLetter.make("late", "late", original=original,
                                 source_topic="cx.touchpoints", source_partition=1,
                                 source_offset=offset)
    return privacy.seal(letter)


def invalid_records(customer: str, comment: str) -> list[bytes]:
    """Records each rejected for another reason, all carrying the personal values."""
    base = event(customer_id=customer, type="survey", survey={"nps": 3, "comment": comment})
    misspelt = {**base, "customerid": customer}
    return [
        json.dumps({**base, "channel": "fax"}).encode(),  # invalid, readable JSON
        json.dumps(misspelt).encode(),  # unknown field holding the id
        json.dumps({**base, "survey": {"nps": 11, "comment": comment}}).encode(),
        json.dumps({**base, "survey": {"nps": 3, "remark": comment}}).encode(),
        json.dumps({**base, "occurred_at": "yesterday"}).encode()[:-1],  # not JSON
        ("\N{LATIN SMALL LETTER E WITH ACUTE}" + customer + comment).encode("latin-1"),
        json.dumps([customer, comment]).encode(),  # not an object
        json.dumps({**base, "event_id": "late-one"}).encode(),  # valid: made a `late` letter
    ]


@settings(max_examples=60, deadline=None)
@given(customer=personal_text, comment=personal_text, encrypt=st.booleans(),
       comments=st.sampled_from(["drop", "pseudonymise"]))
def test_a_sealed_letter_holds_no_customer_id_or_comment(
    customer: str, comment: str, encrypt: bool, comments: str
) -> None:
    privacy = PersonalData(key=b"k", pseudonymise_comments=comments == "pseudonymise",
                           dead_letter_key=base64.urlsafe_b64decode(KEY) if encrypt else b"")
    for offset, original in enumerate(invalid_records(customer, comment)):
        letter = sealed(privacy, original, offset)
        text = letter.to_json().decode()
        assert customer not in text and comment not in text, text
        assert letter.original_form == ("encrypted" if encrypt else "dropped")
        assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
        assert (letter.source_partition, letter.source_offset) == (1, offset)
        if encrypt:
            assert privacy.reveal(letter) == original
        else:
            assert letter.original_b64 == ""
            with pytest.raises(ValueError, match="not kept"):
                privacy.reveal(letter)
        # the JSON survives the topic and the table unchanged
        assert DeadLetter.from_json(letter.to_json()) == letter


def test_the_redacted_copy_keeps_what_the_producer_needs_to_fix() -> None:
    privacy = PersonalData(key=b"k")
    original = json.dumps({**event(customer_id="alice"), "channel": "fax", "colour": "red",
                           "survey": {"nps": 3, "comment": "call me", "mood": "x"}}).encode()
    letter = sealed(privacy, original)
    assert "unknown field 'colour'" in letter.error
    redacted = json.loads(letter.redacted)
    assert redacted["channel"] == "fax"  # the wrong value the error names
    assert redacted["customer_id"] == privacy.pseudonym("alice")
    assert redacted["colour"] == REDACTED  # a field outside the schema: name kept, value not
    assert redacted["survey"] == {"nps": 3, "mood": REDACTED}  # comment dropped
    assert redacted["event_id"] == json.loads(original)["event_id"]


def test_without_a_key_letters_stay_raw_and_replayable() -> None:
    original = b'{"customer_id": "alice", "channel": "fax"}'
    letter = sealed(PersonalData(keep_comments=True), original)
    assert (letter.original_form, letter.original, letter.redacted) == ("raw", original, "")
    assert PersonalData().reveal(letter) == original


def test_ciphertext_opens_only_with_its_key_and_in_its_own_letter() -> None:
    writer = PersonalData(key=b"k", dead_letter_key=base64.urlsafe_b64decode(KEY))
    letter = sealed(writer, b'{"customer_id": "alice"}', offset=5)
    with pytest.raises(ValueError, match="set PEAKEND_DEAD_LETTER_KEY"):
        PersonalData(key=b"k").reveal(letter)
    with pytest.raises(ValueError, match="does not decrypt"):
        PersonalData(key=b"k", dead_letter_key=base64.urlsafe_b64decode(OTHER_KEY)).reveal(letter)
    moved = DeadLetter.from_dict({**letter.to_dict(), "source_offset": 6})
    with pytest.raises(ValueError, match="does not decrypt"):
        writer.reveal(moved)


def test_an_oversized_record_is_bounded_before_it_is_sealed() -> None:
    original = json.dumps(event(customer_id="alice", producer="p" * 900_000)).encode()
    letter = PersonalData(key=b"k", dead_letter_key=base64.urlsafe_b64decode(KEY)).seal(
        DeadLetter.make("too_large", "big", original=original, source_topic="t",
                        source_partition=0, source_offset=1))
    assert len(letter.to_json()) <= 1_000_000
    assert letter.redacted == ""  # no room for it beside the ciphertext
    assert "alice" not in letter.to_json().decode()


def test_letters_written_before_issue_21_still_read_as_raw() -> None:
    old = {"reason": "invalid", "error": "e", "source_topic": "t", "source_partition": 0,
           "source_offset": 1, "received_at": "2026-11-22T17:10:09.123Z", "event_id": "",
           "original_b64": "e30="}
    letter = DeadLetter.from_dict(old)
    assert (letter.original_form, letter.original) == ("raw", b"{}")
    with pytest.raises(ValueError, match="original_form must be one of"):
        DeadLetter.from_dict({**old, "original_form": "zipped"})


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FakeKafkaProducer.instances = []
    FakeKafkaProducer.fail_keys = set()
    monkeypatch.setattr(producer_module, "KafkaProducer", FakeKafkaProducer)
    yield


def test_replay_dead_letters_opens_encrypted_letters_and_counts_dropped_ones(
    fake_kafka: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixable = json.dumps(event(event_id="fixed-1", customer_id="alice")).encode()
    encrypted = PersonalData(key=b"k", dead_letter_key=base64.urlsafe_b64decode(KEY))
    letters = [
        encrypted.seal(DeadLetter.make("too_large", "was big", original=fixable,
                                       source_topic="cx.touchpoints", source_partition=0,
                                       source_offset=1)),
        PersonalData(key=b"k").seal(DeadLetter.make(
            "too_large", "was big", original=fixable, source_topic="cx.touchpoints",
            source_partition=0, source_offset=2)),
    ]
    path = tmp_path / "dead_letters.jsonl"
    path.write_bytes(b"\n".join(letter.to_json() for letter in letters) + b"\n")
    monkeypatch.setenv("PEAKEND_PSEUDONYMISE_KEY", "k")
    monkeypatch.setenv("PEAKEND_DEAD_LETTER_KEY", KEY)
    assert main(["replay-dead-letters", "--file", str(path), "--topic", "in"]) == 1
    sent = FakeKafkaProducer.instances[-1].sent
    assert [value for _, _, value in sent] == [fixable]  # the raw record, byte for byte
    out = capsys.readouterr()
    assert "replayed 1" in out.out and "original not recoverable 1" in out.out
    assert "offset 2): its original was not kept" in out.err


@pytest.mark.parametrize("encrypt", [True, False])
def test_a_letter_made_after_the_entry_stage_opens_to_the_record_as_received(
    encrypt: bool,
) -> None:
    """`late`, `future`, `conflict` and ClickHouse-refused letters are made from what the batch
    records carry (`carry`), never from the raw record: sealed the same way, and replayable."""
    privacy = PersonalData(key=b"k",
                           dead_letter_key=base64.urlsafe_b64decode(KEY) if encrypt else b"")
    raw = json.dumps(event(customer_id="alice", survey={"nps": 1, "comment": "call me"})).encode()
    carried = privacy.carry(raw, "cx.touchpoints", 3, 99)
    assert b"alice" not in carried and b"call me" not in carried
    letter = privacy.seal(DeadLetter.make("late", "late", original=carried,
                                          source_topic="cx.touchpoints", source_partition=3,
                                          source_offset=99))
    assert letter.original_sha256 == hashlib.sha256(raw).hexdigest()
    if encrypt:
        assert (letter.original_form, privacy.reveal(letter)) == ("encrypted", raw)
    else:
        assert (letter.original_form, letter.original_b64) == ("dropped", "")
    assert PersonalData().carry(raw, "cx.touchpoints", 3, 99) == raw  # no key: as received
