"""The worker's outbox: what both stages produced since the last flush, coalesced into the Kafka
records to send. No Faust, no I/O: the worker hands the records to its producer
(`pipeline/app.py`), tests read them directly.

Coalescing is what keeps the producer from being the bottleneck: one record per journey (its
latest version), one contributions message per contributions partition and source partition,
one metric record per bucket (its latest partial), instead of one per event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from pipeline.core.followups import CaseRecord, FollowupRules
from pipeline.core.partitioner import partition_for
from pipeline.core.records import MetricRecord
from pipeline.stream import messages
from pipeline.stream.claims import encode_claims
from pipeline.stream.followups import journey_input
from pipeline.stream.partition import StageOneOutput, coalesce
from pipeline.stream.segments import StageTwoOutput
from pipeline.stream.split import MAX_GATHERED_BYTES, encoded_groups

JOURNEYS = "journeys"
CONTRIBUTIONS = "contributions"
METRICS = "metrics"
ALERTS = "alerts"
FOLLOWUP_INPUTS = "followup-inputs"  # internal: stage one -> the follow-up stage, by customer
FOLLOWUPS = "followups"
CLAIMS = "claims"  # internal: stage one -> the claims stage, by event_id (stream/claims.py)


def packed(head: bytes, encoded: list[bytes], max_bytes: int = MAX_GATHERED_BYTES
           ) -> list[bytes]:
    """JSON records `head` + items + `]}` holding the encoded items in order, each record up
    to `max_bytes` (an item larger than that alone in its record).

    >>> packed(b'{"c":[', [b"1", b"22", b"333"], max_bytes=13)
    [b'{"c":[1,22]}', b'{"c":[333]}']
    """
    out: list[bytes] = []
    held: list[bytes] = []
    size = len(head) + 2
    for item in encoded:
        if held and size + len(item) + 1 > max_bytes:
            out.append(head + b",".join(held) + b"]}")
            held, size = [], len(head) + 2
        held.append(item)
        size += len(item) + 1
    if held:
        out.append(head + b",".join(held) + b"]}")
    return out


def gathered(head: bytes, items: list[Any], max_bytes: int = MAX_GATHERED_BYTES) -> list[bytes]:
    """JSON records `head` + items + `]}` holding `items` in order, each record under
    `max_bytes` (an item larger than that alone in its record). orjson encodes a list as its
    items' encodings joined by commas in brackets, so a group's one call gives the record's
    items; the groups come from `split.encoded_groups` (each item encoded about once: a
    flush's claims of one partition pass the limit several times over).

    >>> gathered(b'{"c":[', [1, "x"]), gathered(b'{"c":[', [1, 22, 333], max_bytes=13)
    ([b'{"c":[1,"x"]}'], [b'{"c":[1]}', b'{"c":[22]}', b'{"c":[333]}'])
    """
    return [head + body[1:] + b"}"
            for _, body in encoded_groups(items, max_bytes - len(head) - 1, to_json)]


_CONTRIBUTIONS_HEAD = b'{"t":"%s","items":[' % messages.BATCH.encode()
_FOLLOWUP_HEAD = b'{"b":['


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of an output record (orjson: several times faster than the standard
    library on the worker's hot path; the same JSON values)."""
    return orjson.dumps(value)


class Record(NamedTuple):
    """One Kafka record to send: to the output or internal topic of `role`."""

    role: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a state table's changelog, stream/state_writer.py)
    partition: int | None = None


@dataclass(slots=True)
class Drained:
    records: list[Record] = field(default_factory=list)
    closed: Counter[str] = field(default_factory=Counter)  # journeys closed, by reason
    counts: Counter[str] = field(default_factory=Counter)  # records, by role


class Outbox:
    def __init__(self, partitions: int, followup_rules: FollowupRules | None = None) -> None:
        self.partitions = partitions
        self._one: dict[int, list[StageOneOutput]] = {}
        self._two: list[StageTwoOutput] = []
        # follow-up cases on (the worker): journey records go to the follow-up stage too
        self.followup_rules = followup_rules
        self._followup_inputs: list[tuple[bytes, bytes]] = []  # (customer key, message)
        self._cases: dict[str, CaseRecord] = {}
        self._claims: dict[int, list[list[Any]]] = {}

    def __bool__(self) -> bool:
        return bool(self._one or self._two or self._followup_inputs or self._cases
                    or self._claims)

    def add_claim(self, target: int, item: list[Any]) -> None:
        """A claim of an applied event for claims partition `target` (stream/claims.py); the
        claims of one flush leave as one record per target partition."""
        self._claims.setdefault(target, []).append(item)

    def add_followup_input(self, key: bytes, message: dict[str, Any]) -> None:
        """An accepted event the follow-up stage needs (stream/followups.py: event_input)."""
        self._followup_inputs.append((key, to_json(message)))

    def add_cases(self, cases: list[CaseRecord]) -> None:
        """The follow-up stage's cases: the latest version of each leaves."""
        for case in cases:
            old = self._cases.get(case.case_id)
            if old is None or case.version >= old.version:
                self._cases[case.case_id] = case

    def add_journey_output(self, partition: int, out: StageOneOutput) -> None:
        """Stage one's output for one event (or a restore) of input `partition`."""
        self._one.setdefault(partition, []).append(out)

    def add_segment_output(self, out: StageTwoOutput) -> None:
        if out.metrics or out.alerts:
            self._two.append(out)

    def drain(self) -> Drained:
        """Every record waiting, coalesced, in the order they must leave; the outbox is empty
        afterwards."""
        drained = Drained()
        records = drained.records
        journey_inputs: list[tuple[bytes, bytes]] = []
        for partition, outputs in self._one.items():
            out = coalesce(outputs)
            for journey in out.journeys:
                records.append(Record(JOURNEYS, journey.journey_id.encode(),
                                      to_json(journey.to_dict())))
                if journey.status == "closed":
                    drained.closed[journey.close_reason] += 1
                if self.followup_rules is not None:
                    customer_key, message = journey_input(journey)
                    journey_inputs.append((customer_key, to_json(message)))
            records.extend(self._contribution_batches(partition, out.contributions,
                                                      out.watermark))
        self._one.clear()
        # Of a bucket's records in this flush, the one ClickHouse would keep of them all
        # (ReplacingMergeTree(version): the highest version, of equal ones the last): the
        # last one alone once replaced a higher version by a bucket made anew (version 1).
        latest: dict[tuple[str, str, str, int], MetricRecord] = {}
        for out2 in self._two:
            for bucket in out2.metrics:
                key2 = (bucket.metric, bucket.segment_dim, bucket.segment_value,
                        bucket.window_start)
                held = latest.get(key2)
                if held is None or bucket.version >= held.version:
                    latest[key2] = bucket
            for alert in out2.alerts:
                records.append(Record(ALERTS, alert.alert_id.encode(),
                                      to_json(alert.to_dict())))
        self._two.clear()
        for bucket in latest.values():
            key = f"{bucket.metric}|{bucket.segment_dim}|{bucket.segment_value}"
            records.append(Record(METRICS, key.encode(), to_json(bucket.to_dict())))
        records.extend(self._followup_batches(journey_inputs + self._followup_inputs))
        self._followup_inputs.clear()
        for case in self._cases.values():
            records.append(Record(FOLLOWUPS, case.case_id.encode(), to_json(case.to_dict())))
        self._cases.clear()
        for target, claims in self._claims.items():
            records.extend(Record(CLAIMS, None, value, target)
                           for value in encode_claims(claims))
        self._claims.clear()
        for sent in records:
            drained.counts[sent.role] += 1
        return drained

    def _contribution_batches(self, source: int, contributions: list[tuple[str, dict[str, Any]]],
                              watermark_ms: int | None) -> list[Record]:
        """One source partition's contributions as batch records, one (or more, when large)
        per contributions partition: each segment's on the partition Kafka's partitioner
        gives its key (where a record keyed by the segment went before, so each segment's
        state stays where it is), a segment's items together and in order. A `watermark_ms`
        goes to every contributions partition after the items: at the end of the partition's
        last batch record, or in a watermark record of its own to a partition without one.

        Why per partition, not per segment, and watermarks inside: the generator's mix touches
        27 segments, so a record per segment was up to 27 records per flush and source
        partition, plus a watermark record to each contributions partition, and the segment
        stage's Faust consumer pays its per-record cost whatever a record holds
        (docs/streaming.md, thirty-fifth round)."""
        by_segment: dict[str, list[dict[str, Any]]] = {}
        for key, message in contributions:
            by_segment.setdefault(key, []).append(message)
        by_target: dict[int, list[dict[str, Any]]] = {}
        for key, items in by_segment.items():
            by_target.setdefault(partition_for(key, self.partitions), []).extend(items)
        # `messages.batch_watermark`'s members after "items" (`{...}` -> `,...}`): the last
        # record of each partition ends with them, and every record leaves room for them
        tail = b"" if watermark_ms is None else \
            b"," + to_json(messages.batch_watermark(source, watermark_ms))[1:]
        records: list[Record] = []
        for target, items in by_target.items():
            values = gathered(_CONTRIBUTIONS_HEAD, items, MAX_GATHERED_BYTES - len(tail))
            if tail:
                values[-1] = values[-1][:-1] + tail
            records.extend(Record(CONTRIBUTIONS, None, value, target) for value in values)
        if watermark_ms is not None:
            mark = to_json(messages.watermark(source, watermark_ms))
            records.extend(Record(CONTRIBUTIONS, None, mark, target)
                           for target in range(self.partitions) if target not in by_target)
        return records

    def _followup_batches(self, inputs: list[tuple[bytes, bytes]]) -> list[Record]:
        """Follow-up inputs as batch records, each on the partition Kafka's partitioner gives
        its customer key (where a keyed record would go), inputs in order."""
        by_partition: dict[int, list[bytes]] = {}
        for key, message in inputs:
            by_partition.setdefault(partition_for(key.decode("utf-8"), self.partitions),
                                    []).append(message)
        return [Record(FOLLOWUP_INPUTS, None, value, partition)
                for partition, encoded in by_partition.items()
                for value in packed(_FOLLOWUP_HEAD, encoded)]
