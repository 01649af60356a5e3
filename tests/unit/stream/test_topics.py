"""pipeline.stream.topics without a broker: which topics hold the worker's placement, and the
partition-count check the worker runs at start (on the broker: test_partition_count.py)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from pipeline.settings import Settings
from pipeline.stream.topics import (
    CLAIMS_STATE_TABLE,
    FOLLOWUP_STATE_TABLE,
    STATE_TABLES,
    PartitionCountMismatch,
    changelog_topic,
    check_partition_counts,
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    followups_topic,
    internal_topics,
    journey_events_topic,
    topic_partitions,
)

SETTINGS = Settings.from_env({"PEAKEND_PARTITIONS": "6", "PEAKEND_APP_ID": "cx-app"})


def test_internal_topics_are_the_placed_ones_and_every_changelog() -> None:
    s = SETTINGS
    placed = {journey_events_topic(s), contributions_topic(s), followup_inputs_topic(s),
              claims_topic(s),
              *(changelog_topic(s, t) for t in (*STATE_TABLES, FOLLOWUP_STATE_TABLE,
                                                CLAIMS_STATE_TABLE))}
    assert set(internal_topics(s)) == placed
    outside = {s.topic_touchpoints, s.topic_dead_letters, s.topic_journeys, s.topic_metrics,
               s.topic_alerts, followups_topic(s)}
    assert placed | outside == set(topic_partitions(s))


def test_the_counts_the_worker_created_pass_and_outside_topics_may_differ() -> None:
    counts = {name: 6 for name in internal_topics(SETTINGS)}
    counts[SETTINGS.topic_touchpoints] = 50
    counts[SETTINGS.topic_journeys] = 1
    check_partition_counts(SETTINGS, counts)
    check_partition_counts(SETTINGS, {})  # nothing exists yet: the worker creates them


@pytest.mark.parametrize("name", internal_topics(SETTINGS))
@pytest.mark.parametrize("have", [3, 12])
def test_any_internal_topic_with_another_count_is_refused_in_one_line(name: str, have: int
                                                                      ) -> None:
    counts = {topic: 6 for topic in internal_topics(SETTINGS)}
    counts[name] = have
    with pytest.raises(PartitionCountMismatch) as raised:
        check_partition_counts(SETTINGS, counts)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"topic {name} has {have} partitions where PEAKEND_PARTITIONS=6 "
                              "wants 6")
    assert f"set PEAKEND_PARTITIONS={have} again" in message


class ConfigAdmin:
    """The describe/alter part of kafka-python 3's admin client, over a dict of topic configs."""

    def __init__(self, configs: dict[str, dict[str, str]], refuse: bool = False) -> None:
        self.configs = configs
        self.refuse = refuse
        self.altered: list[str] = []

    def describe_configs(self, resources: list[Any]) -> dict[str, Any]:
        return {"topic": {r.name: {k: {"value": v} for k, v in self.configs[r.name].items()}
                          for r in resources}}

    def alter_configs(self, resources: list[Any]) -> None:
        if self.refuse:
            raise PermissionError("TopicAuthorizationFailed")
        for r in resources:
            self.configs[r.name].update(r.configs)
            self.altered.append(r.name)


def test_bus_topics_of_an_earlier_version_lose_their_retention_limit_and_keep_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.stream.topics import unlimit_bus_topics

    admin = ConfigAdmin({
        # as kafka-python 3 describes them: only the configs set on the topic
        "old": {"retention.ms": "604800000", "compression.type": "zstd"},
        "older": {},
        "new": {"retention.ms": "-1", "retention.bytes": "-1"}})
    assert unlimit_bus_topics(cast(Any, admin), ["new", "old", "older"]) == ["old", "older"]
    assert admin.configs["old"] == {"retention.ms": "-1", "retention.bytes": "-1",
                                    "compression.type": "zstd"}
    assert admin.configs["older"] == {"retention.ms": "-1", "retention.bytes": "-1"}
    # nothing to change now
    assert unlimit_bus_topics(cast(Any, admin), ["new", "old", "older"]) == []
    refused = ConfigAdmin({"old": {"retention.ms": "86400000", "retention.bytes": "-1"}},
                          refuse=True)
    with caplog.at_level(logging.WARNING):
        assert unlimit_bus_topics(cast(Any, refused), ["old"]) == []  # the worker starts anyway
    assert "kafka-configs.sh --alter" in caplog.text and "TopicAuthorizationFailed" in caplog.text
