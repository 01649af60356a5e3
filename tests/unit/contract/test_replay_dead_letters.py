from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_corpus import BASE, event
from fake_kafka import FakeKafkaProducer

from pipeline import producer as producer_module
from pipeline.cli import main
from pipeline.contract.dead_letters import DeadLetter


@pytest.fixture(autouse=True)
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FakeKafkaProducer.instances = []
    FakeKafkaProducer.fail_keys = set()
    monkeypatch.setattr(producer_module, "KafkaProducer", FakeKafkaProducer)
    yield


def letter(reason: str, original: bytes, offset: int) -> bytes:
    return DeadLetter.make(reason, "was wrong", original=original, source_topic="cx.touchpoints",
                           source_partition=0, source_offset=offset).to_json()


@pytest.fixture
def dead_letters(tmp_path: Path) -> Path:
    fixed = json.dumps(event(event_id="fixed-1")).encode()  # valid now (e.g. limit raised)
    late = json.dumps(event(event_id="late-1")).encode()
    path = tmp_path / "dead_letters.jsonl"
    path.write_bytes(b"\n".join([
        letter("too_large", fixed, 1),
        letter("invalid", b'{"event_id": "still-bad"}', 2),
        letter("late", late, 3),
        b'{"not": "a dead letter"}',
    ]) + b"\n")
    return path


def test_replays_what_now_passes_and_skips_late_by_default(
    dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay-dead-letters", "--file", str(dead_letters), "--topic", "in"]) == 1
    sent = FakeKafkaProducer.instances[-1].sent
    assert [(t, k) for t, k, _ in sent] == [("in", b"cust-42")]
    assert json.loads(sent[0][2])["event_id"] == "fixed-1"
    out = capsys.readouterr()
    assert ("read 4 dead letters: replayed 1, still rejected 1 (invalid 1), skipped by reason 1, "
            "malformed 1, failed deliveries 0") in out.out
    assert "malformed dead letter #4" in out.err


def test_reason_filter_and_dry_run(dead_letters: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay-dead-letters", "--file", str(dead_letters), "--reason", "late", "--dry-run"])
    assert FakeKafkaProducer.instances[-1].sent == []
    assert "replayed 1, still rejected 0, skipped by reason 2" in capsys.readouterr().out


def test_original_bytes_are_resent_unchanged(tmp_path: Path) -> None:
    original = b'{ "event_id" : "x-1",' + json.dumps(BASE).encode()[1:].replace(
        b'"event_id": "ivr-000123", ', b"")
    path = tmp_path / "dl.jsonl"
    path.write_bytes(letter("invalid", original, 9))
    assert main(["replay-dead-letters", "--file", str(path)]) == 0
    assert FakeKafkaProducer.instances[-1].sent[0][2] == original
