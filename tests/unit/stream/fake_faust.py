"""Stand-ins for what the worker's agents read of Faust (events, messages, a stream, the app's
group state, a topic's `send_soon`), so the agents run in tests without a broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple


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
