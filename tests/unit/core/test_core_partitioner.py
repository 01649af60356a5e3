"""The core's Kafka partitioner equals the one of a Kafka client our users run (kafka-python's
`DefaultPartitioner`, itself checked against the Java client's vectors), for any key, in
whichever build of the core runs (the compiled one hashes on machine words)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2

from pipeline.core.partitioner import murmur2, partition_for


@settings(max_examples=3000)
@given(st.binary(max_size=300))
def test_murmur2_equals_kafka_pythons_for_any_bytes(data: bytes) -> None:
    signed = murmur2(data)
    assert -(2 ** 31) <= signed < 2 ** 31
    assert signed & 0xFFFFFFFF == kafka_murmur2(data)


class _Cluster:
    """The two questions kafka-python's partitioner asks its cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@settings(max_examples=1000)
@given(st.text(max_size=120), st.integers(min_value=1, max_value=10_000))
def test_partition_for_equals_kafka_pythons_default_partitioner(key: str, partitions: int
                                                                ) -> None:
    encoded = key.encode("utf-8")
    assert partition_for(key, partitions) == DefaultPartitioner().partition(
        "t", key, encoded, None, None, _Cluster(partitions))


def test_words_with_every_bit_set_do_not_overflow() -> None:
    """The largest 32-bit word times the multiplier is the largest product the hash makes."""
    for length in range(0, 13):
        data = b"\xff" * length
        assert murmur2(data) & 0xFFFFFFFF == kafka_murmur2(data)
