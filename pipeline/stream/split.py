"""A list encoded into records of bounded size, each item encoded about once.

Why: the worker gathers many items into one Kafka record (a flush's claims for one claims
partition, a segment's contributions, a journal chunk's entries), and such a record must stay
under a size limit (the broker refuses records over 1 MiB and the delivery would retry one
for ever). Encoding the whole list, and each item again alone when the whole was too large,
was what the worker did: a flush of realistic data holds megabytes of claims per claims
partition, so nearly every item was encoded twice, the second time in a call of its own.
Measured inside the worker during a throughput run (docs/streaming.md, fifteenth round),
those encodings cost several microseconds per event, most of them in the second pass.

Here a list too long for one record is cut by the bytes per item of a sample of its first
items, and a group that still comes out too large is halved until it fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Records that gather items (a segment's contributions, a claims partition's claims, follow-up
# inputs: `{"b": [input, ...]}`) leave one per target and flush, so the agent behind pays
# Faust's per-record cost once per batch, and are split at this size: a flush gathers up to
# 8 MiB of events (PEAKEND_STREAM_BATCH_RECORDS, 16, batch records) and a claim carries its raw
# event, so with one partition and large events one claims record passed the broker's record
# limit (1 MiB at its defaults) and the delivery retried it for ever (docs/streaming.md,
# "State records never grow with the traffic").
MAX_GATHERED_BYTES = 256 * 1024

SAMPLE_ITEMS = 64  # items encoded first to size the groups of a long list
FILL = 0.75  # the share of the limit a group is sized for (items vary in size)


def encoded_groups(items: Sequence[T], max_bytes: int, encode: Callable[[Sequence[T]], bytes],
                   sample: int | None = None) -> list[tuple[Sequence[T], bytes]]:
    """`items` cut into consecutive groups, in order, each with `encode(group)`, which is at
    most `max_bytes` long unless the group is a single item. A short list, or one that fits,
    is one group (a list of more than `sample` items, `SAMPLE_ITEMS` unless given, when its
    first items say it fits); a long list costs one encoding of its first `sample` items more
    than its groups' (and one more per group that had to be halved).

    >>> import json
    >>> enc = lambda g: json.dumps(list(g)).encode()
    >>> [body for _, body in encoded_groups([1, 22, 333], 100, enc)]
    [b'[1, 22, 333]']
    >>> [body for _, body in encoded_groups(list(range(10)), 12, enc, sample=2)]
    [b'[0, 1, 2]', b'[3, 4, 5]', b'[6, 7, 8]', b'[9]']
    """
    n = len(items)
    sample = SAMPLE_ITEMS if sample is None else sample
    per_group = n
    if n > sample:
        sized = len(encode(items[:sample]))
        if sized * n > max_bytes * sample:
            per_group = max(1, int(max_bytes * FILL * sample / max(1, sized)))
    groups: list[tuple[Sequence[T], bytes]] = []
    start = 0
    while start < n:
        group = items[start:start + per_group]
        body = encode(group)
        if len(body) > max_bytes and len(group) > 1:
            per_group = len(group) // 2  # and the later groups as small: items may stay large
            continue
        groups.append((group, body))
        start += len(group)
    return groups
