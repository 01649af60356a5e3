"""The load generator's producer: the benchmark's events sent as aiokafka record batches.

Why not kafka-python's `KafkaProducer.send` per record, as before: the load generator shares the
machine's 2 cores with the pipeline it measures, and kafka-python spends about 80-120 us of CPU
per record (pure-Python record building), so at 10,000 events/s it alone would need about a core.
Built here, one batch per partition at a time, the same records (key, value, the partition
kafka-python's default partitioner gives a key: murmur2, as `pipeline.core.partitioner`; unkeyed
records round-robin), the same compression (`pipeline.producer.default_compression`) and acks=all
cost about 15 us per record (docs/benchmarks.md reports the generator's CPU apart).

Paced sending (`rate` events/s) sends what is due every `linger_s` (kafka-python's linger of
20 ms), so records leave in about the batches the producer library would make.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.core.partitioner import partition_for
from pipeline.producer import default_compression

MAX_BATCH_BYTES = 256 * 1024  # the producer library's batch_size


async def _partitions_once_created(producer: Any, topic: str) -> set[int]:
    """The topic's partitions, waiting (as aiokafka does, up to its request timeout) for a
    worker that is still creating it: a stream's first send can come before that. aiokafka
    logs an error at every metadata retry meanwhile ("Topic ... not found in cluster
    metadata"), dozens per warm-up; the wait is expected here, so they are held back. A topic
    that never comes still fails, with aiokafka's timeout."""
    cluster_log = logging.getLogger("aiokafka.cluster")
    level = cluster_log.level
    cluster_log.setLevel(logging.CRITICAL)
    try:
        partitions: set[int] = await producer.partitions_for(topic)
    finally:
        cluster_log.setLevel(level)
    return partitions


async def _send(bootstrap: str, topic: str, keys: Sequence[bytes | None],
                values: Sequence[bytes], rate: float, linger_s: float,
                on_send: Callable[[int], None] | None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                compression_type=default_compression(),
                                max_batch_size=MAX_BATCH_BYTES,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        partitions = len(await _partitions_once_created(producer, topic))
        batches: dict[int, Any] = {}
        pending: list[Any] = []
        spread = 0

        async def ship(part: int) -> None:
            pending.append(await producer.send_batch(batches.pop(part), topic, partition=part))

        started = time.perf_counter()
        last_ship = started
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            if rate:
                ahead = started + i / rate - time.perf_counter()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
                if time.perf_counter() - last_ship >= linger_s:
                    for part in list(batches):
                        await ship(part)
                    last_ship = time.perf_counter()
            if on_send is not None:
                on_send(i)
            if key is None:
                part, spread = spread % partitions, spread + 1
            else:
                part = partition_for(key.decode("utf-8", "surrogatepass"), partitions)
            batch = batches.get(part)
            if batch is None:
                batch = batches[part] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await ship(part)
                # let the sender take it now: nothing above yields, so flat out every batch
                # would leave only once all were built and the worker waited meanwhile
                await asyncio.sleep(0)
                batch = batches[part] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"record {i} ({len(value)} bytes) does not fit a batch")
        for part in list(batches):
            await ship(part)
        await asyncio.gather(*pending)  # every batch acknowledged (acks=all)
    finally:
        await producer.stop()


def send_records(bootstrap: str, topic: str, keys: Sequence[bytes | None],
                 values: Sequence[bytes], *, rate: float = 0.0, linger_s: float = 0.02,
                 on_send: Callable[[int], None] | None = None) -> float:
    """Send every record (`rate` events/s, 0: as fast as possible) and wait until the broker
    has acknowledged all of them; returns the seconds that took. `on_send(i)` is called just
    before record i is added (the latency benchmark's probe clock)."""
    started = time.perf_counter()
    asyncio.run(_send(bootstrap, topic, keys, values, rate, linger_s, on_send))
    return time.perf_counter() - started
