"""TouchpointProducer: validated, keyed, batched, compressed sends to the input topic.

Invalid events never leave the process: `send` raises `Rejected` before anything is queued.
Delivery failures are never lost either: every send's future is kept until `flush`, which
returns the outcome and raises `DeliveryFailed` listing the records that did not make it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.codec import has_lz4

from pipeline.contract import event_to_json, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.event import TouchpointEvent
from pipeline.settings import Settings

# How many sends may pile up between flushes before settled futures are pruned: keeps memory
# bounded for a caller that streams millions of records and flushes only at the end.
_PRUNE_EVERY = 10_000


def default_compression() -> str:
    """lz4 when the optional `lz4` package is installed (cheaper CPU), else gzip (stdlib)."""
    return "lz4" if has_lz4() else "gzip"


@dataclass(frozen=True)
class DeliveryFailure:
    topic: str
    key: bytes | None
    event_id: str
    error: str
    value: bytes = field(repr=False)


@dataclass(frozen=True)
class Delivery:
    """Outcome of the sends since the previous flush."""

    records: int
    failures: tuple[DeliveryFailure, ...] = ()

    @property
    def delivered(self) -> int:
        return self.records - len(self.failures)

    @property
    def ok(self) -> bool:
        return not self.failures


class DeliveryFailed(Exception):
    def __init__(self, delivery: Delivery) -> None:
        first = delivery.failures[0]
        super().__init__(
            f"{len(delivery.failures)} of {delivery.records} records were not delivered; first: "
            f"event {first.event_id!r} to {first.topic}: {first.error}"
        )
        self.delivery = delivery


@dataclass
class _Pending:
    future: Any
    topic: str
    key: bytes | None
    event_id: str
    value: bytes


class TouchpointProducer:
    """Send touchpoint events to Kafka, keyed by journey (else customer).

    `settings` defaults to the environment (`PEAKEND_*`); keyword arguments override it.
    `kafka_options` go to kafka-python's KafkaProducer as given (after the security options).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap: str | None = None,
        topic: str | None = None,
        dead_letter_topic: str | None = None,
        linger_ms: int = 20,
        batch_size: int = 256 * 1024,
        compression: str | None = None,
        acks: int | str = "all",
        max_event_bytes: int | None = None,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        settings = settings or Settings.from_env()
        self.topic = topic or settings.topic_touchpoints
        self.dead_letter_topic = dead_letter_topic or settings.topic_dead_letters
        self.max_event_bytes = max_event_bytes or settings.max_event_bytes
        options: dict[str, Any] = {
            "bootstrap_servers": (bootstrap or settings.kafka_bootstrap).split(","),
            "acks": acks,
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "compression_type": compression or default_compression(),
            "client_id": "peakend-producer",
            **settings.kafka_client_options(),
            **(kafka_options or {}),
        }
        self._kafka = KafkaProducer(**options)
        self._pending: list[_Pending] = []
        self._failures: list[DeliveryFailure] = []
        self._settled = 0
        self._lock = threading.Lock()
        self._closed = False

    # sending

    def send(self, event: bytes | Mapping[str, Any] | TouchpointEvent) -> TouchpointEvent:
        """Validate and queue one event; raises `Rejected` (nothing sent) when it is invalid.

        Bytes are sent exactly as given, so a record reaches consumers byte for byte; a dict is
        sent as compact JSON; a TouchpointEvent as `event_to_json`.
        """
        if isinstance(event, bytes):
            value = event
        elif isinstance(event, TouchpointEvent):
            value = event_to_json(event)
        else:
            value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        parsed = parse_event(value, max_bytes=self.max_event_bytes)
        self._queue(self.topic, parsed.journey_key.encode(), value, parsed.event_id)
        return parsed

    def send_dead_letter(self, letter: DeadLetter, *, topic: str | None = None) -> None:
        """Queue a dead letter (its JSON); keyed by event_id when known so retries group."""
        key = letter.event_id.encode() if letter.event_id else None
        self._queue(topic or self.dead_letter_topic, key, letter.to_json(), letter.event_id)

    def _queue(self, topic: str, key: bytes | None, value: bytes, event_id: str) -> None:
        if self._closed:
            raise RuntimeError("TouchpointProducer is closed")
        try:
            future = self._kafka.send(topic, value=value, key=key)
        except Exception as exc:  # buffer full past max_block_ms, record too large, closed...
            self._record_failure(_Pending(None, topic, key, event_id, value), exc)
            return
        self._pending.append(_Pending(future, topic, key, event_id, value))
        if len(self._pending) >= _PRUNE_EVERY:
            self._settle(done_only=True)

    # delivery outcomes

    def _record_failure(self, pending: _Pending, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            self._failures.append(DeliveryFailure(pending.topic, pending.key, pending.event_id,
                                                  text, pending.value))
            self._settled += 1

    def _settle(self, *, done_only: bool) -> None:
        still: list[_Pending] = []
        for pending in self._pending:
            future = pending.future
            if not future.is_done:
                if done_only:
                    still.append(pending)
                else:
                    self._record_failure(pending, "not acknowledged before the flush timeout")
            elif future.failed():
                self._record_failure(pending, future.exception)
            else:
                with self._lock:
                    self._settled += 1
        self._pending = still

    def flush(self, timeout: float | None = None, *, raise_on_failure: bool = True) -> Delivery:
        """Wait for every queued record; the outcome since the last flush.

        Raises `DeliveryFailed` (carrying the same `Delivery`) when any record failed, unless
        `raise_on_failure` is False.
        """
        # KafkaTimeoutError: whatever is still pending is reported as a failure just below.
        with contextlib.suppress(Exception):
            self._kafka.flush(timeout=timeout)
        self._settle(done_only=False)
        with self._lock:
            delivery = Delivery(self._settled, tuple(self._failures))
            self._failures = []
            self._settled = 0
        if raise_on_failure and not delivery.ok:
            raise DeliveryFailed(delivery)
        return delivery

    def close(self, timeout: float | None = None, *, raise_on_failure: bool = True) -> Delivery:
        """Flush, then close the connection; the outcome of the final flush."""
        if self._closed:
            return Delivery(0)
        try:
            return self.flush(timeout, raise_on_failure=raise_on_failure)
        finally:
            self._closed = True
            self._kafka.close(timeout=timeout)

    def __enter__(self) -> TouchpointProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Do not mask the caller's exception with a delivery report.
        self.close(raise_on_failure=exc_type is None)
