"""The worker's bus topics keep what no stage has read yet, and nothing else.

The bus topics carry records from one stage of the worker to the next (batch records to stage
one, contributions to the segment stage, follow-up inputs, claims). With a time limit on them,
as Kafka's default of 7 days, a worker stopped for longer lost the records its stages had not
read yet: Faust's consumer moved to the earliest offset left, without a word. So they are
created with no time limit (`BUS_TOPIC_CONFIGS`), and, as Kafka Streams does with its
repartition topics, the worker deletes (Kafka's DeleteRecords) what its consumer group has
committed: those records are applied, their outputs delivered and their state written
(pipeline/stream/agent_loop.py), and no stage reads below its group's committed offset. A bus
topic then holds about the group's lag, where it held 7 days of every event.

A bus topic another group reads too is deleted below the lowest offset of its readers: the
ClickHouse sink reads `<app>-journey-events` for `touchpoint_events`, and a purge by stage one's
offsets alone deleted what the sink had not inserted while ClickHouse was away (60 s outage,
`python -m bench.faults --only clickhouse`, 2026-12-06: the sink counted the records as expired,
`peakend_sink_records_expired_total`, and their events never reached `touchpoint_events`). A
partition a reader has never committed is not purged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kafka.structs import TopicPartition

# The configs a bus topic is created with (pipeline/stream/topics.py): no time or size limit.
BUS_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}


class PurgeAdmin(Protocol):
    """What the purger uses of kafka-python's `KafkaAdminClient`."""

    def list_group_offsets(self, group_specs: Any) -> Mapping[str, Mapping[TopicPartition, Any]]:
        ...

    def delete_records(self, records_to_delete: Mapping[TopicPartition, int]) -> Any: ...

    def close(self) -> None: ...


class BusPurger:
    """Deletes the records of `topics` below the offsets `group_id` committed (`purge`), and
    below those of `other_readers` (group -> the topics among `topics` it reads too).

    Blocking (kafka-python): the worker calls it in a thread, on the group's leader only."""

    def __init__(self, connect: Callable[[], PurgeAdmin], group_id: str,
                 topics: Iterable[str],
                 other_readers: Mapping[str, Iterable[str]] | None = None) -> None:
        self.connect = connect
        self.group_id = group_id
        self.topics = frozenset(topics)
        self.other_readers = {group: frozenset(read) & self.topics
                              for group, read in (other_readers or {}).items()
                              if group != group_id and frozenset(read) & self.topics}
        self._admin: PurgeAdmin | None = None
        self._purged: dict[TopicPartition, int] = {}  # the offset each partition starts at now
        self._stopped = False

    def purge(self) -> int:
        """Delete below each committed offset that moved since the last call; returns the
        number of records deleted by this call (the first call counts from offset 0 or its
        partition's last purge by another leader, which it cannot know: an upper bound).
        Raises what the admin client raises; the next call connects again. After `stop`:
        nothing (a timer that fires during the shutdown does not connect again)."""
        if self._stopped:
            return 0
        try:
            admin = self._admin = self._admin or self.connect()
            floors = {tp: offset for tp, offset in committed(admin, self.group_id).items()
                      if tp.topic in self.topics}
            for group, read in self.other_readers.items():
                theirs = committed(admin, group)
                for tp in [tp for tp in floors if tp.topic in read]:
                    if tp in theirs:
                        floors[tp] = min(floors[tp], theirs[tp])
                    else:  # nothing committed by this reader yet: nothing is safe to delete
                        del floors[tp]
            moved = {tp: offset for tp, offset in floors.items()
                     if offset > self._purged.get(tp, 0)}
            if moved:
                admin.delete_records(moved)
        except Exception:
            self.close()
            raise
        deleted = sum(offset - self._purged.get(tp, 0) for tp, offset in moved.items())
        self._purged.update(moved)
        return deleted

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()

    def stop(self) -> None:
        """The worker's shutdown: the admin client's connections closed, no purge after."""
        self._stopped = True
        self.close()


def committed(admin: PurgeAdmin, group: str) -> dict[TopicPartition, int]:
    """The offsets `group` committed (one group per request: brokers before Kafka 3.0 answer
    only one group per OffsetFetch)."""
    return {tp: int(meta.offset)
            for tp, meta in admin.list_group_offsets({group: None}).get(group, {}).items()
            if int(meta.offset) >= 0}
