"""Stand-ins for what the worker's agents read of Faust (events, messages, a stream, the app's
group state, a topic's `send_soon`), so the agents run in tests without a broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from faust.streams import current_event


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1
    acked: bool = False

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(eq=False)
class Event:
    """A Faust event: its value and the message it came in."""

    value: bytes
    message: Message


@dataclass
class Group:
    """The app's consumer-group state (`faust.App.rebalancing_count`, `consumer_generation_id`)."""

    rebalancing_count: int = 0
    consumer_generation_id: int = 1


@dataclass
class Stream:
    """`Stream.noack_take` over fixed batches; `ack` marks the message acked and logs it."""

    batches: list[list[Event]]
    acked: list[Event] = field(default_factory=list)
    taken: list[tuple[int, float]] = field(default_factory=list)

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Event]]:
        self.taken.append((max_, within))
        for batch in self.batches:
            yield batch

    async def ack(self, event: Event) -> bool:
        event.message.acked = True
        self.acked.append(event)
        return True


@dataclass
class SentSoon:
    """A topic whose `send_soon` calls are recorded."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def send_soon(self, *, key: Any, value: Any, partition: int | None = None) -> None:
        self.sent.append({"key": key, "value": value, "partition": partition})


class Offsets:
    """Events with consecutive offsets per partition of one topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.next: dict[int, int] = {}

    def event(self, value: bytes, partition: int, generation: int = 1) -> Event:
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        return Event(value, Message(self.topic, partition, offset, generation))


class PartitionedTable(MutableMapping[str, Any]):
    """A state table kept as Faust's RocksDB store keeps it: one database per partition, chosen
    by the partition of Faust's current event (so a write outside an event fails, as in Faust),
    and `items()` over every partition's database (a key such as stage one's watermark exists
    once per partition). `writes` counts the sets and deletes of each (partition, key)."""

    def __init__(self) -> None:
        self.dbs: dict[int, dict[str, Any]] = {}
        self.writes: Counter[tuple[int, str]] = Counter()

    def _partition(self) -> int:
        event = current_event()
        assert event is not None, "Faust routes a table write by the current event"
        return int(event.message.partition)

    def __getitem__(self, key: str) -> Any:
        return self.dbs.get(self._partition(), {})[key]

    def __setitem__(self, key: str, value: Any) -> None:
        partition = self._partition()
        self.writes[(partition, key)] += 1
        self.dbs.setdefault(partition, {})[key] = value

    def __delitem__(self, key: str) -> None:
        partition = self._partition()
        self.writes[(partition, key)] += 1
        del self.dbs.get(partition, {})[key]

    def pop(self, key: str, default: Any = None) -> Any:
        partition = self._partition()
        self.writes[(partition, key)] += 1
        return self.dbs.get(partition, {}).pop(key, default)

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [pair for db in self.dbs.values() for pair in db.items()]

    def __iter__(self) -> Iterator[str]:
        return (key for db in self.dbs.values() for key in db)

    def __len__(self) -> int:
        return sum(len(db) for db in self.dbs.values())
