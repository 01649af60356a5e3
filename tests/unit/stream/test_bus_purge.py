"""`BusPurger` without a broker: what it deletes, and what it never touches."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.bus_purge import BUS_TOPIC_CONFIGS, BusPurger
from pipeline.stream.topics import (
    bus_topics,
    changelog_topics,
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    internal_topics,
    journey_events_topic,
)
from pipeline.stream.worker import WorkerTasks


class FakeAdmin:
    """`committed`: the purger's own group's offsets; `others`: other groups' (-1: a partition
    the broker lists with no offset committed)."""

    def __init__(self, committed: dict[TopicPartition, int], fail: bool = False,
                 others: dict[str, dict[TopicPartition, int]] | None = None) -> None:
        self.committed = committed
        self.others = others or {}
        self.fail = fail
        self.deleted: list[dict[TopicPartition, int]] = []
        self.closed = False

    def list_group_offsets(self, group_specs: Any) -> dict[str, dict[TopicPartition, Any]]:
        if self.fail:
            raise ConnectionError("broker away")
        (group,) = group_specs  # one group per request (brokers before Kafka 3.0)
        offsets = self.others.get(group, {}) if group in self.others else self.committed
        return {group: {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}}

    def delete_records(self, records_to_delete: Mapping[TopicPartition, int]) -> None:
        self.deleted.append(dict(records_to_delete))

    def close(self) -> None:
        self.closed = True


def test_only_the_bus_topics_are_purged_and_only_forward() -> None:
    bus, other = TopicPartition("bus", 0), TopicPartition("entry-input", 0)
    admin = FakeAdmin({bus: 10, TopicPartition("bus", 1): 0, other: 50})
    purger = BusPurger(lambda: admin, "app", ["bus"])
    assert purger.purge() == 10
    # the group's committed offsets of other topics (the touchpoints topic of a user's own
    # consumer in this group, say) are never purged; offset 0 is nothing to delete
    assert admin.deleted == [{bus: 10}]
    assert purger.purge() == 0 and len(admin.deleted) == 1  # nothing moved: no request
    admin.committed[bus] = 25
    assert purger.purge() == 15 and admin.deleted[-1] == {bus: 25}
    admin.committed[bus] = 20  # a committed offset that went back (reset by an operator)
    assert purger.purge() == 0 and admin.deleted[-1] == {bus: 25}


def test_a_topic_another_group_reads_is_purged_below_the_lowest_reader() -> None:
    """The sink reads the journey events too: nothing it has not committed is deleted (a
    ClickHouse outage once lost touchpoint_events rows to a purge by stage one's offsets)."""
    events = [TopicPartition("events", p) for p in range(3)]
    claims = TopicPartition("claims", 0)
    admin = FakeAdmin({events[0]: 40, events[1]: 40, events[2]: 40, claims: 9},
                      others={"sink": {events[0]: 15, events[1]: 60, events[2]: -1},
                              "entry": {TopicPartition("touchpoints", 0): 99}})
    purger = BusPurger(lambda: admin, "app", ["events", "claims"],
                       other_readers={"sink": ["events", "journeys"], "entry": ["touchpoints"],
                                      "app": ["events", "claims"]})
    assert purger.other_readers == {"sink": frozenset({"events"})}  # readers of our topics only
    assert purger.purge() == 15 + 40 + 9
    # the sink's lower offset on 0, ours on 1, nothing on 2, which the sink never committed
    assert admin.deleted == [{events[0]: 15, events[1]: 40, claims: 9}]
    admin.others["sink"][events[0]] = 35
    admin.others["sink"][events[2]] = 5
    assert purger.purge() == 20 + 5
    assert admin.deleted[-1] == {events[0]: 35, events[2]: 5}


def test_a_failure_raises_and_the_next_purge_connects_again() -> None:
    admins = [FakeAdmin({}, fail=True), FakeAdmin({TopicPartition("bus", 2): 7})]
    made: list[FakeAdmin] = []

    def connect() -> FakeAdmin:
        made.append(admins[len(made)])
        return made[-1]

    purger = BusPurger(connect, "app", ["bus"])
    with pytest.raises(ConnectionError):
        purger.purge()
    assert admins[0].closed
    assert purger.purge() == 7 and len(made) == 2


def test_the_bus_topics_are_the_internal_topics_that_are_not_changelogs() -> None:
    s = Settings.from_env({})
    assert set(bus_topics(s)) == {journey_events_topic(s), contributions_topic(s),
                                  followup_inputs_topic(s), claims_topic(s)}
    assert set(bus_topics(s)) | changelog_topics(s) == set(internal_topics(s))
    assert s.topic_touchpoints not in bus_topics(s)  # the input is the producers', never purged
    assert BUS_TOPIC_CONFIGS["retention.ms"] == "-1"


def test_the_worker_counts_purges_and_failures_and_goes_on() -> None:
    stats = WorkerMetrics.create()
    admin = FakeAdmin({TopicPartition("bus", 0): 40})
    tasks: Any = SimpleNamespace(stats=stats, bus_purger=BusPurger(lambda: admin, "app", ["bus"]))
    asyncio.run(WorkerTasks.purge_bus(tasks))
    admin.fail = True
    asyncio.run(WorkerTasks.purge_bus(tasks))  # logged and counted, not raised
    sample = stats.registry.get_sample_value
    assert sample("peakend_bus_purges_total", {"outcome": "ok"}) == 1
    assert sample("peakend_bus_purges_total", {"outcome": "failed"}) == 1
    assert sample("peakend_bus_records_purged_total") == 40


def test_the_shutdown_closes_the_admin_client_and_no_purge_connects_after_it() -> None:
    admin = FakeAdmin({TopicPartition("bus", 0): 5})
    made: list[FakeAdmin] = []

    def connect() -> FakeAdmin:
        made.append(admin)
        return admin

    purger = BusPurger(connect, "app", ["bus"])
    assert purger.purge() == 5
    outputs = SimpleNamespace(stop=lambda: asyncio.sleep(0))
    tasks: Any = SimpleNamespace(outputs=outputs, state=None, bus_purger=purger)
    asyncio.run(WorkerTasks.deliver_before_shutdown(tasks, None))
    assert admin.closed
    admin.committed[TopicPartition("bus", 0)] = 9
    assert purger.purge() == 0  # a timer firing during the shutdown
    assert len(made) == 1 and admin.deleted == [{TopicPartition("bus", 0): 5}]
