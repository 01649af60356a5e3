"""Stage one of the stream, for one input partition: journeys and contributions.

`PartitionProcessor` holds the `JourneyTracker` of one partition and its stream time (the
largest event time seen on it). For each validated event it returns what the worker must send:
journey records (cx.journeys), contributions to the segment stage (survey answers and
negative-end states, keyed by segment) and, when stream time crosses a bucket boundary, a
watermark for the segment stage. It holds no Faust object, so it is tested without servers.

Why this is exact under at-least-once delivery with a crash anywhere: the worker writes the state
of every changed key before the Kafka offset of the event is committed, so after a restart the
state is at or ahead of the offsets. The records the state already holds are passed over (the
journeys agent keeps the offset after the last one applied with the state); events read again
beyond them, and copies sent again, are duplicates for the tracker, and for a duplicate within
the lateness this processor re-sends the event's contributions and its journeys' current
records, which downstream upserts absorb (set semantics, versions). Outputs lost in the crash
window are thereby sent again; nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.buckets import segments_of
from pipeline.core.clock import (
    FUTURE,
    NEVER_MS,
    conflict_error,
    future_error,
    is_future,
    late_error,
)
from pipeline.core.config import CoreConfig
from pipeline.core.event import TouchpointEvent
from pipeline.core.journeys import (
    CONFLICT,
    DUPLICATE,
    LATE,
    REPLACED,
    EndDelta,
    Journey,
    JourneyTracker,
    Retraction,
    letter_reason,
)
from pipeline.core.records import JourneyRecord
from pipeline.core.scoring import ScoringRules
from pipeline.core.segment_totals import EndContribution, answer_key
from pipeline.core.valence import survey_ces_on_7
from pipeline.stream import messages

NEVER = NEVER_MS  # stream time of a partition that has seen no event
WATERMARK_KEY = "__watermark__"

# Why a withdrawal came too late to undo all of its copy (`StageOneOutput.too_late`): replay
# withdraws at once, so there the copy never counted. The stream's known limit (docs/streaming.md,
# Known limits): the copy's partition moved a lateness on before the claims stage's verdict.
NOT_HELD = "not_held"  # no journey of the key holds the event any more (evicted)
FINAL_BUCKET = "final_bucket"  # taken out, but an answer or negative end stays in a final bucket
TOO_LATE_MEANS = {  # what each says, for the log line
    NOT_HELD: "no journey of its key holds the copy any more: its journey was evicted (the "
              "copy's results stay counted, where replay never counted them)",
    FINAL_BUCKET: "an answer or negative end of the copy stays counted in a final bucket, "
                  "where replay never counted it",
}


@dataclass(slots=True)
class StageOneOutput:
    journeys: list[JourneyRecord] = field(default_factory=list)
    contributions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    watermark: int | None = None  # set when stream time crossed a bucket boundary
    reject: str | None = None  # "late": make a dead letter
    duplicate: bool = False
    # the content digest of the copy this event's journey holds, to claim for its event_id
    # (pipeline/stream/claims.py); None when the event was not applied
    claim: int | None = None
    # a withdrawal's: NOT_HELD or FINAL_BUCKET when it could not undo all of its copy
    too_late: str | None = None


def coalesce(outputs: list[StageOneOutput]) -> StageOneOutput:
    """One output for a batch of events: the latest record per journey, contributions in order,
    the last watermark crossed. Sending one message per journey and per segment instead of one
    per event is what keeps the producer from being the bottleneck. (Cutting the contributions
    at every watermark crossed instead gave 0.74 contributions messages per event against 0.12
    and two thirds of the throughput; the segment stage's eviction rule makes the results equal
    without it: `SegmentStage(sources=...)`.)"""
    latest: dict[str, JourneyRecord] = {}
    merged = StageOneOutput()
    for out in outputs:
        for record in out.journeys:
            old = latest.get(record.journey_id)
            if old is None or record.version >= old.version:
                latest[record.journey_id] = record
        merged.contributions.extend(out.contributions)
        if out.watermark is not None:
            merged.watermark = out.watermark
    merged.journeys = list(latest.values())
    return merged


class PartitionProcessor:
    """Journeys of one input partition; see the module docstring."""

    def __init__(
        self, partition: int, config: CoreConfig, rules: ScoringRules, *,
        defer_records: bool = False,
    ) -> None:
        self.partition = partition
        # `process` keeps the journeys it changes in `_changed` and builds their records once,
        # at the end of the call, or with `defer_records` when the caller takes them
        # (`drain_journeys`, before it sends: see there)
        self.defer_records = defer_records
        self._changed: list[Journey] = []
        self.config = config
        self.tracker = JourneyTracker(config.journeys, rules, keep_dirty_keys=True)
        self.watermark = NEVER
        self.bucket_ms = config.windows.bucket_ms
        self.attribute_keys = config.windows.segment_attributes
        self._watermark_dirty = False
        self.lateness_ms = config.windows.allowed_lateness_ms
        self.final_before_ms = NEVER
        self.max_skew_ms = config.clock.max_skew_ms
        self.last_arrived_ms = NEVER  # the arrival time of the last `future` event (its letter)

    # -- restore ------------------------------------------------------------------------------

    def restore_keys(self, states: Iterable[tuple[str, Any]], watermark: int = NEVER
                     ) -> StageOneOutput:
        """Restore from the state table (pairs from `dirty_state`; `watermark`: the largest stream
        time stored beside them), and return every journey's current record and contribution:
        they may have been lost with the last crash."""
        self.watermark = max(self.watermark, watermark)
        self.final_before_ms = self.watermark - self.lateness_ms - self.bucket_ms
        for key, state in states:
            if key == WATERMARK_KEY:
                self.watermark = max(self.watermark, int(state))
                # equal, bucket for bucket, to the horizon set at the last boundary crossed
                self.final_before_ms = self.watermark - self.lateness_ms - self.bucket_ms
            else:
                self.tracker.restore_key(key, state)
        out = StageOneOutput()
        for key in list(self.tracker.keys()):
            self._resend_key(key, out)
        return out

    # -- events -------------------------------------------------------------------------------

    def process(self, event: TouchpointEvent, arrived_ms: int | None = None) -> StageOneOutput:
        """Apply one validated event that reached us at `arrived_ms` (the broker's append time
        or the worker's clock when it read the record; None: trust the event's clock)."""
        if arrived_ms is not None and is_future(event.occurred_ms, arrived_ms, self.max_skew_ms):
            self.last_arrived_ms = arrived_ms
            return StageOneOutput(reject=FUTURE)  # before anything: it must not move stream time
        previous = self.watermark
        if event.occurred_ms > previous:
            self.watermark = event.occurred_ms
        reason = self.tracker.apply_into(event, self.watermark, self._changed)
        out = StageOneOutput()
        if reason in (LATE, CONFLICT):
            # a conflicting copy that lost contributes nothing: its answers would be counted
            # beside (or instead of) the copy kept
            out.reject = reason
        elif reason == DUPLICATE:
            out.duplicate = True
            if not self.tracker.is_late(event.occurred_ms, self.watermark) and \
                    not self.tracker.withdrawn_copy(event.journey_key, event.event_id,
                                                    self.tracker.last_digest):
                # what it caused may have died with a crash: sent again, absorbed downstream.
                # A late copy's buckets may be final (evicted downstream, where an answer sent
                # again would start the bucket anew): it caused nothing since it was applied.
                out.claim = self.tracker.last_digest  # a claim lost with a crash is sent again
                self._resend_key(event.journey_key, out)
                self._answers(event, out)
        else:
            out.claim = self.tracker.last_digest
            if reason == REPLACED:
                # this copy won over one applied earlier: its answers are taken back first
                out.reject = REPLACED
                self._retract(self.tracker.drain_retractions(), out, event.journey_key)
            self._answers(event, out)
            self._ends(self.tracker.drain_end_deltas(), out)
        # Close what stream time has closed on every event (cheap when nothing is due), so the
        # journeys in ClickHouse match `peakend replay`, which closes at its final stream time.
        self.tracker.advance_into(self.watermark, self._changed)
        self._ends(self.tracker.drain_end_deltas(), out)
        if not self.defer_records:
            out.journeys.extend(self.drain_journeys().journeys)
        if self.watermark // self.bucket_ms != previous // self.bucket_ms:
            out.watermark = self.watermark
            self._watermark_dirty = True
            # the same horizon SurveyBuckets.evict keeps in ExperienceEngine
            self.final_before_ms = max(self.final_before_ms, self.watermark - self.lateness_ms
                                       - self.bucket_ms)
        return out

    def drain_journeys(self) -> StageOneOutput:
        """The current record of every journey `process` changed since the last call, one per
        journey. Why: an event's journey changes with every event, and
        `coalesce` keeps only a flush's latest record of each, so building a record per event
        built about three for every one sent (docs/streaming.md, twenty-second round). Built
        now, a record is the journey's latest version, the one `coalesce` would keep; put it
        after the flush's other outputs of this partition (it wins their ties)."""
        changed, self._changed = self._changed, []
        return StageOneOutput(journeys=self.tracker.latest_records(changed))

    def withdraw(self, key: str, event_id: str, digest: int) -> StageOneOutput:
        """Take a copy that lost its claim out of its journey (the claims stage found a copy
        of its event_id under another journey key with a smaller content digest): its journey
        again, its answers retracted, its negative-end contribution updated. Nothing when the
        copy is no longer held. `too_late` says when the copy's results could not all be
        undone: its journey was gone, or a bucket its answer or negative end counted in is
        final (they stay counted there, where replay never counted them)."""
        tracker = self.tracker
        records, held = tracker.withdraw(key, event_id, digest, self.watermark)
        out = StageOneOutput(journeys=records)
        if not held and not any(event_id in j.ids for j in tracker.journeys_of(key)) and \
                not tracker.withdrawn_copy(key, event_id, digest):
            # not replaced by a copy of its own key, nor withdrawn already (a withdrawal sent
            # again): gone
            out.too_late = NOT_HELD
        kept = self._retract(tracker.drain_retractions(), out, key)
        kept += self._ends(tracker.drain_end_deltas(), out)
        if kept and out.too_late is None:
            out.too_late = FINAL_BUCKET
        return out

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(key, state or None) for every key changed since the last call, for the table.

        Stream time has its own key only at bucket boundaries (one write a bucket, not one an
        event); store `self.watermark` beside every key written and pass the largest back to
        `restore_keys`, so a restore resumes from the exact stream time."""
        pairs: list[tuple[str, Any]] = [
            (key, self.tracker.snapshot_key(key)) for key in sorted(self.tracker.drain_dirty_keys())
        ]
        if self._watermark_dirty:
            pairs.append((WATERMARK_KEY, self.watermark))
            self._watermark_dirty = False
        return pairs

    # -- contributions ------------------------------------------------------------------------

    def _answers(self, event: TouchpointEvent, out: StageOneOutput) -> None:
        survey = event.survey
        if survey is None or not survey.has_score():
            return
        # copies of one event_id under other journey keys count apart until the claims
        # stage withdraws all but one (pipeline/stream/claims.py)
        copy_key = answer_key(event.event_id, event.journey_key)
        bucket = event.occurred_ms - event.occurred_ms % self.bucket_ms
        answers: list[tuple[str, float | int]] = []
        if survey.nps is not None:
            answers.append(("nps", survey.nps))
        ces = survey_ces_on_7(survey, self.config.windows.ces_5_more_effort)
        if ces is not None:
            answers.append(("ces", ces))
        if survey.csat is not None:
            answers.append(("csat", survey.csat))
        for dim, value in segments_of(event, self.attribute_keys):
            for metric, answer in answers:
                out.contributions.append(
                    messages.answer(dim, value, metric, bucket, copy_key, answer)
                )

    def _final(self, bucket_start: int) -> bool:
        """Whether the bucket starting at `bucket_start` is final by this partition's stream
        time (the horizon `SurveyBuckets` keeps in replay): what counted there stays counted,
        and the segment stage may have evicted it."""
        return bucket_start + self.bucket_ms <= self.final_before_ms

    def _retract(self, retractions: list[Retraction], out: StageOneOutput, journey_key: str
                 ) -> int:
        """Take replaced or withdrawn answers out of their buckets; returns how many stay
        counted, their bucket final."""
        kept = 0
        for r in retractions:
            bucket = r.at_ms - r.at_ms % self.bucket_ms
            if self._final(bucket):
                kept += 1
                continue  # that bucket is final: the answers stay counted there (as `_ends`)
            for metric, score in (("nps", r.nps), ("ces", r.ces), ("csat", r.csat)):
                if score is not None:
                    for dim, value in r.segments:
                        out.contributions.append(
                            messages.retract(dim, value, metric, bucket,
                                             answer_key(r.event_id, journey_key)))
        return kept

    def _ends(self, deltas: list[EndDelta], out: StageOneOutput) -> int:
        """Negative-end contributions for `deltas`; returns how many journeys stay counted in
        a final bucket they left."""
        kept = 0
        for delta in deltas:
            start = delta.at_ms - delta.at_ms % self.bucket_ms
            contribution: EndContribution | None = None
            keep = False
            if delta.sign < 0 and self._final(start):
                # That bucket is final: the journey stays counted there (`SurveyBuckets.
                # apply_end`). The segment stage is told so: its next contribution, in this
                # flush or any later one, must not take it out of that bucket either (the
                # segment stage would, while it still holds the bucket, which depends on every
                # partition's stream time). Once, only the next delta of the same call was
                # told: a journey reopened in a final bucket and closed again later left it
                # there in replay, not in the stream (negative_end n 1 against 2 after kills).
                keep = True
                kept += 1
            elif delta.sign > 0:
                contribution = (start, delta.negative)
            for dim, value in delta.segments:
                out.contributions.append(
                    messages.end(dim, value, delta.journey_id, contribution, keep))
        return kept

    def _resend_key(self, key: str, out: StageOneOutput) -> None:
        out.journeys.extend(self.tracker.superseded_of(key))
        for journey in self.tracker.journeys_of(key):
            out.journeys.append(self.tracker.record(journey))
            self._resend_end(journey, out)

    def _resend_end(self, journey: Journey, out: StageOneOutput) -> None:
        if journey.counted is None:
            return
        at_ms, negative, segments = journey.counted
        start = at_ms - at_ms % self.bucket_ms
        if self._final(start):
            # Final: the contribution left before the state that holds it was written. The
            # segment stage may have evicted that bucket, and a contribution sent again would
            # start it anew with this journey alone, a record that replaced the whole bucket's
            # (a restore re-sends every journey held: journey ids are held for days).
            return
        contribution = (start, negative)
        for dim, value in segments:
            out.contributions.append(messages.end(dim, value, journey.id, contribution))

    # -- dead letters -------------------------------------------------------------------------

    def reject_letter(
        self, reason: str, event: TouchpointEvent, raw: bytes, source_topic: str, offset: int,
        source_partition: int | None = None,
    ) -> DeadLetter:
        """The dead letter of an event `process` rejected with `reason`, just after it did."""
        if reason == FUTURE:
            error = future_error(event.occurred_ms, self.last_arrived_ms, self.max_skew_ms)
        elif reason in (CONFLICT, REPLACED):
            error = conflict_error(event.event_id, reason == REPLACED)
        else:
            error = late_error(event.occurred_ms, self.watermark,
                               self.config.journeys.allowed_lateness_ms, self.partition)
        return DeadLetter.make(
            letter_reason(reason),
            error,
            original=raw,
            source_topic=source_topic,
            source_partition=self.partition if source_partition is None else source_partition,
            source_offset=offset,
            event_id=event.event_id,
        )
