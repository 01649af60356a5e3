"""The stream's two stages wired in memory like the worker wires them through Kafka (same
partitioning, same batching), without Faust or a broker."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pipeline.contract import Rejected, parse_event
from pipeline.core.claims import claims_partition
from pipeline.core.config import CoreConfig
from pipeline.core.partitioner import partition_for
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.core.segment_totals import forget_start
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream import messages
from pipeline.stream.claims import (
    ClaimsStage,
    claim_item,
    decode_claims,
    encode_claims,
)
from pipeline.stream.outbox import CONTRIBUTIONS, METRICS, Outbox
from pipeline.stream.partition import PartitionProcessor, StageOneOutput, coalesce
from pipeline.stream.segments import SegmentStage

SCORING_RULES = load_scoring_rules()


def written(state: dict[str, Any], pairs: Iterable[tuple[str, Any]]) -> None:
    """A state table after a write of `pairs` (key, state or None: removed), each state a copy
    (the stages keep changing theirs)."""
    for key, value in pairs:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = copy.deepcopy(value)


class WatchedSegmentStage(SegmentStage):
    """A segment stage that counts the negative-end contributions reaching a bucket past
    final (a journey with a producer id closes after 7 idle days, into the bucket of its last
    event), and of them those reaching a bucket it had already evicted (it makes the bucket
    anew: docs/streaming.md, "Exact results with at-least-once delivery", point 5)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends_past_final = 0
        self.ends_past_eviction = 0

    def _apply(self, items: Iterable[dict[str, Any]]) -> None:
        items = list(items)
        for message in items:
            c = message.get("c")
            if message["t"] == messages.END and c is not None:
                start, width, horizon = int(c[0]), self.bucket_ms, self.evicted_before
                self.ends_past_final += start + width <= horizon
                hold = self.config.windows.end_hold_ms
                self.ends_past_eviction += \
                    forget_start("negative_end", start, hold) + width <= horizon
        super()._apply(items)


