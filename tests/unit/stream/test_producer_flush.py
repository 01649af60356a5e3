"""`PeakendProducer.flush` (pipeline/stream/faust_private.py) drains Faust's buffer: Faust's own
flush can return with messages still in it, and offsets are committed right after a flush."""

from __future__ import annotations

import asyncio
import inspect

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer

from pipeline.stream.faust_private import PeakendProducer, PeakendTransport, flush_until_empty


def test_flush_until_empty_keeps_flushing_while_messages_wait() -> None:
    buffer = [f"changelog-{i}" for i in range(5)]
    calls = 0

    async def flush_one() -> None:  # like Faust's: gives up after one slow send
        nonlocal calls
        calls += 1
        if buffer:
            buffer.pop(0)

    asyncio.run(flush_until_empty(flush_one, lambda: len(buffer)))
    assert buffer == [] and calls == 5


def test_faust_still_gives_up_flushing_after_a_quiet_tenth_of_a_second() -> None:
    """Fails when a Faust release makes its buffer flush a full drain (then this override can
    go) or renames what it relies on."""
    source = inspect.getsource(ProducerBuffer.flush_atmost)
    assert "timeout=0.1" in source and "return flushed_messages" in source
    assert PeakendTransport.Producer is PeakendProducer
    assert PeakendProducer.__mro__[1] is faust_aiokafka.Producer
    assert PeakendProducer.flush is not faust_aiokafka.Producer.flush
    assert isinstance(ProducerBuffer.size, property)
