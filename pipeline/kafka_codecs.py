"""Every compression codec Kafka has, readable by both Kafka clients we read with.

Why: a producer chooses its record batches' compression, and clients in other languages often
choose lz4, zstd or snappy (librdkafka's and the Java client's users set it, franz-go compresses
by default; a broker's or topic's `compression.type` rewrites every batch). A client without the
codec's library cannot decode such a batch at all: aiokafka raises `UnsupportedCodecError` at
every fetch, so the stage that reads the topic restarted from its committed offset forever and
nothing after the record was read (found with `kafka-console-producer --compression-codec lz4`,
tests/integration/test_compressed_input.py). The libraries are dependencies (pyproject.toml:
aiokafka's and kafka-python's `lz4`, `snappy` and `zstd` extras); this check turns an install
without them into one line at start instead of a stall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

CODECS = ("gzip", "snappy", "lz4", "zstd")

# the commands that read Kafka records (`pipeline.cli` checks before running them)
KAFKA_READERS = frozenset({"worker", "entry", "sink", "followups", "replay-dead-letters"})


class Reader(NamedTuple):
    client: str
    has: Callable[[str], bool]
    install: str  # the extra that brings the codecs


def _aiokafka_has(codec: str) -> bool:
    from aiokafka import codec as aio
    return bool(getattr(aio, f"has_{codec}")())


def _kafka_python_has(codec: str) -> bool:
    from kafka import codec as kp
    return bool(getattr(kp, f"has_{codec}")())


READERS = (
    Reader("aiokafka", _aiokafka_has, "aiokafka[lz4,snappy,zstd]"),
    Reader("kafka-python", _kafka_python_has, "kafka-python[lz4,snappy,zstd]"),
)


def codec_problems(readers: tuple[Reader, ...] = READERS) -> list[str]:
    """One line per client that cannot decode a codec: which codecs, and what to install."""
    problems = []
    for reader in readers:
        missing = [codec for codec in CODECS if not reader.has(codec)]
        if missing:
            problems.append(
                f"{reader.client} cannot read Kafka records compressed with "
                f"{', '.join(missing)} (producers may send them): pip install "
                f"'{reader.install}'")
    return problems
