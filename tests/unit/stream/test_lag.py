"""The lag the benchmarks wait on (`wait_caught_up`) and the worker reports covers every topic
the pipeline's consumer groups read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app import create_app
from pipeline.settings import Settings
from pipeline.stream.lag import consumer_groups


def test_every_agent_topic_is_in_its_consumer_group(tmp_path: Path) -> None:
    # every agent in one app; stage two apart: tests/unit/stream/test_stage_two.py
    settings = Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path), "PEAKEND_APP_ID": "lagged",
                                  "PEAKEND_STAGE_TWO_PROCESS": "false"})
    app: Any = create_app(settings, migrate=False)
    read = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    assert len(read) == 4  # journey events, contributions, follow-up inputs, claims
    assert set(consumer_groups(settings)[settings.app_id]) == read
    assert consumer_groups(settings)["lagged-entry"] == [settings.topic_touchpoints]


class _Offset:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Admin:
    def __init__(self, committed: dict[str, dict[Any, _Offset]]) -> None:
        self.committed = committed

    def list_group_offsets(self, group: str) -> dict[str, dict[Any, _Offset]]:
        return {group: self.committed.get(group, {})}


class _Consumer:
    def __init__(self, partitions: dict[str, set[int]], ends: dict[Any, int]) -> None:
        self.parts = partitions
        self.ends = ends
        self.end_calls: list[list[Any]] = []

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.parts.get(topic)

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.end_calls.append(list(tps))
        return {tp: self.ends[tp] for tp in tps}


def test_a_reading_asks_every_topics_ends_at_once_and_counts_what_each_group_has_left() -> None:
    """One ListOffsets request for all topics (the reader runs four times a second beside the
    pipeline it measures); a partition without a committed offset (or -1) counts from 0; a
    topic not created yet reads 0 and is asked again."""
    from kafka import TopicPartition

    from pipeline.stream.lag import LagReader

    tp = TopicPartition
    reader = LagReader.__new__(LagReader)
    reader.groups = {"g": ["a", "b"], "g-sink": ["b", "later"]}
    reader.partitions = {}
    reader.admin = _Admin({"g": {tp("a", 0): _Offset(5), tp("a", 1): _Offset(-1)},
                           "g-sink": {tp("b", 0): _Offset(2)}})
    consumer = _Consumer({"a": {0, 1}, "b": {0}},
                         {tp("a", 0): 7, tp("a", 1): 3, tp("b", 0): 4})
    reader.consumer = consumer
    assert reader.read() == {"g/a": 2 + 3, "g/b": 4, "g-sink/b": 2, "g-sink/later": 0}
    assert len(consumer.end_calls) == 1
    assert sorted(consumer.end_calls[0]) == [tp("a", 0), tp("a", 1), tp("b", 0)]
    consumer.parts["later"] = {0}
    consumer.ends[tp("later", 0)] = 9
    assert reader.read()["g-sink/later"] == 9
    assert len(consumer.end_calls) == 2
