"""Reading a topic whose retention may delete records before a reader gets to them.

A consumer with `auto_offset_reset="earliest"` moves to the log's start without a word when
its committed offset is no longer in the log: records deleted unread look like records never
sent. Our readers of topics they do not own (the entry stage: the producers' touchpoints; the
sink: the output topics, whose retention our users choose) consume with `"none"` and call
`read_or_reset` instead of `getmany`: a group's first read of a partition starts at its
beginning, as "earliest" would; an offset below the log's start is counted (`expired`) and
logged with its offsets, then reading goes on at the log's start; an offset beyond the log's
end (the topic deleted and made again) is logged, then reading goes on at its start.
aiokafka raises these only from a call that returned no records, so nothing read is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


async def read_or_reset(consumer: Any, timeout_ms: int, max_records: int | None, *,
                        reader: str, counter: str,
                        expired: Callable[[Any, int], None],
                        moved: Callable[[Any, int], None] | None = None
                        ) -> dict[Any, list[Any]]:
    """`consumer.getmany(timeout_ms, max_records)`, or {} after moving the partitions without
    a valid offset (module docstring). `reader` names the reader in the log line, `counter`
    the metric `expired(topic_partition, records)` counts in. `moved(topic_partition,
    offset)` is told where each partition out of range reads on: nothing below that offset can
    be read any more, so the reader commits it once what it holds has landed (else, with no
    new record on the partition, its committed offset stays below the log's start, and every
    tool that reads committed offsets, `peakend lag` and Kafka's own included, shows the
    deleted records as lag that never clears)."""
    from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

    try:
        data: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=timeout_ms,
                                                            max_records=max_records)
        return data
    except NoOffsetForPartitionError as exc:
        await consumer.seek_to_beginning(*exc.args)
    except OffsetOutOfRangeError as exc:
        out_of_range = exc.args[0]
        # every partition's bounds in one request each (a topic deleted and made again puts
        # all of its partitions here at once)
        starts = await consumer.beginning_offsets(list(out_of_range))
        ends = await consumer.end_offsets(list(out_of_range))
        for tp, offset in out_of_range.items():
            start, end = starts[tp], ends[tp]
            if offset < start:
                expired(tp, start - offset)
                log.warning("%s: %d records of %s partition %d (offsets %d to %d) were deleted "
                            "before they were read (the topic's retention): counted in %s; "
                            "reading on at offset %d", reader, start - offset, tp.topic,
                            tp.partition, offset, start - 1, counter, start)
            else:
                log.warning("%s: offset %d of %s partition %d is beyond its end (%d): the log "
                            "was truncated or the topic made again; reading on at its start "
                            "(%d)", reader, offset, tp.topic, tp.partition, end, start)
            consumer.seek(tp, start)
            if moved is not None:
                moved(tp, start)
    return {}
