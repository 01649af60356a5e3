"""Journey keying and life cycle: `JourneyTracker`, the per-partition journey state machine.

Written for the thin stream adapter that drives it (the Faust journey agent) as much as for
`ExperienceEngine`. One tracker serves one input partition; the caller owns stream time:

    records, reason = tracker.apply(event, watermark_ms)   # per event
    records += tracker.advance(watermark_ms)                # now and then: idle / max-length closes
    deltas = tracker.drain_end_deltas()                     # -> negative_end buckets
    for key in tracker.drain_dirty_keys():                  # -> the state table (keep_dirty_keys)
        table[key] = tracker.snapshot_key(key)              # None: delete the key

`reason` is `"late"` (make a dead letter), `"duplicate"` (already applied with the same content,
on time or late while its journey is held: drop it quietly, this is what makes redelivery
harmless), `"conflict"` (its event_id was applied
with other content: the copy applied first stays, make a dead letter of this one) or None.
The state of one key (all journeys of one journey id
or customer) is a plain JSON-able dict: `snapshot_key` / `restore_key` move it to and from a
table, and a restarted worker calls `restore_key` for each key before applying events of that key
(the state contract, `pipeline.core.protocol`; `snapshot()` / `resume=` for the whole tracker).

Rules (docs/design.md 1, docs/core.md):
- key = journey_id, else customer_id; customer-keyed journeys are the pure gap clustering of that
  customer's events sorted by (occurred_ms, event_id): a new journey starts after a gap longer
  than `idle_gap_ms`, after a `journey_end` event, or at `max_length_ms` from the journey's start.
  Because it is a pure function of the event set, arrival order does not matter; a late event that
  bridges two journeys merges them, and the one whose id disappears gets a `superseded` record.
- a journey is closed when it holds a journey_end event, when stream time reaches start +
  max_length, or when stream time passes last event + idle gap; otherwise open. Late events within
  `allowed_lateness_ms` behind stream time reopen and update closed journeys; older ones are late.
- closed journeys are evicted once stream time is past last event + idle gap + lateness: no
  acceptable event can touch them any more, so memory stays bounded.
- a producer journey_id spans days: it closes on journey_end, at `max_length_ms` or after the
  separate `journey_idle_ms` (default 7 d), never on the customer idle gap. Once evicted, the
  id is remembered (a marker, no events) until `max_length_ms` after its last event; an event of
  the id meanwhile starts a distinct journey `<id>@<its first event time>`, never a second
  journey under the same id whose versions would tie with the first one's.
- version = 4 x events + (0 open, 1 closed, 2 superseded): deterministic for the same events and
  final stream time whatever the arrival order; should that not grow (a late journey_end splitting
  a customer journey), it becomes the previous version + 1 so it never goes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from heapq import heappop, heappush
from typing import Any, Final, NamedTuple

from pipeline.core.claims import claims_reach
from pipeline.core.clock import FAR_MS
from pipeline.core.config import JourneyConfig
from pipeline.core.event import (
    MARKER_TYPES,
    TouchpointEvent,
    content_digest,
    content_digest_v1,
    digest_definition,
)
from pipeline.core.moments import (
    CHANNEL,
    CUSTOMER_ID,
    EVENT_ID,
    MS,
    OUTCOME,
    SEGMENTS,
    STAGE,
    TOUCHPOINT,
    TYPE,
    VALENCE,
    Entry,
    JourneyMoments,
    SharedStrings,
    new_entry,
)
from pipeline.core.records import JourneyRecord, new_record
from pipeline.core.scoring import ScoringRules
from pipeline.core.timefmt import format_ms
from pipeline.core.valence import survey_ces_on_7, survey_valence

LATE: Final = "late"
DUPLICATE: Final = "duplicate"
# an event_id applied before with other content: the copy applied first stays, this one is a
# dead letter (a changed event needs a new event_id; docs/contract.md)
CONFLICT: Final = "conflict"
# the same, but this copy wins (the smaller content digest, whatever the order): it is applied
# in place of the earlier copy, whose contributions are retracted; still a `conflict` letter
REPLACED: Final = "replaced"


def letter_reason(reason: str) -> str:
    """The dead-letter reason of a verdict (`replaced` is a `conflict` whose copy won)."""
    return CONFLICT if reason == REPLACED else reason
UNKNOWN_DIGEST: Final = -1  # state written before digests were kept: any copy is a duplicate
_STATUS_CODE: Final = {"open": 0, "closed": 1, "superseded": 2}
_NO_ATTRS: Final[tuple[tuple[str, str], ...]] = ()
_SEG_CACHE_MAX: Final = 4096

Segments = tuple[tuple[str, str], ...]


def _copy_verdict(applied: int, digest: int, event: TouchpointEvent) -> tuple[str, int]:
    """`_repeat` of `event` (content digest `digest`) against the copy held with `applied`, and
    the digest its claim names: a copy held since before digest version 2 with this very
    content is a redelivery (`duplicate`, naming the digest the journey holds:
    `withdraw_into`)."""
    verdict = _repeat(applied, digest)
    if verdict == REPLACED and digest_definition(applied) == 1 \
            and content_digest_v1(event) == applied:
        return DUPLICATE, applied
    return verdict, digest


def _held_entry(journey: Journey, event_id: str) -> Entry:
    """The entry of the copy of `event_id` that `journey` holds."""
    return next(e for e in journey.entries if e[EVENT_ID] == event_id)


def _repeat(applied: int, digest: int) -> str:
    """The verdict on an event_id applied before with content digest `applied`: of two copies
    with other content the one with the smaller digest wins, so the result does not depend on
    which arrived first. A version 2 digest is below every version 1 digest: against a copy
    held under version 1 a new copy wins, unless it is the same content (`apply_into` asks
    `content_digest_v1`)."""
    if digest == applied or applied == UNKNOWN_DIGEST:
        return DUPLICATE
    return CONFLICT if digest > applied else REPLACED


def _by_reach(verdict: str, ms: int, held_at: int, reach: int) -> str:
    """`verdict` on a copy at `ms` against the key's copy at `held_at`, unless the two are
    further apart than the claims' reach: then the older copy stays (its results are final by
    now; under two keys both copies stand: `EventClaims`). In a stream a copy that much older
    than the held one is late and never gets here."""
    if abs(ms - held_at) > reach:
        return REPLACED if ms < held_at else CONFLICT
    return verdict


# The survey answers of an applied event, as the buckets counted them: (nps, ces on 1-7, csat).
Answers = tuple[int | None, float | None, int | None]


class Retraction(NamedTuple):
    """Survey answers to take back out of the buckets: the copy of an event that a copy with
    the same event_id and a smaller content digest replaced. `segments`: where they counted."""

    at_ms: int
    segments: Segments
    nps: int | None
    ces: float | None
    csat: int | None
    event_id: str


class EndDelta(NamedTuple):
    """A change of the negative_end counts: add (+1) or retract (-1) one closed journey.

    `at_ms` is the journey's last event time (its bucket), `negative` whether its end valence is
    below 0, `segments` the (dimension, value) pairs of its end moment.
    """

    at_ms: int
    negative: bool
    sign: int
    segments: Segments
    journey_id: str = ""  # lets the stream send each journey's contribution idempotently


class Journey:
    """One journey: its events, moments and emitted version."""

    __slots__ = (
        "close_reason",
        "counted",
        "customer_id",
        "entries",
        "id",
        "idle_ms",
        "ids",
        "keyed_by",
        "moments",
        "removed",
        "status",
        "version",
    )

    def __init__(self, journey_id: str, keyed_by: str, customer_id: str, end_window_ms: int,
                 idle_ms: int):
        self.id = journey_id
        self.keyed_by = keyed_by
        # closes this long after its last event: the customer idle gap for a gap session, the
        # much longer journey idle timeout for a producer journey id (which spans days)
        self.idle_ms = idle_ms
        self.customer_id = customer_id
        self.entries: list[Entry] = []
        self.ids: dict[str, int] = {}  # event_id -> content digest
        self.moments = JourneyMoments(end_window_ms)
        self.version = 0
        # copies withdrawn from this journey (`JourneyTracker.withdraw`) or replaced in it by a
        # copy with a smaller digest: versions count them, so a journey ends at the same
        # version whenever its withdrawal came
        self.removed = 0
        self.status = "open"
        self.close_reason = ""
        # what this journey currently contributes to negative_end: (at_ms, negative, segments)
        self.counted: tuple[int, bool, Segments] | None = None

    def add(self, entry: Entry, digest: int) -> None:
        self.entries.append(entry)
        self.ids[entry[EVENT_ID]] = digest
        self.moments.update(entry)

    @property
    def start_ms(self) -> int:
        return self.moments.first_ms  # 0 while empty

    @property
    def last_ms(self) -> int:
        return self.moments.last_ms

    def snapshot(self) -> dict[str, Any]:
        state = self._state()
        if self.removed:
            state["removed"] = self.removed
        return state

    def _state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "keyed_by": self.keyed_by,
            "customer_id": self.customer_id,
            "version": self.version,
            "status": self.status,
            "close_reason": self.close_reason,
            "counted": None if self.counted is None else [
                self.counted[0], self.counted[1], [list(s) for s in self.counted[2]]
            ],
            # The entries themselves: each is a plain tuple of atoms and pairs, written as
            # JSON arrays exactly as lists of the same values would be (`from_snapshot` reads
            # either). Rebuilding each entry as lists cost more than the JSON encoding of the
            # whole key in the worker's state writes, once per changed key and batch.
            "entries": list(self.entries),
            # `ids` holds the entries' event ids in the entries' order (`add`, `_take_out` and
            # the session moves keep the two in step: test_core_journey_digests.py), so its
            # values are the digests in order; a lookup per entry was about a sixth of a key's
            # snapshot (`python -m bench.bench_journey_state --snapshots 9`)
            "digests": list(self.ids.values()),
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any], end_window_ms: int, idle_ms: int,
                      shared: SharedStrings | None = None) -> Journey:
        """A part, rebuilt by its owner (`JourneyTracker.restore_key`), which passes the
        configuration the snapshot does not hold (and its `SharedStrings`)."""
        if shared is None:
            shared = SharedStrings()
        journey = cls(state["id"], state["keyed_by"], state["customer_id"], end_window_ms,
                      idle_ms)
        digests = state.get("digests") or [UNKNOWN_DIGEST] * len(state["entries"])
        customer_id = journey.customer_id
        for raw, digest in zip(state["entries"], digests, strict=True):
            attrs = shared.segments(tuple((str(k), str(v)) for k, v in raw[SEGMENTS]))
            cid = raw[CUSTOMER_ID]
            journey.add(new_entry((int(raw[MS]), raw[EVENT_ID], shared.word(raw[TYPE]),
                                   raw[VALENCE], shared.word(raw[TOUCHPOINT]),
                                   shared.word(raw[CHANNEL]), shared.word(raw[STAGE]),
                                   shared.word(raw[OUTCOME]),
                                   customer_id if cid == customer_id else cid, attrs)),
                        int(digest))
        journey.version = int(state["version"])
        journey.removed = int(state.get("removed", 0))
        journey.status = state["status"]
        journey.close_reason = state["close_reason"]
        counted = state["counted"]
        if counted is not None:
            journey.counted = (int(counted[0]), bool(counted[1]),
                               tuple((str(d), str(v)) for d, v in counted[2]))
        return journey


def _held_customer(state: KeyState, customer_id: str) -> str:
    """`customer_id`, or the equal string the key's journey already holds (one per key, not
    one per entry)."""
    held = state.journey
    if held is None and state.sessions:
        held = state.sessions[-1]
    if held is not None and held.customer_id == customer_id:
        return held.customer_id
    return customer_id


def _segments_of(raw: list[list[str]]) -> Segments:
    """Segments as a snapshot holds them (lists) back to the tuples the core compares."""
    return tuple((str(dim), str(value)) for dim, value in raw)


class KeyState:
    """All journeys of one key: the journey-id journey, or the customer's gap sessions.

    A key holds only what it uses (one object per key more or less is what the collector walks
    and a restart rebuilds): the sessions are a tuple, empty and shared for a journey-id key, and
    the retired ids a dict made on the first supersession."""

    __slots__ = ("answers", "ended_until", "journey", "pieces", "retired", "scheduled",
                 "sessions", "withdrawn")

    def __init__(self) -> None:
        self.journey: Journey | None = None
        # Producer journey ids: journeys of this id evicted so far, and until when that is
        # remembered (stream time). While remembered, a later event of the id starts a distinct
        # journey `<id>@<its first event time>`: never a second journey under the same id, whose
        # versions would tie with the evicted one's (a tie ClickHouse and replay break apart).
        self.pieces = 0
        self.ended_until = -FAR_MS
        # event_id -> survey answers of the key's applied events that have any: what to retract
        # should a copy of the event with a smaller digest replace it
        self.answers: dict[str, Answers] | None = None
        self.sessions: tuple[Journey, ...] = ()  # customer-keyed, sorted by start
        # superseded journey id -> (last version, last event ms, its superseded record as
        # emitted): should a later late event bring the id back (a split by a late journey_end),
        # its versions continue above this one; a restarted stream sends the record again.
        # (withdrawn copies: `Journey.removed`, continued too)
        self.retired: dict[str, tuple[int, int, dict[str, Any], int]] | None = None
        self.scheduled = FAR_MS  # earliest deadline of this key in the tracker's heap
        # event_id -> (content digest, event time) of the copies withdrawn from this key (their
        # claim lost under another key). A later copy of the id under this key is judged
        # against the withdrawn one as against a held copy: the same content is a duplicate,
        # other content a `conflict` unless it would have replaced it (the smaller digest), not
        # a new copy to apply, claim and withdraw again. Replay withdraws at once; the stream,
        # whose verdict comes later, often still holds the copy when the next one comes
        # (docs/streaming.md, fortieth and forty-first rounds). Forgotten with the retired ids.
        # Made on the first withdrawal.
        self.withdrawn: dict[str, tuple[int, int]] | None = None

    def all(self) -> tuple[Journey, ...]:
        return self.sessions if self.journey is None else (self.journey, *self.sessions)

    def holder(self, event_id: str) -> Journey | None:
        """The journey that holds `event_id`, if any."""
        own = self.journey
        if own is not None and event_id in own.ids:
            return own
        for known in self.sessions:
            if event_id in known.ids:
                return known
        return None

    def retire(self, journey: Journey, record: dict[str, Any]) -> None:
        if self.retired is None:
            self.retired = {}
        self.retired[journey.id] = (journey.version, journey.last_ms, record, journey.removed)

    def revive(self, journey: Journey) -> None:
        """A superseded id is back: its versions continue above the last one emitted."""
        if self.retired is not None and journey.id in self.retired:
            version, _, _, removed = self.retired.pop(journey.id)
            journey.version = version
            journey.removed = removed

    def forget_retired(self, before_ms: int) -> bool:
        """Forget ids retired with their last event before `before_ms`; True when any went."""
        retired = self.retired
        if not retired:
            return False
        gone = [k for k, (_, last, _, _) in retired.items() if last < before_ms]
        for journey_id in gone:
            del retired[journey_id]
        return bool(gone)

    def withdrew(self, event_id: str, digest: int) -> bool:
        """Whether the copy of `event_id` with `digest` was withdrawn from this key and is
        still remembered (`withdrawn`)."""
        withdrawn = self.withdrawn
        was = None if withdrawn is None else withdrawn.get(event_id)
        return was is not None and was[0] == digest

    def forget_withdrawn(self, before_ms: int) -> bool:
        """Forget copies withdrawn with an event time before `before_ms`; True when any went."""
        withdrawn = self.withdrawn
        if not withdrawn:
            return False
        gone = [k for k, (_, at) in withdrawn.items() if at < before_ms]
        for event_id in gone:
            del withdrawn[event_id]
        if not withdrawn:
            self.withdrawn = None
        return bool(gone)


class JourneyTracker:
    """Journeys of one input partition. See the module docstring for the calling pattern."""

    def __init__(self, config: JourneyConfig, rules: ScoringRules, *,
                 keep_dirty_keys: bool = False, fast_inserts: bool = True,
                 resume: dict[str, Any] | None = None) -> None:
        """`rules`: loaded by the caller (`pipeline.scoring_rules`; the core reads no file).
        `keep_dirty_keys`: remember which keys changed for `drain_dirty_keys` (a stream that
        writes state per key); off, nothing is kept (replay and backfill never drain them).
        `fast_inserts` off: every out-of-order event regroups its customer's sessions (the
        reference `_insert` is tested against). `resume`: a `snapshot()` to continue from."""
        self.config = config
        self.rules = rules
        self._keys: dict[str, KeyState] = {}
        self._deadlines: list[tuple[int, str]] = []
        # Producer journey ids evicted and still remembered, nothing else held for them:
        # key -> (pieces, ended_until) of its `KeyState`, which is made again should an event
        # of the id come. Kept apart from `_keys` and `_deadlines`, which then hold only live
        # journeys: a month of markers was most of both after a few weeks of history. Forgotten
        # when stream time passes ended_until (the heap `_marker_ends`, as the key's deadline
        # did).
        self._markers: dict[str, tuple[int, int]] = {}
        self._marker_ends: list[tuple[int, str]] = []
        # negative_end changes not drained yet: the engine reads it to skip an empty drain
        # (`drain_end_deltas` empties it; nothing else may change it)
        self.pending_end_deltas: list[EndDelta] = []
        self._retractions: list[Retraction] = []
        self._keep_dirty = keep_dirty_keys
        self._fast_inserts = fast_inserts
        self._dirty: list[str] = []  # a list: an append per event, deduplicated when drained
        self._gap = self.config.idle_gap_ms
        self._journey_idle = self.config.journey_idle_ms
        self._max_len = self.config.max_length_ms
        self._ces_5_more_effort = self.config.ces_5_more_effort
        self._lateness = self.config.allowed_lateness_ms
        self._copy_reach = claims_reach(self._lateness, self.config.bucket_ms)
        self._window = self.config.end_window_ms
        self._attr_keys = self.config.segment_attributes
        self._seg_cache: dict[tuple[str | None, ...], Segments] = {}
        self._shared = SharedStrings()
        self.last_digest = 0  # the content digest of the event `apply` saw last (its claim)
        if resume is not None:
            self._resume(resume)

    # -- the calls of the stream adapter ------------------------------------------------------

    def apply(self, event: TouchpointEvent, watermark_ms: int
              ) -> tuple[list[JourneyRecord], str | None]:
        """Apply one validated event at stream time `watermark_ms` (the partition's watermark,
        this event included). Returns the records of every journey that changed, and a reject
        reason: `"late"` (older than the allowed lateness: dead-letter it), `"duplicate"` (its
        event_id was already applied: drop it) or None."""
        emitted: list[Journey] = []
        reason = self.apply_into(event, watermark_ms, emitted)
        if not emitted:
            return [], reason
        return [self.record(j) for j in emitted], reason

    def apply_many(self, events: Iterable[TouchpointEvent], watermark_ms: int
                   ) -> tuple[list[JourneyRecord], list[str | None], int]:
        """Apply `events` in order exactly as consecutive `apply` calls would, stream time moving
        to max(watermark, occurred_ms) before each event (`watermark_ms`: the partition's
        watermark before the batch). Returns the *latest* record of every journey id that
        changed in the batch (one each, in order of first change: the same record the last
        `apply` call would have returned for it, so an upsert by version ends identical), the
        reject reason of each event (as `apply`), and the watermark after the batch.

        Building one record per journey and batch instead of one per event is the main saving
        (docs/core.md, Performance)."""
        emitted: list[Journey] = []
        reasons: list[str | None] = []
        wm = watermark_ms
        for event in events:
            ms = event.occurred_ms
            if ms > wm:
                wm = ms
            reasons.append(self.apply_into(event, wm, emitted))
        return self.latest_records(emitted), reasons, wm

    def is_late(self, occurred_ms: int, watermark_ms: int) -> bool:
        """Older than the allowed lateness behind stream time `watermark_ms`: an event no
        journey takes any more."""
        return occurred_ms < watermark_ms - self._lateness

    def _late_verdict(self, event: TouchpointEvent) -> str:
        """The verdict on a late event: `duplicate` when its journey still holds this very copy
        (same event_id, same content), else `late`. A copy applied once is never also a dead
        letter: the entry stage re-sends what it read since its last commit after a crash, and
        a producer retries, after stream time may have moved past the lateness (a backlog of
        days read at thousands of events per second); the first copy was applied on time."""
        jid = event.journey_id
        state = self._keys.get(event.customer_id if jid is None else jid)
        if state is None:
            return LATE
        holder = state.holder(event.event_id)
        if holder is None:
            return LATE
        verdict, claimed = _copy_verdict(holder.ids[event.event_id], content_digest(event),
                                         event)
        if verdict != DUPLICATE:
            return LATE
        self.last_digest = claimed
        return DUPLICATE

    def latest_records(self, journeys: Iterable[Journey]) -> list[JourneyRecord]:
        """Current records of `journeys`, one per journey id (the last object given for an id
        wins, order of first appearance)."""
        latest: dict[str, Journey] = {}
        for journey in journeys:
            latest[journey.id] = journey
        return [self.record(j) for j in latest.values()]

    def apply_into(self, event: TouchpointEvent, watermark_ms: int, emitted: list[Journey]
                   ) -> str | None:
        """`apply` without building records: appends every emitted journey to `emitted` (its
        record is `record(journey)` until the journey is emitted again)."""
        ms = event.occurred_ms
        if self.is_late(ms, watermark_ms):
            return self._late_verdict(event)
        jid = event.journey_id
        key = event.customer_id if jid is None else jid
        eid = event.event_id
        state = self._keys.get(key)
        digest = content_digest(event)
        self.last_digest = digest
        left: Journey | None = None  # the journey whose copy this one replaced, if any
        if state is None:
            state = self._keys[key] = KeyState()
            if self._markers:
                marker = self._markers.pop(key, None)
                if marker is not None:  # an evicted journey id: the next piece is distinct
                    state.pieces, state.ended_until = marker
            own = None
        else:
            own = state.journey
            holder = state.holder(eid)
            if holder is None:
                withdrawn = state.withdrawn  # (most keys never had a copy withdrawn)
                was = None if withdrawn is None else withdrawn.get(eid)
                if was is not None:
                    # A copy withdrawn from this key is still the key's copy of the id: the
                    # same content is a duplicate of it, other content is judged against it
                    # as against a held copy (see KeyState.withdrawn), so only a copy that
                    # would have replaced it is applied
                    verdict, self.last_digest = _copy_verdict(was[0], digest, event)
                    if verdict != DUPLICATE:
                        verdict = _by_reach(verdict, ms, was[1], self._copy_reach)
                    if verdict != REPLACED:
                        return verdict
            else:
                verdict, self.last_digest = _copy_verdict(holder.ids[eid], digest, event)
                if verdict == DUPLICATE:
                    return verdict
                held = _held_entry(holder, eid)
                verdict = _by_reach(verdict, ms, held[MS], self._copy_reach)
                if verdict != REPLACED:
                    return verdict
                self._take_out(state, holder, held)
                # a copy taken out counts in the version as a withdrawal does (`_emit`): a
                # version that grew by one here instead (the formula unchanged, the copy
                # replaced in place) depended on the path, and a stream that withdrew a copy
                # after the replacement where replay withdrew it before ended a version apart
                # (docs/streaming.md, fortieth round)
                holder.removed += 1
                left = holder
        # the entry (see moments.Entry), valence inlined from valence.moment_valence (the
        # reference; tests/unit/core/test_core_valence_parity.py holds them equal)
        valence = event.valence
        if valence is None:
            survey = event.survey
            if survey is not None:
                valence = survey_valence(survey, self._ces_5_more_effort)
            if valence is None:
                signals = event.signals
                if signals is not None:
                    valence = self.rules.score_or_none(signals)
                if valence is None and event.type not in MARKER_TYPES:
                    valence = 0.0
        attrs = event.attributes
        attr_keys = self._attr_keys
        seg = self._segments(attrs, attr_keys) if attrs and attr_keys else _NO_ATTRS
        shared = self._shared
        entry = new_entry((ms, eid, shared.word(event.type), valence,
                           shared.word(event.touchpoint), shared.word(event.channel),
                           shared.word(event.stage), shared.word(event.outcome or ""),
                           _held_customer(state, event.customer_id), seg))
        survey = event.survey
        if survey is not None and survey.has_score():
            if state.answers is None:
                state.answers = {}
            state.answers[eid] = (survey.nps, survey_ces_on_7(survey, self._ces_5_more_effort),
                                  survey.csat)
        if self._keep_dirty:
            self._dirty.append(key)
        if jid is not None:
            if own is None:
                own = Journey(jid if state.pieces == 0 else f"{jid}@{format_ms(ms)}",
                              "journey_id", event.customer_id, self._window, self._journey_idle)
                if state.retired is not None:
                    state.revive(own)  # its copies were withdrawn: versions continue
                state.journey = own
            own.add(entry, digest)
            first = own.moments.first
            assert first is not None  # narrowed, or compiled code indexes an untyped object
            own.customer_id = first[CUSTOMER_ID]
            self._emit_at(own, watermark_ms)
            emitted.append(own)
            if len(state.sessions) > 1:
                self._refresh_others(state, own, watermark_ms, emitted)
            self._schedule_one(key, state, own)
            return None if left is None else REPLACED
        # a replacement may have split a session: the general path regroups
        extended = self._extend(state, entry, digest) if left is None else None
        if extended is not None:  # in order, the common case: no lists to build
            self._emit_at(extended, watermark_ms)
            emitted.append(extended)
            if (own is None) + len(state.sessions) > 1:
                # other journeys of the key may have closed as stream time moved
                self._refresh_others(state, extended, watermark_ms, emitted)
            self._schedule_one(key, state, extended)
            return None if left is None else REPLACED
        fast = (self._insert(state, entry, digest) if left is None and self._fast_inserts
                else None)
        changed, superseded = self._repartition(state, entry, digest) if fast is None else fast
        if left is not None and left not in changed and left in state.sessions:
            # The replaced copy left a session that the new copy did not join: regrouped as it
            # was (the same id), it holds one event fewer, so it is a new version (its removal
            # counted above). Unemitted, its record and its negative-end contribution kept the
            # copy that left.
            changed.append(left)
        if superseded:
            # the session the replaced copy left, if that emptied it: superseded at the version
            # of no events, as a withdrawal of the copy supersedes it (replay withdraws a copy
            # before the stream's stage one sees the next one replace it)
            emptied = left if left is not None and not left.entries else None
            for gone in superseded:
                if gone is emptied:
                    self._supersede_emptied(state, gone, gone.moments)  # retired there
                else:
                    self._emit(gone, "superseded", "")
                emitted.append(gone)
            for gone in superseded:
                if gone is not emptied:
                    state.retire(gone, self.record(gone).to_dict())
        for journey in changed:
            self._emit_at(journey, watermark_ms)
            emitted.append(journey)
        if len(changed) == 1:
            if (own is None) + len(state.sessions) > 1:
                # other journeys of the key may have closed as stream time moved
                self._refresh_others(state, changed[0], watermark_ms, emitted)
            self._schedule_one(key, state, changed[0])
        else:
            self._schedule(key, state, changed)
        return None if left is None else REPLACED

    def _segments(self, attrs: Mapping[str, str], attr_keys: tuple[str, ...]) -> Segments:
        """The configured attributes of an event as ((key, value), ...), shared between equal
        ones (fewer objects for the collector; bounded cache)."""
        # Read as a dict: compiled, `dict.get` is a direct lookup where a Mapping's `get` is a
        # method call per key. An event's attributes are a dict; another Mapping is copied once.
        table: dict[str, str] = attrs if isinstance(attrs, dict) else dict(attrs)
        values = tuple([table.get(k) for k in attr_keys])
        seg = self._seg_cache.get(values)
        if seg is None:
            seg = tuple([(k, v) for k, v in zip(attr_keys, values, strict=True)
                         if v is not None])
            if len(self._seg_cache) >= _SEG_CACHE_MAX:
                self._seg_cache.clear()
            self._seg_cache[values] = seg
        return seg

    def _take_out(self, state: KeyState, journey: Journey, removed: Entry) -> None:
        """Remove the applied copy `removed` (its entry, `_held_entry`) from `journey`: a copy
        with a smaller content digest replaces it. Its survey answers are queued for retraction
        from the buckets (`drain_retractions`); the caller then applies the new copy."""
        event_id = removed[EVENT_ID]
        journey.entries = [e for e in journey.entries if e[EVENT_ID] != event_id]
        del journey.ids[event_id]
        if journey.entries or journey.keyed_by == "journey_id":
            moments = JourneyMoments(self._window)
            for e in journey.entries:
                moments.update(e)
            journey.moments = moments
        # else: an emptied customer session keeps its moments for its superseded record
        answers = None if state.answers is None else state.answers.pop(event_id, None)
        if answers is not None:
            segments = (("all", "all"), ("touchpoint", removed[TOUCHPOINT]),
                        ("channel", removed[CHANNEL]), ("stage", removed[STAGE]),
                        *removed[SEGMENTS])
            self._retractions.append(new_record(Retraction, (
                removed[MS], segments, answers[0], answers[1], answers[2], event_id)))

    def withdraw(self, key: str, event_id: str, digest: int, watermark_ms: int
                 ) -> tuple[list[JourneyRecord], bool]:
        """Take the applied copy of `event_id` with content `digest` out of the journeys of
        `key`: a copy under another journey key won (`pipeline.core.claims`). Like the
        `replaced` path without a new copy: its answers are queued for retraction
        (`drain_retractions`), its journey's negative-end contribution follows
        (`drain_end_deltas`), and the journey is emitted again; a journey left without events
        is emitted `superseded`. Returns the records and whether the copy was held (False: it
        was evicted, or replaced meanwhile by a copy of the same key)."""
        emitted: list[Journey] = []
        held = self.withdraw_into(key, event_id, digest, watermark_ms, emitted)
        return self.latest_records(emitted), held

    def withdraw_into(self, key: str, event_id: str, digest: int, watermark_ms: int,
                      emitted: list[Journey]) -> bool:
        """`withdraw` without building records: appends the journeys it changes to `emitted`
        (the engine's batches build one record per journey, `latest_records`)."""
        state = self._keys.get(key)
        if state is None:
            return False
        holder = next((j for j in state.all() if j.ids.get(event_id) == digest), None)
        if holder is None:
            return False
        before = holder.moments
        removed = _held_entry(holder, event_id)
        if state.withdrawn is None:
            state.withdrawn = {}
        state.withdrawn[event_id] = (digest, removed[MS])
        self._take_out(state, holder, removed)
        holder.removed += 1
        self._mark_dirty(key)
        if holder.keyed_by == "journey_id":
            if holder.entries:
                # a journey id's customer is its first event's (`apply_into`): the copy taken
                # out may have been that event, whose customer stayed on the journey
                first = holder.moments.first
                assert first is not None  # narrowed, or compiled code indexes an untyped object
                holder.customer_id = first[CUSTOMER_ID]
                self._emit_at(holder, watermark_ms)
                emitted.append(holder)
            else:
                self._supersede_emptied(state, holder, before)
                emitted.append(holder)
                state.journey = None
        else:
            emptied = not holder.entries
            changed, superseded = self._repartition(state, None, 0, holder.customer_id)
            for gone in superseded:
                if gone is holder and emptied:
                    self._supersede_emptied(state, holder, before)
                else:
                    self._emit(gone, "superseded", "")
                    state.retire(gone, self.record(gone).to_dict())
                emitted.append(gone)
            if not emptied and holder in state.sessions and holder not in changed:
                changed.append(holder)  # regrouped as it was: the same id, one event fewer
            for journey in changed:
                self._emit_at(journey, watermark_ms)
                emitted.append(journey)
        if state.journey is None and not state.sessions:
            # nothing left to wake the key up: forget the retired ids in time
            until = holder.last_ms + holder.idle_ms + self._lateness + 1
            if until < state.scheduled:
                state.scheduled = until
                heappush(self._deadlines, (until, key))
        else:
            self._schedule(key, state)
        return True

    def _supersede_emptied(self, state: KeyState, journey: Journey, before: JourneyMoments
                           ) -> None:
        """A journey whose only events were withdrawn: `superseded`, at the version of no
        events (as if the withdrawal had come before any other event: the same version in
        every order), its record showing the moments it had."""
        journey.moments = JourneyMoments(self._window)
        self._emit(journey, "superseded", "")
        journey.moments = before
        state.retire(journey, self.record(journey).to_dict())

    def drain_retractions(self) -> list[Retraction]:
        """Survey answers replaced since the last call (take them out of the buckets)."""
        out, self._retractions = self._retractions, []
        return out

    def _refresh_others(self, state: KeyState, changed: Journey, watermark_ms: int,
                        emitted: list[Journey]) -> None:
        for journey in state.all():
            if journey is not changed and self._refresh(journey, watermark_ms):
                emitted.append(journey)

    def advance(self, watermark_ms: int) -> list[JourneyRecord]:
        """Stream time moved to `watermark_ms`: close journeys that went idle or reached their
        maximum length, and evict closed journeys no acceptable event can reach any more."""
        emitted: list[Journey] = []
        self.advance_into(watermark_ms, emitted)
        return [self.record(j) for j in emitted]

    def advance_into(self, watermark_ms: int, emitted: list[Journey]) -> None:
        """`advance` without building records: appends the journeys it changes to `emitted`."""
        ends = self._marker_ends
        while ends and ends[0][0] <= watermark_ms:
            end, key = heappop(ends)
            marker = self._markers.get(key)
            if marker is not None and marker[1] + 1 == end:
                del self._markers[key]
                self._mark_dirty(key)
        heap = self._deadlines
        while heap and heap[0][0] <= watermark_ms:
            deadline, key = heappop(heap)
            state = self._keys.get(key)
            if state is None:
                continue
            if state.scheduled == deadline:
                state.scheduled = FAR_MS
            for journey in state.all():
                if self._refresh(journey, watermark_ms):
                    emitted.append(journey)
                    self._mark_dirty(key)
            self._evict(key, state, watermark_ms)

    def drain_end_deltas(self) -> list[EndDelta]:
        """negative_end changes since the last call (feed them to `SurveyBuckets.apply_end`)."""
        out, self.pending_end_deltas = self.pending_end_deltas, []
        return out

    def drain_dirty_keys(self) -> set[str]:
        """Keys whose state changed since the last call (write `snapshot_key(key)` for each)."""
        if not self._keep_dirty:
            raise RuntimeError("this JourneyTracker was made without keep_dirty_keys=True")
        out, self._dirty = self._dirty, []
        return set(out)

    def _mark_dirty(self, key: str) -> None:
        if self._keep_dirty:
            self._dirty.append(key)

    def snapshot_key(self, key: str) -> dict[str, Any] | None:
        """The JSON-able state of one key, or None when the tracker holds nothing for it."""
        state = self._keys.get(key)
        if state is None:
            marker = self._markers.get(key)
            if marker is None:
                return None
            state = KeyState()
            state.pieces, state.ended_until = marker
        retired = state.retired or {}
        return {
            "journey": None if state.journey is None else state.journey.snapshot(),
            "sessions": [j.snapshot() for j in state.sessions],
            "retired": {k: [v[0], v[1], *([v[3]] if v[3] else [])]
                        for k, v in sorted(retired.items())},
            "superseded": {k: dict(v[2]) for k, v in sorted(retired.items())},
            "pieces": [state.pieces, state.ended_until] if state.pieces else None,
            "answers": ({k: list(v) for k, v in sorted(state.answers.items())}
                        if state.answers else None),
            # only when any (a rare key's): the other keys' records stay as they were
            **({"withdrawn": {k: list(v) for k, v in sorted(state.withdrawn.items())}}
               if state.withdrawn else {}),
        }

    def restore_key(self, key: str, data: dict[str, Any] | None) -> None:
        """Replace the tracker's state of `key` by `data` (from `snapshot_key`; None removes
        it)."""
        self._markers.pop(key, None)
        if data is None:
            self._keys.pop(key, None)
            return
        state = KeyState()
        if data["journey"] is not None:
            state.journey = Journey.from_snapshot(data["journey"], self._window,
                                                  self._journey_idle, self._shared)
        state.sessions = tuple(Journey.from_snapshot(s, self._window, self._gap, self._shared)
                               for s in data["sessions"])
        answers = data.get("answers")
        if answers:
            state.answers = {str(k): (None if v[0] is None else int(v[0]),
                                      None if v[1] is None else float(v[1]),
                                      None if v[2] is None else int(v[2]))
                             for k, v in answers.items()}
        pieces = data.get("pieces")
        if pieces is not None:
            state.pieces, state.ended_until = int(pieces[0]), int(pieces[1])
        records = data.get("superseded", {})
        retired = {k: (int(v[0]), int(v[1]), dict(records[k]), int(v[2]) if len(v) > 2 else 0)
                   for k, v in data.get("retired", {}).items()}
        state.retired = retired or None
        withdrawn = data.get("withdrawn")
        if withdrawn:
            state.withdrawn = {str(k): (int(v[0]), int(v[1])) for k, v in withdrawn.items()}
        self._keys[key] = state
        self._schedule(key, state)
        if state.journey is None and not state.sessions and state.pieces:
            self._keep_marker(key, state)

    def snapshot(self) -> dict[str, Any]:
        """The whole tracker as plain JSON-able data (the state contract,
        `pipeline.core.protocol.Snapshotting`): every key's `snapshot_key`, and the negative-end
        deltas, retractions and dirty keys not drained yet, and the deadline heap as it is
        (with the entries a later event made stale: they decide the order in which `advance`
        emits, which `restore_key` alone would not reproduce).
        `JourneyTracker(config, rules, resume=...)` continues from it."""
        return {
            "keys": {key: self.snapshot_key(key) for key in sorted(self.keys())},
            "end_deltas": [[d.at_ms, d.negative, d.sign, [list(s) for s in d.segments],
                            d.journey_id] for d in self.pending_end_deltas],
            "retractions": [[r.at_ms, [list(s) for s in r.segments], r.nps, r.ces, r.csat,
                             r.event_id] for r in self._retractions],
            "dirty": sorted(set(self._dirty)),
            "deadlines": [[until, key] for until, key in sorted(self._deadlines)],
            "scheduled": {key: state.scheduled for key, state in sorted(self._keys.items())},
        }

    def _resume(self, snapshot: dict[str, Any]) -> None:
        for key, data in snapshot["keys"].items():
            self.restore_key(key, data)
        self.pending_end_deltas = [
            EndDelta(int(at), bool(negative), int(sign), _segments_of(segments), str(journey))
            for at, negative, sign, segments, journey in snapshot["end_deltas"]]
        self._retractions = [
            Retraction(int(at), _segments_of(segments), None if nps is None else int(nps),
                       None if ces is None else float(ces), None if csat is None else int(csat),
                       str(event_id))
            for at, segments, nps, ces, csat, event_id in snapshot["retractions"]]
        if self._keep_dirty:
            self._dirty = [str(key) for key in snapshot["dirty"]]
        self._deadlines = [(int(until), str(key)) for until, key in snapshot["deadlines"]]
        for key, scheduled in snapshot["scheduled"].items():
            state = self._keys.get(key)
            if state is not None:
                state.scheduled = int(scheduled)

    def keys(self) -> list[str]:
        return [*self._keys, *self._markers]

    def superseded_of(self, key: str) -> list[JourneyRecord]:
        """The superseded records of one key still remembered (for re-sending after a restart:
        they cannot be derived from the live journeys)."""
        state = self._keys.get(key)
        if state is None:
            return []
        retired = state.retired or {}
        return [JourneyRecord.from_dict(retired[k][2]) for k in sorted(retired)]

    def withdrawn_copy(self, key: str, event_id: str, digest: int) -> bool:
        """Whether the copy of `event_id` with `digest` was withdrawn from `key` and is
        remembered so (`KeyState.withdrawn`)."""
        state = self._keys.get(key)
        return state is not None and state.withdrew(event_id, digest)

    def journeys_of(self, key: str) -> list[Journey]:
        """The journeys held for one key (for re-sending their current state after a restart)."""
        state = self._keys.get(key)
        return [] if state is None else list(state.all())

    def journeys(self) -> list[Journey]:
        return [j for state in self._keys.values() for j in state.all()]

    def __len__(self) -> int:
        return len(self._keys) + len(self._markers)

    # -- internals ----------------------------------------------------------------------------

    def _extend(self, state: KeyState, entry: Entry, digest: int) -> Journey | None:
        """Put a customer-keyed entry that comes after all others of its key into its session,
        the last one or a new one, and return that; None when the entry is out of order (the
        caller repartitions)."""
        sessions = state.sessions
        ms = entry[MS]
        if not sessions:
            fresh = self._session(entry[CUSTOMER_ID], [entry], None, {entry[EVENT_ID]: digest})
            # a session emptied by a withdrawal was superseded under this very id (same first
            # event time): its versions continue above that record's, or ClickHouse would keep
            # the superseded record over this one
            state.revive(fresh)
            state.sessions = (fresh,)
            return fresh
        tail = sessions[-1]
        m = tail.moments
        last = m.last
        assert last is not None
        last_ms = m.last_ms
        if ms < last_ms or (ms == last_ms and entry[EVENT_ID] <= last[EVENT_ID]):
            return None
        if (ms - last_ms <= self._gap and ms - m.first_ms < self._max_len
                and last[TYPE] != "journey_end"):
            tail.add(entry, digest)
            return tail
        fresh = self._session(entry[CUSTOMER_ID], [entry], m.first_ms, {entry[EVENT_ID]: digest})
        state.revive(fresh)
        state.sessions = (*sessions, fresh)
        return fresh

    @staticmethod
    def _session_id(customer_id: str, first_ms: int, first_event_id: str,
                    previous_start: int | None) -> str:
        """The id of a customer-gap journey: the customer and its first event time."""
        if previous_start == first_ms:
            # only after a journey_end in the same millisecond: keep ids unique, deterministically
            return f"{customer_id}@{format_ms(first_ms)}#{first_event_id}"
        return f"{customer_id}@{format_ms(first_ms)}"

    def _session(self, customer_id: str, entries: list[Entry], previous_start: int | None,
                 digests: dict[str, int]) -> Journey:
        """A customer-gap journey of `entries`, sorted by (ms, event id)."""
        first = entries[0]
        journey_id = self._session_id(customer_id, first[MS], first[EVENT_ID], previous_start)
        journey = Journey(journey_id, "customer_gap", customer_id, self._window, self._gap)
        for entry in entries:
            journey.add(entry, digests[entry[EVENT_ID]])
        return journey

    def _insert(self, state: KeyState, entry: Entry, digest: int
                ) -> tuple[list[Journey], list[Journey]] | None:
        """`_repartition` for the common out-of-order cases, in O(log n + end window): the entry
        falls inside a session, extends one at either end, or stands alone between two, and no
        other session changes. None when it may merge or split sessions (a bridge, a
        journey_end, a maximum length crossed): then the caller repartitions. Gives exactly what
        `_repartition` gives (tested against it), so 20,000 reversed events of one customer no
        longer cost a sort of all their entries each."""
        if entry[TYPE] == "journey_end":
            return None
        sessions = state.sessions
        ms = entry[MS]
        eid = entry[EVENT_ID]
        gap = self._gap
        max_len = self._max_len
        lo = 0
        hi = len(sessions)
        while lo < hi:  # the first session that starts after the entry
            mid = (lo + hi) // 2
            first = sessions[mid].moments.first
            assert first is not None
            if first[MS] < ms or (first[MS] == ms and first[EVENT_ID] < eid):
                lo = mid + 1
            else:
                hi = mid
        before: Journey | None = sessions[lo - 1] if lo > 0 else None
        after: Journey | None = sessions[lo] if lo < len(sessions) else None
        joins_before = False
        if before is not None:
            bm = before.moments
            last = bm.last
            assert last is not None
            if last[MS] > ms or (last[MS] == ms and last[EVENT_ID] > eid):
                before.add(entry, digest)  # inside its span: gaps only shrink
                return [before], []
            joins_before = (ms - last[MS] <= gap and last[TYPE] != "journey_end"
                            and ms - bm.first_ms < max_len)
        if joins_before:
            assert before is not None
            if after is not None:
                af = after.moments.first_ms
                if af - ms <= gap and af - before.moments.first_ms < max_len:
                    return None  # bridges two sessions
            before.add(entry, digest)
            return [before], []
        previous_start = None if before is None else before.moments.first_ms
        if previous_start == ms:
            return None  # the id would need the same-millisecond suffix
        if after is not None:
            # the session after the new start has the suffix only beside an equal start
            follower = sessions[lo + 1] if lo + 1 < len(sessions) else None
            if after.moments.first_ms == previous_start or (
                    follower is not None and follower.moments.first_ms == after.moments.first_ms):
                return None
        if after is not None and after.moments.first_ms - ms <= gap:
            if after.moments.last_ms - ms >= max_len:
                return None  # a new start moves the maximum-length cut
            if after.moments.first_ms == ms:
                after.add(entry, digest)  # a new first event in the same millisecond: same id
                return [after], []
            # the entry starts `after` earlier: same events and one more, under a new id
            fresh = Journey(self._session_id(entry[CUSTOMER_ID], ms, eid, previous_start),
                            "customer_gap", entry[CUSTOMER_ID], self._window, gap)
            fresh.entries = after.entries
            fresh.ids = after.ids
            fresh.removed = after.removed
            alone = JourneyMoments(self._window)
            alone.update(entry)
            fresh.moments = after.moments.merge(alone)
            fresh.entries.append(entry)
            fresh.ids[eid] = digest
            after.entries = []
            after.ids = {}
            state.revive(fresh)
            state.sessions = (*sessions[:lo], fresh, *sessions[lo + 1:])
            return [fresh], [after]
        fresh = self._session(entry[CUSTOMER_ID], [entry], previous_start, {eid: digest})
        state.revive(fresh)
        state.sessions = (*sessions[:lo], fresh, *sessions[lo:])
        return [fresh], []

    def _repartition(self, state: KeyState, entry: Entry | None, digest: int,
                     customer_id: str = "") -> tuple[list[Journey], list[Journey]]:
        """Regroup the customer's sessions with `entry` added (None: as they are, after a
        withdrawal; then `customer_id` names the customer)."""
        old = {j.id: j for j in state.sessions}
        digests: dict[str, int] = {} if entry is None else {entry[EVENT_ID]: digest}
        for journey in state.sessions:
            digests.update(journey.ids)
        held = [e for j in state.sessions for e in j.entries]
        if entry is not None:
            held.append(entry)
            customer_id = entry[CUSTOMER_ID]
        entries = sorted(held, key=lambda e: (e[MS], e[EVENT_ID]))
        groups: list[list[Entry]] = []
        for e in entries:
            if groups:
                prev = groups[-1][-1]
                start = groups[-1][0][MS]
                if (e[MS] - prev[MS] <= self._gap and prev[TYPE] != "journey_end"
                        and e[MS] - start < self._max_len):
                    groups[-1].append(e)
                    continue
            groups.append([e])
        sessions: list[Journey] = []
        changed: list[Journey] = []
        previous_start: int | None = None
        for group in groups:
            fresh = self._session(customer_id, group, previous_start, digests)
            previous_start = group[0][MS]
            kept = old.pop(fresh.id, None)
            if kept is not None and set(kept.ids) == {e[EVENT_ID] for e in group}:
                sessions.append(kept)
                continue
            if kept is not None:
                fresh.version, fresh.status = kept.version, kept.status
                fresh.close_reason, fresh.counted = kept.close_reason, kept.counted
                fresh.removed = kept.removed
            else:
                state.revive(fresh)
            sessions.append(fresh)
            changed.append(fresh)
        state.sessions = tuple(sessions)
        return changed, list(old.values())

    def _status(self, journey: Journey, watermark_ms: int) -> tuple[str, str]:
        m = journey.moments
        if m.has_end_marker:
            return "closed", "journey_end"
        if watermark_ms >= m.first_ms + self._max_len:
            return "closed", "max_length"
        if watermark_ms > m.last_ms + journey.idle_ms:
            return "closed", "idle_gap"
        return "open", ""

    def _refresh(self, journey: Journey, watermark_ms: int) -> bool:
        """Re-evaluate the status; True when it changed (the journey was emitted)."""
        status, reason = self._status(journey, watermark_ms)
        if status == journey.status and reason == journey.close_reason:
            return False
        self._emit(journey, status, reason)
        return True

    def _emit_at(self, journey: Journey, watermark_ms: int) -> None:
        """A new version of `journey` with its status at stream time `watermark_ms`."""
        status, reason = self._status(journey, watermark_ms)
        self._emit(journey, status, reason)

    def _emit(self, journey: Journey, status: str, reason: str) -> None:
        """A new version of `journey` with this status (its record: `record(journey)`)."""
        version = 4 * (journey.moments.events + 2 * journey.removed) + _STATUS_CODE[status]
        if version <= journey.version:
            version = journey.version + 1
        journey.version = version
        journey.status = status
        journey.close_reason = reason
        self._count_end(journey)

    def _count_end(self, journey: Journey) -> None:
        if journey.counted is None and journey.status != "closed":
            return  # the common case: open and never counted
        m = journey.moments
        counted: tuple[int, bool, Segments] | None = None
        end_valence = m.end_valence()
        if journey.status == "closed" and end_valence is not None and m.end is not None:
            end = m.end
            segments = (("all", "all"), ("touchpoint", end[TOUCHPOINT]),
                        ("channel", end[CHANNEL]), ("stage", end[STAGE]), *end[SEGMENTS])
            counted = (journey.last_ms, end_valence < 0, segments)
        if counted == journey.counted:
            return
        if journey.counted is not None:
            at, negative, segments = journey.counted
            self.pending_end_deltas.append(
                new_record(EndDelta, (at, negative, -1, segments, journey.id)))
        if counted is not None:
            self.pending_end_deltas.append(
                new_record(EndDelta, (counted[0], counted[1], 1, counted[2], journey.id)))
        journey.counted = counted

    def record(self, journey: Journey) -> JourneyRecord:
        """The current record of a journey (as last emitted)."""
        m = journey.moments
        peak, end = m.peak, m.end
        start, stop = m.first_ms, m.last_ms
        end_v = m.end_valence()
        outcome = "" if m.outcome is None else m.outcome[OUTCOME]
        if peak is None or end is None or end_v is None:
            # no moment yet (markers only): nothing to name as peak, best, worst or end
            return JourneyRecord(
                journey_id=journey.id, customer_id=journey.customer_id,
                keyed_by=journey.keyed_by, status=journey.status,
                close_reason=journey.close_reason, started_at=start, ended_at=stop,
                duration_seconds=(stop - start) / 1000.0, events=m.events, moments=m.moments,
                peak_valence=None, peak_touchpoint="", peak_at=None, peak_event_id="",
                best_valence=None, best_touchpoint="", worst_valence=None, worst_touchpoint="",
                end_valence=end_v, end_touchpoint="", end_channel="", end_stage="", end_at=None,
                end_event_id="", peak_end_score=None, mean_valence=m.mean_valence(),
                outcome=outcome, version=journey.version)
        best, worst = m.best, m.worst
        peak_v = peak[VALENCE]
        assert peak_v is not None and best is not None and worst is not None
        return JourneyRecord(
            journey_id=journey.id, customer_id=journey.customer_id, keyed_by=journey.keyed_by,
            status=journey.status, close_reason=journey.close_reason, started_at=start,
            ended_at=stop, duration_seconds=(stop - start) / 1000.0, events=m.events,
            moments=m.moments,
            peak_valence=peak_v, peak_touchpoint=peak[TOUCHPOINT], peak_at=peak[MS],
            peak_event_id=peak[EVENT_ID],
            best_valence=best[VALENCE], best_touchpoint=best[TOUCHPOINT],
            worst_valence=worst[VALENCE], worst_touchpoint=worst[TOUCHPOINT],
            end_valence=end_v, end_touchpoint=end[TOUCHPOINT], end_channel=end[CHANNEL],
            end_stage=end[STAGE], end_at=end[MS], end_event_id=end[EVENT_ID],
            peak_end_score=(peak_v + end_v) / 2, mean_valence=m.mean_valence(),
            outcome=outcome, version=journey.version)

    def _deadline(self, journey: Journey) -> int:
        """When stream time next changes `journey`: it closes (open), or it can be evicted."""
        m = journey.moments
        if journey.status == "open":
            idle = m.last_ms + journey.idle_ms + 1
            cap = m.first_ms + self._max_len
            return cap if cap < idle else idle
        return m.last_ms + journey.idle_ms + self._lateness + 1

    def _schedule(self, key: str, state: KeyState, journeys: Sequence[Journey] | None = None
                  ) -> None:
        """Make sure the heap wakes `key` up at its next deadline; `journeys`: only these
        changed (the others are scheduled already)."""
        if journeys is None:
            journeys = state.all()
        earliest = state.scheduled
        for journey in journeys:
            if journey.moments.last is not None:
                deadline = self._deadline(journey)
                if deadline < earliest:
                    earliest = deadline
        if earliest < state.scheduled:
            state.scheduled = earliest
            heappush(self._deadlines, (earliest, key))

    def _schedule_one(self, key: str, state: KeyState, journey: Journey) -> None:
        """`_schedule(key, state, [journey])` without building the list (hot path)."""
        if journey.moments.last is None:
            return
        deadline = self._deadline(journey)
        if deadline < state.scheduled:
            state.scheduled = deadline
            heappush(self._deadlines, (deadline, key))

    @staticmethod
    def _forget_answers(state: KeyState, journey: Journey) -> None:
        answers = state.answers
        if answers:
            for event_id in journey.ids:
                answers.pop(event_id, None)
            if not answers:
                state.answers = None

    def _alive(self, journey: Journey, watermark_ms: int) -> bool:
        """Open, or closed with an acceptable event still able to reach it (its `_deadline`,
        last event + idle + lateness + 1, is ahead): not to be evicted."""
        return journey.status == "open" or self._deadline(journey) > watermark_ms

    def _evict(self, key: str, state: KeyState, watermark_ms: int) -> None:
        own = state.journey
        if own is not None and not self._alive(own, watermark_ms):
            state.journey = None
            self._forget_answers(state, own)
            state.pieces += 1
            until = own.last_ms + self._max_len
            if until > state.ended_until:
                state.ended_until = until
            self._mark_dirty(key)
        sessions = state.sessions
        kept = tuple([j for j in sessions if self._alive(j, watermark_ms)])
        if len(kept) != len(sessions):
            for journey in state.sessions:
                if journey not in kept:
                    self._forget_answers(state, journey)
            state.sessions = kept
            self._mark_dirty(key)
        forget_before = watermark_ms - self._gap - self._lateness
        retired = state.retired
        if (retired and state.journey is None and key in retired and not state.pieces
                and retired[key][1] < forget_before):
            # the journey id's own journey was withdrawn whole: once forgotten, a later event
            # of the id starts a distinct piece, as after an eviction (never a journey under the
            # same id whose versions would tie with the superseded record's)
            state.pieces = 1
            until = retired[key][1] + self._max_len
            if until > state.ended_until:
                state.ended_until = until
        if state.forget_retired(forget_before) | state.forget_withdrawn(forget_before):
            self._mark_dirty(key)
        if state.journey is None and not state.sessions:
            if state.ended_until < watermark_ms or not state.pieces:
                del self._keys[key]
                self._mark_dirty(key)
            else:
                self._keep_marker(key, state)
        else:
            self._schedule(key, state)

    def _keep_marker(self, key: str, state: KeyState) -> None:
        """A key that holds only its journey-id marker: remember it until ended_until (then
        the id may start over), as a marker apart when nothing else is held for it."""
        if state.retired or state.answers:
            if state.ended_until + 1 < state.scheduled:
                state.scheduled = state.ended_until + 1
                heappush(self._deadlines, (state.scheduled, key))
            return
        del self._keys[key]
        self._markers[key] = (state.pieces, state.ended_until)
        heappush(self._marker_ends, (state.ended_until + 1, key))
