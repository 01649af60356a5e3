"""`ExperienceEngine`: the whole core for one process (replay, batch backfill, tests).

It wires the separately usable pieces together the way the streaming worker splits them across
agents:

    per input partition p:   JourneyTracker(p) + SurveyBuckets(p), stream time = max event time
                             seen on p (the partition's watermark)
    merged:                  DropDetector over the flushed partials of every partition, stream
                             time = the smallest watermark of the partitions seen so far

Partials are flushed and the detector advanced each time a partition's watermark crosses a
bucket boundary, so evaluation happens at bucket boundaries of event time, as a pure function of
the merged buckets at that point, whatever the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.core.buckets import SurveyBuckets
from pipeline.core.claims import EventClaims, Withdrawal, claims_partition, claims_reach
from pipeline.core.clock import FAR_MS, FUTURE, NEVER_MS
from pipeline.core.config import CoreConfig
from pipeline.core.drops import DropDetector
from pipeline.core.event import TouchpointEvent
from pipeline.core.journeys import CONFLICT, REPLACED, EndDelta, Journey, JourneyTracker
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.core.scoring import ScoringRules


class Emitted:
    """Records produced by one call, in emission order.

    A plain class, not a dataclass: `process` makes one per event, and compiled, a dataclass
    keeps the Python `__init__` that `dataclasses` generates."""

    __slots__ = ("alerts", "journeys", "metrics")

    def __init__(self, journeys: list[JourneyRecord] | None = None,
                 metrics: list[MetricRecord] | None = None,
                 alerts: list[AlertRecord] | None = None) -> None:
        self.journeys: list[JourneyRecord] = [] if journeys is None else journeys
        self.metrics: list[MetricRecord] = [] if metrics is None else metrics
        self.alerts: list[AlertRecord] = [] if alerts is None else alerts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Emitted):
            return NotImplemented
        return (self.journeys == other.journeys and self.metrics == other.metrics
                and self.alerts == other.alerts)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (f"Emitted(journeys={self.journeys!r}, metrics={self.metrics!r}, "
                f"alerts={self.alerts!r})")

    def extend(self, other: Emitted) -> None:
        self.journeys.extend(other.journeys)
        self.metrics.extend(other.metrics)
        self.alerts.extend(other.alerts)


class ExperienceEngine:
    """Journeys, survey buckets, negative-end and drop detection over partitioned input."""

    def __init__(self, config: CoreConfig, rules: ScoringRules, *,
                 resume: dict[str, Any] | None = None, claims_partitions: int = 1) -> None:
        """`rules`: loaded by the caller (`pipeline.scoring_rules`; the core reads no file).
        `resume`: a `snapshot()` to continue from (the same config and rules: they are not
        part of it; its claims partitions are kept). `claims_partitions`: judge the claims of
        event ids in that many parts, as the stream's claims stage runs one per partition of
        `<app>-claims` (replay passes its partition count): each part forgets its claims by
        the journey partitions it has heard from, as that stage does."""
        self.config = config
        self.rules = rules
        self.bucket_ms = self.config.windows.bucket_ms
        self.max_skew_ms = self.config.clock.max_skew_ms
        self.now_ms = self.config.clock.now_ms
        self.trackers: dict[int, JourneyTracker] = {}
        self.buckets: dict[int, SurveyBuckets] = {}
        self.watermarks: dict[int, int] = {}
        self.detector = DropDetector(self.config.drops, self.bucket_ms,
                                     self.config.windows.rolling_ms)
        # When a list: every negative-end delta applied, as (partition, delta) (for tests and
        # tools that need stage one's contributions; compiled classes cannot be patched).
        self.end_delta_log: list[tuple[int, EndDelta]] | None = None
        # One event_id, one journey: copies under other journey keys (pipeline.core.claims),
        # by claims partition (`claims_of`)
        if claims_partitions < 1:
            raise ValueError(f"claims_partitions: {claims_partitions}, not a positive count")
        self.claims_parts = [EventClaims(reach_ms=self._claims_reach())
                             for _ in range(claims_partitions)]
        # True when the last verdict came from the claims (a copy under another journey key):
        # the stream's journey stage had applied that copy, as this engine did before the
        # claim withdrew it (replay feeds the follow-up stage the same way)
        self.cross_journey = False
        if resume is not None:
            self._resume(resume)

    def snapshot(self) -> dict[str, Any]:
        """The whole engine as plain JSON-able data (the state contract,
        `pipeline.core.protocol.Snapshotting`): per partition its watermark, journey tracker
        and survey buckets, then the drop detector and the event claims.
        `ExperienceEngine(config, rules, resume=...)` continues from it: the same further
        input gives the same records as this engine would."""
        return {
            "partitions": [{"partition": p, "watermark": self.watermarks[p],
                            "journeys": self.trackers[p].snapshot(),
                            "buckets": self.buckets[p].snapshot()}
                           for p in sorted(self.trackers)],
            "detector": self.detector.snapshot(),
            # one part: as before claims were partitioned (snapshots written then resume)
            "claims": (self.claims_parts[0].snapshot() if len(self.claims_parts) == 1
                       else [part.snapshot() for part in self.claims_parts]),
        }

    def _resume(self, snapshot: dict[str, Any]) -> None:
        for part in snapshot["partitions"]:
            p = int(part["partition"])
            self.trackers[p] = JourneyTracker(self.config.journeys, self.rules,
                                              resume=part["journeys"])
            self.buckets[p] = SurveyBuckets(self.config.windows, p, resume=part["buckets"])
            self.watermarks[p] = int(part["watermark"])
        self.detector = DropDetector(self.config.drops, self.bucket_ms,
                                     self.config.windows.rolling_ms,
                                     resume=snapshot["detector"])
        claims = snapshot["claims"]
        self.claims_parts = [EventClaims(resume=part, reach_ms=self._claims_reach())
                             for part in (claims if isinstance(claims, list) else [claims])]

    def claims_of(self, event_id: str) -> EventClaims:
        """The claims of `event_id`'s claims partition."""
        parts = self.claims_parts
        return parts[0] if len(parts) == 1 else parts[claims_partition(event_id, len(parts))]

    def _claims_reach(self) -> int:
        return claims_reach(self.config.windows.allowed_lateness_ms, self.bucket_ms)

    def tracker(self, partition: int) -> JourneyTracker:
        tracker = self.trackers.get(partition)
        if tracker is None:
            tracker = self.trackers[partition] = JourneyTracker(self.config.journeys, self.rules)
            self.buckets[partition] = SurveyBuckets(self.config.windows, partition)
            self.watermarks[partition] = NEVER_MS
        return tracker

    def process(self, event: TouchpointEvent, partition: int = 0, arrived_ms: int | None = None
                ) -> tuple[Emitted, str | None]:
        """Apply one validated event read from `partition` that reached us at `arrived_ms`
        (None: `ClockConfig.now_ms`; when that is None too, its clock is trusted). Returns the
        records it caused and a reject reason (`late`, `future`, `conflict`: dead-letter it;
        `duplicate`: drop it; `replaced`: applied in place of an earlier copy with other
        content, dead-letter it as a `conflict` too) or None."""
        if arrived_ms is None:
            arrived_ms = self.now_ms
        if arrived_ms is not None and event.occurred_ms > arrived_ms + self.max_skew_ms:
            return Emitted(), FUTURE  # before anything else: it must not move stream time
        tracker = self.tracker(partition)
        previous = self.watermarks[partition]
        watermark = event.occurred_ms if event.occurred_ms > previous else previous
        self.watermarks[partition] = watermark
        journeys, reason = tracker.apply(event, watermark)
        out = Emitted(journeys=journeys)
        if reason is None or reason == REPLACED:  # applied
            buckets = self.buckets[partition]
            if reason == REPLACED:
                for retraction in tracker.drain_retractions():
                    buckets.retract(retraction)
            buckets.add_event(event)
            self._apply_ends(partition, tracker, buckets)
            claims = self.claims_of(event.event_id)
            withdrawal = claims.claim(event.event_id, tracker.last_digest,
                                      event.journey_key, partition, event.occurred_ms)
            claims.advance(partition, watermark)  # judged, then forget: as the stream
            self.cross_journey = withdrawal is not None
            if withdrawal is not None:
                withdrawn: list[Journey] = []
                reason = self._withdraw(withdrawal, withdrawn)
                out.journeys.extend(self.trackers[withdrawal.partition].latest_records(withdrawn))
        # Applied or not: a duplicate or conflicting copy moves stream time too, and the stream's
        # stage one advances at every event. Skipping its boundaries, the next event found them
        # crossed already and replay closed journeys a boundary later than the stream.
        if watermark // self.bucket_ms != previous // self.bucket_ms:
            out.extend(self._tick(partition))
        return out, reason

    def _withdraw(self, withdrawal: Withdrawal, journeys: list[Journey]) -> str:
        """Take a losing copy out of its journey (its partition's tracker and buckets); the
        verdict on the copy just claimed: `conflict` when it lost, `replaced` when it won."""
        partition = withdrawal.partition
        tracker = self.trackers[partition]
        buckets = self.buckets[partition]
        tracker.withdraw_into(withdrawal.key, withdrawal.event_id, withdrawal.digest,
                          self.watermarks[partition], journeys)
        for retraction in tracker.drain_retractions():
            buckets.retract(retraction)
        self._apply_ends(partition, tracker, buckets)
        return CONFLICT if withdrawal.loser_is_new else REPLACED

    def process_many(self, events: Iterable[TouchpointEvent], partition: int = 0,
                     arrived_ms: int | None = None) -> tuple[Emitted, list[str | None]]:
        """`process` for a batch of events read from one partition, in order. The metric and
        alert records are exactly those the `process` calls would emit, in the same order; the
        journey records are coalesced: the latest record of each journey that changed (one per
        journey id, what the last `process` call emitting it would have returned), so an upsert
        by version ends identical. Returns them and the reject reason of each event.
        `arrived_ms`: when the batch reached us, as for `process`."""
        if arrived_ms is None:
            arrived_ms = self.now_ms
        future_after = FAR_MS if arrived_ms is None else arrived_ms + self.max_skew_ms
        tracker = self.tracker(partition)
        buckets = self.buckets[partition]
        watermarks = self.watermarks
        width = self.bucket_ms
        pending = tracker.pending_end_deltas
        journeys: list[Journey] = []
        reasons: list[str | None] = []
        out = Emitted()
        watermark = watermarks[partition]
        for event in events:
            if event.occurred_ms > future_after:
                reasons.append(FUTURE)
                continue
            previous = watermark
            if event.occurred_ms > watermark:
                watermark = event.occurred_ms
                watermarks[partition] = watermark
            reason = tracker.apply_into(event, watermark, journeys)
            reasons.append(reason)
            if reason is None or reason == REPLACED:  # applied
                if reason == REPLACED:
                    for retraction in tracker.drain_retractions():
                        buckets.retract(retraction)
                buckets.add_event(event)
                if pending:
                    self._apply_ends(partition, tracker, buckets)
                    pending = tracker.pending_end_deltas
                claims = self.claims_of(event.event_id)
                withdrawal = claims.claim(event.event_id, tracker.last_digest,
                                          event.journey_key, partition, event.occurred_ms)
                claims.advance(partition, watermark)
                if withdrawal is not None:
                    reasons[-1] = self._withdraw(withdrawal, journeys)
                    pending = tracker.pending_end_deltas
            if watermark // width != previous // width:  # applied or not, as `process`
                self._tick_into(partition, journeys, out)
                pending = tracker.pending_end_deltas
        out.journeys = tracker.latest_records(journeys)
        return out, reasons

    def _apply_ends(self, partition: int, tracker: JourneyTracker, buckets: SurveyBuckets
                    ) -> None:
        log = self.end_delta_log
        for delta in tracker.drain_end_deltas():
            buckets.apply_end(delta)
            if log is not None:
                log.append((partition, delta))

    def _tick(self, partition: int) -> Emitted:
        """Stream time of `partition` crossed a bucket boundary."""
        journeys: list[Journey] = []
        out = Emitted()
        self._tick_into(partition, journeys, out)
        tracker = self.trackers[partition]
        out.journeys = [tracker.record(j) for j in journeys]
        return out

    def _tick_into(self, partition: int, journeys: list[Journey], out: Emitted) -> None:
        tracker = self.trackers[partition]
        buckets = self.buckets[partition]
        watermark = self.watermarks[partition]
        tracker.advance_into(watermark, journeys)
        self._apply_ends(partition, tracker, buckets)
        metrics = buckets.flush()
        out.metrics.extend(metrics)
        for record in metrics:
            self.detector.apply_partial(record)
        out.alerts.extend(self.detector.advance(self.merged_watermark()))
        buckets.evict(watermark - self.config.windows.allowed_lateness_ms - self.bucket_ms)
        # claims are forgotten as each is judged (`EventClaims.advance`), not here

    def merged_watermark(self) -> int:
        """Stream time of the merged stage: the slowest partition seen so far."""
        return min(self.watermarks.values()) if self.watermarks else NEVER_MS

    def finish(self) -> Emitted:
        """End of input: close what stream time has closed and flush every pending partial.
        Journeys still open stay open (more events could come)."""
        out = Emitted()
        for partition in sorted(self.trackers):
            out.extend(self._tick(partition))
        return out
