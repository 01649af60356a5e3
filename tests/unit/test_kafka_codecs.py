"""pipeline.kafka_codecs: both Kafka clients we read with decode every codec a producer may
use, and a command that reads Kafka refuses to start (one line, exit 2) when one cannot."""

from __future__ import annotations

import gzip
import importlib

import pytest

from pipeline import cli, kafka_codecs
from pipeline.kafka_codecs import CODECS, KAFKA_READERS, READERS, Reader, codec_problems


def test_the_installed_clients_decode_every_codec() -> None:
    assert codec_problems() == []


@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd"])
def test_aiokafka_decodes_what_it_encodes_with_each_codec(codec: str) -> None:
    # the codecs' own round trip, as the entry stage and the sink meet them in record batches
    from aiokafka import codec as aio

    data = b'{"event_id":"e1","type":"web_visit"}\n' * 200
    encode = getattr(aio, f"{codec}_encode")
    decode = getattr(aio, f"{codec}_decode")
    packed = encode(data)
    assert packed != data and len(packed) < len(data)
    assert decode(packed) == data


def test_a_client_without_a_codec_gets_one_line_naming_it_and_what_to_install() -> None:
    partial = Reader("aiokafka", lambda codec: codec == "gzip", "aiokafka[lz4,snappy,zstd]")
    assert codec_problems((partial, READERS[1])) == [
        "aiokafka cannot read Kafka records compressed with snappy, lz4, zstd (producers may "
        "send them): pip install 'aiokafka[lz4,snappy,zstd]'"]
    assert gzip.decompress(gzip.compress(b"x")) == b"x"  # gzip: the standard library's


def test_the_commands_checked_are_commands_that_exist() -> None:
    assert KAFKA_READERS.issubset(cli.COMMANDS)
    assert set(CODECS) == {"gzip", "snappy", "lz4", "zstd"}


@pytest.mark.parametrize("command", sorted(KAFKA_READERS))
def test_a_kafka_reader_refuses_to_start_without_a_codec(
        command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "codec_problems", lambda: ["aiokafka cannot read lz4"])

    def run(args: object) -> int:
        raise AssertionError("started")
    monkeypatch.setattr(importlib.import_module(cli.COMMANDS[command][0]), "run", run)
    required = {"followups": ["--webhook", "http://127.0.0.1:9/cases"]}
    assert cli.main([command, *required.get(command, [])]) == 2
    assert capsys.readouterr().err == f"peakend {command}: aiokafka cannot read lz4\n"


def test_other_commands_do_not_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> list[str]:
        raise AssertionError("asked")
    monkeypatch.setattr(cli, "codec_problems", fail)
    assert cli.main(["settings"]) == 0
    assert kafka_codecs.KAFKA_READERS.isdisjoint({"settings", "replay", "validate"})
