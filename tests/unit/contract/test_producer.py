"""TouchpointProducer and `peakend produce` against a fake KafkaProducer (the real broker is in
tests/integration/test_contract_kafka.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_corpus import BASE, INVALID, VALID, event
from fake_kafka import FakeKafkaProducer

from pipeline import producer as producer_module
from pipeline.cli import main
from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.producer import DeliveryFailed, TouchpointProducer
from pipeline.settings import Settings


@pytest.fixture(autouse=True)
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeKafkaProducer]]:
    FakeKafkaProducer.instances = []
    FakeKafkaProducer.fail_keys = set()
    monkeypatch.setattr(producer_module, "KafkaProducer", FakeKafkaProducer)
    yield FakeKafkaProducer


def kafka() -> FakeKafkaProducer:
    return FakeKafkaProducer.instances[-1]


def test_bytes_are_sent_unchanged_and_keyed_by_journey_else_customer() -> None:
    with TouchpointProducer(Settings()) as producer:
        with_journey = json.dumps(event(journey_id="j-1")).encode()
        producer.send(with_journey)
        producer.send(json.dumps(BASE).encode())
    assert kafka().sent == [
        ("cx.touchpoints", b"j-1", with_journey),
        ("cx.touchpoints", b"cust-42", json.dumps(BASE).encode()),
    ]
    assert kafka().closed


def test_dicts_and_events_are_sent_as_compact_json() -> None:
    producer = TouchpointProducer(Settings(), topic="t")
    producer.send(BASE)
    producer.send(parse_event(json.dumps(BASE).encode()))
    producer.close()
    first, second = (value for _, _, value in kafka().sent)
    assert first == json.dumps(BASE, separators=(",", ":")).encode()
    assert parse_event(second) == parse_event(first)


def test_invalid_events_raise_and_are_never_sent() -> None:
    producer = TouchpointProducer(Settings())
    for case in INVALID:
        with pytest.raises(Rejected) as caught:
            producer.send(case.data)
        assert caught.value.reason == case.reason
    assert producer.flush().records == 0
    assert kafka().sent == []


def test_options_batching_compression_and_security_pass_through() -> None:
    settings = Settings(kafka_bootstrap="a:1,b:2", kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="u",
                        kafka_sasl_password="p", kafka_ssl_cafile="/ca.pem")
    TouchpointProducer(settings, linger_ms=5, batch_size=1000, compression="gzip")
    options = kafka().options
    assert options["bootstrap_servers"] == ["a:1", "b:2"]
    assert (options["linger_ms"], options["batch_size"]) == (5, 1000)
    assert options["compression_type"] == "gzip"
    assert options["acks"] == "all"
    for name, value in settings.kafka_client_options().items():
        assert options[name] == value
    TouchpointProducer(settings, bootstrap="c:3")
    assert kafka().options["bootstrap_servers"] == ["c:3"]
    assert kafka().options["compression_type"] in {"lz4", "gzip"}


def test_delivery_failures_are_reported_by_flush() -> None:
    FakeKafkaProducer.fail_keys = {b"cust-bad"}
    producer = TouchpointProducer(Settings())
    producer.send(BASE)
    producer.send(event(customer_id="cust-bad", event_id="lost-1"))
    with pytest.raises(DeliveryFailed) as caught:
        producer.flush()
    delivery = caught.value.delivery
    assert (delivery.records, delivery.delivered) == (2, 1)
    assert delivery.failures[0].event_id == "lost-1"
    assert "NotLeaderForPartitionError" in str(caught.value)
    assert producer.flush().records == 0  # reported once


def test_close_raises_on_failure_unless_the_block_already_failed() -> None:
    FakeKafkaProducer.fail_keys = {b"cust-42"}
    with pytest.raises(DeliveryFailed), TouchpointProducer(Settings()) as producer:
        producer.send(BASE)
    with pytest.raises(KeyError), TouchpointProducer(Settings()) as producer:
        producer.send(BASE)
        raise KeyError("the caller's own error wins")


def test_send_after_close_is_refused() -> None:
    producer = TouchpointProducer(Settings())
    producer.close()
    with pytest.raises(RuntimeError, match="closed"):
        producer.send(BASE)


def mixed_file(tmp_path: Path) -> tuple[Path, int, int]:
    good = [data for _, data in VALID if b"\n" not in data]
    bad = [case.data for case in INVALID if b"\n" not in case.data and case.data.strip()]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(good + bad) + b"\n")
    return path, len(good), len(bad)


def test_produce_cli_with_dead_letters_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, good, bad = mixed_file(tmp_path)
    code = main(["produce", str(path), "--dead-letters", "--bootstrap", "k:9092",
                 "--topic", "in", "--dead-letter-topic", "dlq"])
    assert code == 1
    sent = kafka().sent
    assert sum(topic == "in" for topic, _, _ in sent) == good
    letters = [DeadLetter.from_json(value) for topic, _, value in sent if topic == "dlq"]
    assert len(letters) == bad
    lines = path.read_bytes().split(b"\n")
    assert all(lines[x.source_offset - 1] == x.original for x in letters)
    out = capsys.readouterr().out
    assert f"sent {good} to in, rejected {bad} (" in out
    assert f"dead letters {bad} to dlq, failed deliveries 0" in out


def test_produce_cli_clean_file_exits_zero(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.jsonl"
    path.write_bytes(b"\n".join(data for _, data in VALID[:4]))
    assert main(["produce", str(path)]) == 0
    assert "sent 4 to cx.touchpoints, rejected 0, failed deliveries 0" in capsys.readouterr().out


def test_produce_cli_reports_delivery_failures(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    FakeKafkaProducer.fail_keys = {b"cust-42"}
    path = tmp_path / "one.jsonl"
    path.write_bytes(json.dumps(BASE).encode())
    assert main(["produce", str(path)]) == 1
    captured = capsys.readouterr()
    assert "sent 0 to cx.touchpoints, rejected 0, failed deliveries 1" in captured.out
    assert "delivery failed: event 'ivr-000123'" in captured.err
