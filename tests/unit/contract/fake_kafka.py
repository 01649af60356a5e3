"""A stand-in for kafka-python's KafkaProducer: records sends, fails the ones it is told to."""

from __future__ import annotations

from typing import Any, ClassVar


class FakeFuture:
    def __init__(self, error: Exception | None, done: bool = True) -> None:
        self.exception = error
        self.is_done = done

    def failed(self) -> bool:
        return self.exception is not None


class FakeKafkaProducer:
    instances: ClassVar[list[FakeKafkaProducer]] = []
    fail_keys: ClassVar[set[bytes]] = set()

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushes = 0
        self.closed = False
        FakeKafkaProducer.instances.append(self)

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> FakeFuture:
        if key in self.fail_keys:
            return FakeFuture(RuntimeError("NotLeaderForPartitionError"))
        self.sent.append((topic, key, value))
        return FakeFuture(None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