class SimulatedStream:
    """`restart_every`: rebuild stage one from its persisted state every that many batches
    (a worker restarted after a crash, with nothing read again: the restore's own re-sends),
    once that batch's outputs were delivered and its state written: the worker writes a
    batch's state only after its outputs were delivered (pipeline/stream/agent_loop.py), so a
    restore never re-sends ahead of outputs still on their way. (Until 2026-12-06 the restart
    came before the batch's delivery, with its state already written: the re-sent contribution
    of a journey that had just left a final bucket reached the segment stage before the
    message that kept it there, and took it out; the worker cannot do that.)
    with `restart_segments`, the segment stage too, from its state as a changelog replay gives
    it back: every key as last written, in any order (seeded), the members of evicted buckets
    included (the journal forgets them without a removal: `JournalTable.forget_keys`), and no
    source watermark (they come back with the next watermark messages)."""

    def __init__(self, config: CoreConfig, partitions: int, batch: int = 100,
                 restart_every: int | None = None, restart_segments: bool = False,
                 segment_lag: int = 0) -> None:
        self.config = config
        self.partitions = partitions
        self.batch = batch
        self.restart_every = restart_every
        self.restart_segments = restart_segments
        self.stage_two_state: list[dict[str, Any]] = [{} for _ in range(partitions)]
        # `segment_lag` K: the segment stage restarts from its state of K sends before, and the
        # contributions it took since are delivered again (its outputs left, its state and
        # offsets did not: at-least-once)
        self.segment_lag = segment_lag
        self._stage_two_log: list[tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]] = []
        # the segment stages' metric records of the last send, delivered at the start of the
        # next one: a restart with `segment_lag` loses them (the worker delivers a batch's
        # outputs before it writes the state, so state that lags lost them too)
        self._undelivered: list[MetricRecord] = []
        self._restore_order = random.Random(partitions * 7919 + batch)
        self.sends = 0
        # what a restart of stage one re-sends, sent ahead of the next batch's outputs
        self._resent: dict[int, list[StageOneOutput]] = {}
        self._draining = False  # `finish`: no more restarts
        # stage one's state table, per partition, as the worker writes it after each batch
        self.stage_one_state: list[dict[str, Any]] = [{} for _ in range(partitions)]
        self.stage_one = [PartitionProcessor(p, config, SCORING_RULES) for p in range(partitions)]
        self.stage_two = [WatchedSegmentStage(config, sources=partitions)
                          for _ in range(partitions)]
        self.queues: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
        self.journeys: dict[str, JourneyRecord] = {}
        self.metrics: dict[tuple[str, str, str, int], MetricRecord] = {}
        self.alerts: list[AlertRecord] = []
        self.late = 0
        self.verdicts: Counter[str] = Counter()  # every reject reason, and "duplicate"
        # metric records whose version did not grow past the one held for their bucket, with
        # other content (held, sent): ClickHouse's ReplacingMergeTree(version) keeps the higher
        # one, and of two equal ones the last inserted, so a bucket's versions must only grow
        self.version_ties: list[tuple[MetricRecord, MetricRecord]] = []
        # the last record sent for each bucket, whatever its version (what a reader that trusts
        # arrival order would hold)
        self.metrics_in_arrival_order: dict[tuple[str, str, str, int], MetricRecord] = {}
        # the claims stage (one event_id, one journey): claims leave with each batch, and the
        # withdrawals they cause reach stage one with the next batch, as late as the stream's
        self.claims = [ClaimsStage(config, "touchpoints") for _ in range(partitions)]
        self.claim_items: dict[int, list[list[Any]]] = {}
        self.withdrawals: dict[int, list[list[Any]]] = {}
        self.conflicts = 0

    def run(self, lines: Iterable[bytes]) -> SimulatedStream:
        pending: dict[int, list[StageOneOutput]] = {}
        count = 0
        for line in lines:
            if not self.take(line, count, pending):
                continue
            count += 1
            if count % self.batch == 0:
                self._send(pending)
                pending = {}
        return self.finish(pending)

    def take(self, line: bytes, count: int, pending: dict[int, list[StageOneOutput]]) -> bool:
        """One input line (the `count`th valid one) through stage one, its output kept in
        `pending` for the next batch; False when the line is not a valid event."""
        try:
            event = parse_event(line)
        except Rejected:
            return False
        p = partition_for(event.journey_key, self.partitions)
        out = self.stage_one[p].process(event)
        self.late += out.reject is not None
        if out.reject is not None or out.duplicate:
            self.verdicts[out.reject or "duplicate"] += 1
        if out.claim is not None:
            self.claim_items.setdefault(claims_partition(event.event_id, self.partitions),
                                        []).append(claim_item(
                event.event_id, event.journey_key, out.claim, p, event.occurred_ms,
                self.stage_one[p].watermark, 0, count, line))
        pending.setdefault(p, []).append(out)
        return True

    def finish(self, pending: dict[int, list[StageOneOutput]]) -> SimulatedStream:
        """The last batch, then the withdrawals it causes, until none is left."""
        self._send(pending)
        self._draining = True
        while self.withdrawals or self._resent:
            self._send({})
        self._deliver()
        return self

    def persist(self, partition: int) -> None:
        written(self.stage_one_state[partition], self.stage_one[partition].dirty_state())

    def restart_stage_one(self, pending: dict[int, list[StageOneOutput]],
                          earlier: tuple[list[dict[str, Any]], list[int]] | None = None
                          ) -> None:
        """Every partition rebuilt from its state, stream time as stored beside it (`earlier`:
        from an earlier state and stream times instead, a crash before the later ones were
        written); what the restore re-sends leaves with the next batch."""
        for p in range(self.partitions):
            self.persist(p)
        watermarks = [proc.watermark for proc in self.stage_one]
        if earlier is not None:
            self.stage_one_state, watermarks = copy.deepcopy(earlier[0]), earlier[1]
        for p in range(self.partitions):
            self.stage_one[p] = PartitionProcessor(p, self.config, SCORING_RULES)
            resent = self.stage_one[p].restore_keys(self.stage_one_state[p].items(),
                                                    watermarks[p])
            pending.setdefault(p, []).insert(0, resent)

    def restart_stage_two(self) -> None:
        """Every segment stage rebuilt from its state (see the class docstring), `segment_lag`
        sends back, and what it took since delivered again."""
        again: list[list[dict[str, Any]]] = [[] for _ in range(self.partitions)]
        if self.segment_lag and len(self._stage_two_log) >= self.segment_lag:
            self._undelivered.clear()
            self.stage_two_state = self._stage_two_log[-self.segment_lag][0]
            for _, taken in self._stage_two_log[-self.segment_lag:]:
                for q, queue in enumerate(taken):
                    again[q].extend(queue)
            self._stage_two_log.clear()
        for q in range(self.partitions):
            stored = list(self.stage_two_state[q].items())
            self._restore_order.shuffle(stored)
            self.stage_two[q] = WatchedSegmentStage(self.config, sources=self.partitions)
            self.stage_two[q].restore_keys(stored)
            # read again with what arrives next, in one batch, as the consumer fetches them
            self.queues[q][:0] = again[q]

    def ends_past(self) -> tuple[int, int]:
        """Negative-end contributions that reached a final bucket, and an evicted one, in every
        segment stage since the last restart (`WatchedSegmentStage`)."""
        return (sum(stage.ends_past_final for stage in self.stage_two),
                sum(stage.ends_past_eviction for stage in self.stage_two))

    def _persist_stage_two(self, q: int) -> None:
        written(self.stage_two_state[q], self.stage_two[q].dirty_state())
        self.stage_two[q].drain_forgotten()  # kept in `state`: a changelog replay has them

    def _send(self, pending: dict[int, list[StageOneOutput]]) -> None:
        self.sends += 1
        restart = bool(self.restart_every and not self._draining
                       and self.sends % self.restart_every == 0)
        if restart and self.restart_segments:
            self.restart_stage_two()
        for p, resent in self._resent.items():
            pending.setdefault(p, [])[:0] = resent
        self._resent = {}
        self._deliver()
        withdrawals, self.withdrawals = self.withdrawals, {}
        for p, items in withdrawals.items():
            for key, event_id, digest in items:
                pending.setdefault(p, []).append(self.stage_one[p].withdraw(key, event_id,
                                                                            digest))
        # contributions leave through the worker's own outbox (coalescing, watermark steps)
        outbox = Outbox(self.partitions)
        for p, outputs in pending.items():
            self.persist(p)
            for journey in coalesce(outputs).journeys:
                old = self.journeys.get(journey.journey_id)
                if old is None or journey.version > old.version:
                    self.journeys[journey.journey_id] = journey
            for out in outputs:
                outbox.add_journey_output(p, out)
        for q, claims in self.claim_items.items():
            # through the claims records the worker writes and the claims stage reads
            judged = self.claims[q].apply([claim for record in encode_claims(claims)
                                           for claim in decode_claims(record)])
            self.claims[q].dirty_state()
            self.claims[q].drain_forgotten()
            for p, items in judged.withdrawals.items():
                self.withdrawals.setdefault(p, []).extend(items)
            self.conflicts += len(judged.letters)
        self.claim_items = {}
        for sent in outbox.drain().records:
            if sent.role == CONTRIBUTIONS:
                target = (sent.partition if sent.partition is not None
                          else partition_for((sent.key or b"").decode(), self.partitions))
                assert sent.value is not None  # contributions are never tombstones
                self.queues[target].append(json.loads(sent.value))
        if self.segment_lag:
            self._stage_two_log.append((copy.deepcopy(self.stage_two_state),
                                        [list(queue) for queue in self.queues]))
            del self._stage_two_log[:-self.segment_lag]
        for q, queue in enumerate(self.queues):
            if queue:
                self._take_stage_two(q, queue)
                queue.clear()
        if restart:
            self.restart_stage_one(self._resent)  # its outputs delivered, its state written

    def _take_stage_two(self, q: int, queue: list[dict[str, Any]]) -> None:
        """Contributions through segment stage `q`, its state written, its records through
        the worker's outbox (one flush: a bucket's records coalesced) and kept as ClickHouse
        keeps them."""
        result = self.stage_two[q].process_batch(queue)
        self._persist_stage_two(q)
        outbox = Outbox(self.partitions)
        outbox.add_segment_output(result)
        for sent in outbox.drain().records:
            if sent.role == METRICS:
                assert sent.value is not None
                self._undelivered.append(MetricRecord.from_dict(json.loads(sent.value)))
        self.alerts.extend(result.alerts)

    def _deliver(self) -> None:
        """The metric records waiting, kept as ClickHouse keeps them."""
        for record in self._undelivered:
            key = (record.metric, record.segment_dim, record.segment_value,
                   record.window_start)
            self.metrics_in_arrival_order[key] = record
            held = self.metrics.get(key)
            if held is None or record.version >= held.version:  # as ClickHouse keeps
                if held is not None and record.version == held.version \
                        and record != held:
                    self.version_ties.append((held, record))
                self.metrics[key] = record
            else:
                self.version_ties.append((held, record))
        self._undelivered.clear()
