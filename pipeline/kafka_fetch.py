"""How full a fetch the broker may wait for before it answers one of our consumers.

aiokafka asks by default for `fetch_min_bytes=1`: the broker answers a fetch as soon as any
assigned partition has a record. Under load every answer then holds what arrived since the
last one, and each costs a request the broker handles and a response the client decodes in
Python, partition header by partition header. A reader that batches anyway asks for a fuller
fetch: at least `min_bytes`, or whatever is there after `max_wait_ms`. The wait is half the
reader's own batch interval, so at a low rate a record waits at most that much more than it
would in the batch anyway (docs/streaming.md, sixteenth round; the sink since the twelfth).
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The ClickHouse sink: rows wait for its next insert (PEAKEND_SINK_BATCH_SECONDS) anyway.
SINK_FETCH_MIN_BYTES = 256 * 1024
# The entry stage and the worker's agents (PEAKEND_STREAM_BATCH_SECONDS): smaller, because a
# record crosses several of these readers on its way to a journey record (touchpoints, batch
# records, contributions, claims, follow-up inputs).
STREAM_FETCH_MIN_BYTES = 16 * 1024
# aiokafka's own limit on the wait, and its default
MAX_WAIT_MS = 500


class FetchSize(NamedTuple):
    """What a consumer asks the broker for in each fetch."""

    min_bytes: int
    max_wait_ms: int

    def options(self) -> dict[str, Any]:
        """The `AIOKafkaConsumer` arguments.

        >>> FetchSize(65536, 100).options()
        {'fetch_min_bytes': 65536, 'fetch_max_wait_ms': 100}
        """
        return {"fetch_min_bytes": self.min_bytes, "fetch_max_wait_ms": self.max_wait_ms}


# What aiokafka asks for when told nothing.
AIOKAFKA_DEFAULT = FetchSize(1, MAX_WAIT_MS)


def fetch_wait_ms(batch_seconds: float) -> int:
    """How long the broker may hold a fetch: half the reader's batch interval, at most
    aiokafka's default 500 ms, at least 1 ms.

    >>> [fetch_wait_ms(seconds) for seconds in (0.2, 0.5, 1.0, 30, 0.001)]
    [100, 250, 500, 500, 1]
    """
    return max(1, min(MAX_WAIT_MS, round(batch_seconds * 500)))


def fetch_size(min_bytes: int, batch_seconds: float) -> FetchSize:
    """The fetch of a reader that batches every `batch_seconds`.

    >>> fetch_size(STREAM_FETCH_MIN_BYTES, 0.2)
    FetchSize(min_bytes=16384, max_wait_ms=100)
    """
    return FetchSize(min_bytes, fetch_wait_ms(batch_seconds))


def stream_fetch(batch_seconds: float) -> FetchSize:
    """The fetch of the entry stage and the worker's agents (`PEAKEND_STREAM_BATCH_SECONDS`)."""
    return fetch_size(STREAM_FETCH_MIN_BYTES, batch_seconds)


def sink_fetch(batch_seconds: float) -> FetchSize:
    """The fetch of the ClickHouse sink (`PEAKEND_SINK_BATCH_SECONDS`)."""
    return fetch_size(SINK_FETCH_MIN_BYTES, batch_seconds)
