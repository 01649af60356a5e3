"""Follow-up cases (closed loop): who should the CX team call back, by when, and why.

Rules are data (`schemas/followup-rules.v1.json`, meanings in docs/followups.md); this module
applies them. It is pure: the stream, `peakend replay` and tests feed it the same inputs and get
the same cases.

Inputs, per customer (the key: a customer's journeys can sit on several input partitions, so
the stream routes these by customer id before this stage):
- `FollowupJourney`: the latest record of each of the customer's journeys (`from_record`);
- `FollowupEvent`: survey answers and outcome events (`from_event`), among them the outcome
  events that close a case (attribute `followup_case_id`, optional `followup_result`).

Cases are a pure function of the set of inputs (arrival order does not matter):
1. each survey answer, outcome event and journey that matches a trigger is a *candidate*; a
   journey gives one candidate: its time is the earliest time among the triggers it matches
   (`peak_at` for a trigger on the peak of a journey still open, else the journey's `ended_at`),
   its trigger the matched one with the best priority (ties: file order);
2. the customer's candidates are taken by (time, source id); one opens a case unless it falls
   within the cooldown of the previous case, or that case is not closed at its time and is
   younger than `open_case_suppresses_days` (`suppressed` counts the candidates a case held
   back);
3. the case id is a digest of customer id and source (the journey or event that opened it), so
   a redelivery or a recomputation upserts the same case.
Every change of a customer's inputs re-emits all of the customer's cases with version = the sum of
its journeys' versions + 4 x its events: it grows with every input taken in, and the same inputs
give the same version in any order. (The stream sees the latest journey record per flush where
replay sees every record: the same final content, possibly another version.) A case emitted
earlier that the inputs no longer open (an earlier late candidate took its place) is re-emitted
as `withdrawn`. Customers without any candidate and no case sent emit nothing.

A case's *window* runs from its opening to `horizon_ms` after it (the caller's horizon:
suppression windows + journey max length + allowed lateness): only a closing event, a journey
or an answer within it can close the case or be its recovery. So a case is final once stream
time is two horizons past its opening. A customer's state is forgotten once stream time passes
its last input + `horizon_ms`, and the inputs of a customer who stays active once stream time
passes them by two horizons (`FollowupTracker._prune`, exact: the cases are the same).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any, Final, NamedTuple

from pipeline.core.clock import NEVER_MS
from pipeline.core.config import DAY_MS, HOUR_MS
from pipeline.core.event import TouchpointEvent
from pipeline.core.records import (
    JourneyRecord,
    RecordField,
    names_of,
    text_or_empty,
    times_of,
)
from pipeline.core.timefmt import format_opt, parse_opt
from pipeline.core.valence import survey_ces_on_7

PRIORITIES: Final = ("high", "medium", "low")  # best first
CASE_ATTRIBUTE: Final = "followup_case_id"  # on an outcome event: the case it closes
RESULT_ATTRIBUTE: Final = "followup_result"
OPEN: Final = "open"
CLOSED: Final = "closed"
WITHDRAWN: Final = "withdrawn"
_JOURNEY_FIELDS: Final = ("end_valence", "peak_end_score", "peak_valence", "worst_valence",
                          "mean_valence")
_SURVEY_FIELDS: Final = ("nps", "ces", "csat")


@dataclass(frozen=True, slots=True)
class Trigger:
    """One rule of the file: `on` journey / survey / outcome."""

    name: str
    on: str
    priority: str
    sla_ms: int
    when: str = "closed"  # journeys: closed, or any (open journeys too)
    field: str = ""
    at_most: float = 0.0
    outcome: str = ""

    @property
    def rank(self) -> int:
        return PRIORITIES.index(self.priority)


@dataclass(frozen=True, slots=True)
class FollowupRules:
    """The parsed rules. `from_dict` checks meaning; the JSON Schema check of the file is the
    adapter's (`pipeline.followup_rules`), which reads it."""

    version: int
    cooldown_ms: int
    open_suppress_ms: int
    triggers: tuple[Trigger, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FollowupRules:
        triggers = []
        names: set[str] = set()
        for raw in data["triggers"]:
            trigger = Trigger(
                name=str(raw["name"]), on=str(raw["on"]), priority=str(raw["priority"]),
                sla_ms=round(float(raw["sla_hours"]) * HOUR_MS),
                when=str(raw.get("when", "closed")), field=str(raw.get("field", "")),
                at_most=float(raw.get("at_most", 0.0)), outcome=str(raw.get("outcome", "")))
            if trigger.name in names:
                raise ValueError(f"follow-up rules: trigger name {trigger.name!r} twice")
            if trigger.priority not in PRIORITIES:
                raise ValueError(f"follow-up rules: {trigger.name}: priority "
                                 f"{trigger.priority!r} is not one of {', '.join(PRIORITIES)}")
            allowed = {"journey": _JOURNEY_FIELDS, "survey": _SURVEY_FIELDS, "outcome": ("",)}
            if trigger.on not in allowed or trigger.field not in allowed[trigger.on]:
                raise ValueError(f"follow-up rules: {trigger.name}: field {trigger.field!r} "
                                 f"does not apply to on={trigger.on!r}")
            if trigger.on == "journey" and trigger.when == "any" and (
                    trigger.field != "peak_valence"):
                raise ValueError(f"follow-up rules: {trigger.name}: when=any needs "
                                 "field peak_valence (the only journey value an open journey "
                                 "cannot take back)")
            names.add(trigger.name)
            triggers.append(trigger)
        return cls(version=int(data["version"]),
                   cooldown_ms=round(float(data["cooldown_days"]) * DAY_MS),
                   open_suppress_ms=round(float(data["open_case_suppresses_days"]) * DAY_MS),
                   triggers=tuple(triggers))


class FollowupJourney(NamedTuple):
    """What the follow-up stage needs of a journey record (JSON-able as a list)."""

    journey_id: str
    customer_id: str
    keyed_by: str
    status: str
    version: int
    started_at: int
    ended_at: int
    peak_valence: float | None
    peak_touchpoint: str
    peak_at: int | None
    worst_valence: float | None
    end_valence: float | None
    end_touchpoint: str
    end_at: int | None
    peak_end_score: float | None
    mean_valence: float | None

    @classmethod
    def from_record(cls, r: JourneyRecord) -> FollowupJourney:
        return cls(r.journey_id, r.customer_id, r.keyed_by, r.status, r.version, r.started_at,
                   r.ended_at, r.peak_valence, r.peak_touchpoint, r.peak_at, r.worst_valence,
                   r.end_valence, r.end_touchpoint, r.end_at, r.peak_end_score, r.mean_valence)

    def value(self, field: str) -> float | None:
        value: float | None = getattr(self, field)
        return value


class FollowupEvent(NamedTuple):
    """A survey answer or outcome event as the follow-up stage needs it (JSON-able)."""

    event_id: str
    customer_id: str
    journey_id: str | None
    at_ms: int
    touchpoint: str
    nps: int | None
    ces: float | None  # on 1-7
    csat: int | None
    outcome: str | None
    closes_case: str | None
    result: str

    @classmethod
    def from_event(cls, event: TouchpointEvent, ces_5_more_effort: bool = False
                   ) -> FollowupEvent | None:
        """None for events that can neither trigger or close a case (most of them).
        `ces_5_more_effort`: the deployment's 1-5 CES runs "higher = more effort"
        (`valence.ces_on_7`)."""
        survey = event.survey
        answers = survey is not None and survey.has_score()
        if not answers and event.type != "outcome":
            return None
        case = event.attributes.get(CASE_ATTRIBUTE) if event.type == "outcome" else None
        return cls(
            event.event_id, event.customer_id, event.journey_id, event.occurred_ms,
            event.touchpoint, None if survey is None else survey.nps,
            None if survey is None else survey_ces_on_7(survey, ces_5_more_effort),
            None if survey is None else survey.csat, event.outcome, case,
            event.attributes.get(RESULT_ATTRIBUTE, event.outcome or "") if case else "")

    def value(self, field: str) -> float | None:
        value: float | None = getattr(self, field)
        return value


# A case's fields in the order of `CaseRecord` (docs/followups.md, Case record): the one
# declaration of their names and types (`pipeline.core.records.RecordField`); the followups
# table's row mapping is derived from it, tests hold the record and the migrations to it.
CASE_FIELDS: Final = (
    RecordField("case_id", "str"), RecordField("customer_id", "str"),
    text_or_empty("journey_id"), RecordField("source_id", "str"), RecordField("trigger", "str"),
    text_or_empty("triggers"), RecordField("priority", "str"),
    RecordField("opened_at", "time"), RecordField("due_at", "time"),
    RecordField("silent", "bool"), RecordField("status", "str"),
    RecordField("closed_at", "time?"), text_or_empty("result"),
    RecordField("peak_valence", "float?"), text_or_empty("peak_touchpoint"),
    RecordField("peak_at", "time?"), RecordField("end_valence", "float?"),
    text_or_empty("end_touchpoint"), RecordField("end_at", "time?"),
    RecordField("peak_end_score", "float?"), text_or_empty("survey_event_id"),
    RecordField("survey_nps", "int?"), RecordField("survey_ces", "float?"),
    RecordField("survey_csat", "int?"), text_or_empty("outcome"),
    RecordField("suppressed", "int"), text_or_empty("recovery_journey_id"),
    RecordField("recovery_peak_end_score", "float?"), RecordField("recovery_nps", "int?"),
    RecordField("rules_version", "int"), RecordField("version", "int"),
)
_CASE_FIELDS: Final = names_of(CASE_FIELDS)
_CASE_TIMES: Final = times_of(CASE_FIELDS)


class CaseRecord(NamedTuple):
    """One follow-up case; key `case_id`, upsert by `version` (docs/followups.md; fields:
    `CASE_FIELDS`)."""

    case_id: str
    customer_id: str
    journey_id: str
    source_id: str  # "journey:<id>" or "event:<event_id>": what opened it
    trigger: str
    triggers: str  # every trigger the source matched, comma-separated, file order
    priority: str
    opened_at: int
    due_at: int
    silent: bool  # no survey answer in the journey: the customer did not tell us
    status: str  # open | closed | withdrawn
    closed_at: int | None
    result: str
    peak_valence: float | None
    peak_touchpoint: str
    peak_at: int | None
    end_valence: float | None
    end_touchpoint: str
    end_at: int | None
    peak_end_score: float | None
    survey_event_id: str
    survey_nps: int | None
    survey_ces: float | None
    survey_csat: int | None
    outcome: str
    suppressed: int  # candidates this case held back (cooldown, already open)
    # the customer's first journey started after the case closed (not closed: after it opened)
    recovery_journey_id: str
    recovery_peak_end_score: float | None
    # the customer's first NPS answer after the case closed (not closed: after it opened)
    recovery_nps: int | None
    rules_version: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        values: tuple[Any, ...] = tuple(self)
        return {name: format_opt(value) if name in _CASE_TIMES else value
                for name, value in zip(_CASE_FIELDS, values, strict=True)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        values: list[Any] = [parse_opt(data.get(name)) if name in _CASE_TIMES
                             else data.get(name) for name in _CASE_FIELDS]
        return cls(*values)


# compared as lists: an assert on the names would narrow `_CASE_FIELDS` to the NamedTuple's
# fixed-length tuple type, which mypyc then fails to compile
assert list(CaseRecord._fields) == list(_CASE_FIELDS)
_RECOVERY_NPS: Final = _CASE_FIELDS.index("recovery_nps")


def _case_from_state(raw: list[Any]) -> CaseRecord:
    """A case as `CustomerState.snapshot` stored it; also one stored before `recovery_nps`
    existed (a worker upgraded over its RocksDB state and changelog), which reads it as None."""
    if len(raw) == len(_CASE_FIELDS) - 1:
        raw = [*raw[:_RECOVERY_NPS], None, *raw[_RECOVERY_NPS:]]
    return CaseRecord(*raw)


def case_id_of(customer_id: str, source_id: str) -> str:
    """Deterministic: the same customer and source give the same id in any process.

    >>> case_id_of("c1", "event:e1")
    'fu-cd98cb4d5b2cdf9937c0'
    """
    digest = hashlib.sha256(f"{customer_id}\0{source_id}".encode("utf-8", "surrogatepass"))
    return "fu-" + digest.hexdigest()[:20]


class _Candidate(NamedTuple):
    at_ms: int
    source_id: str
    trigger: Trigger
    matched: tuple[str, ...]
    journey: FollowupJourney | None
    event: FollowupEvent | None


class CustomerState:
    """Inputs of one customer and the cases last emitted for it."""

    __slots__ = ("by_journey", "closing", "cut", "emitted", "event_hits", "events",
                 "journey_hits", "journey_versions", "journeys", "order", "prior",
                 "pruned_version", "scheduled", "span", "starts", "times")

    def __init__(self) -> None:
        self.scheduled = NEVER_MS  # the deadline of its one entry on the tracker's heap
        self.journeys: dict[str, FollowupJourney] = {}
        self.events: dict[str, FollowupEvent] = {}
        self.emitted: dict[str, CaseRecord] = {}
        # What pruning left of the inputs before `cut` (`FollowupTracker._prune`): their share
        # of the version, and the last case they opened (its time and its close's, or None),
        # where the cooldown chain of the inputs held goes on from. Nothing pruned: NEVER_MS.
        self.cut = NEVER_MS
        self.pruned_version = 0
        self.prior: tuple[int, int | None] | None = None
        # The triggers each input matched, worked out once when it arrives (derived, not in
        # the snapshot; `FollowupTracker.restore_key` works them out again). A customer's
        # cases are recomputed at every update of any of its journeys: matching all of its
        # inputs against every trigger each time was a third of the tracker's time, and grew
        # with the journeys a customer holds (issue 13 item 5).
        self.journey_hits: dict[str, _Candidate] = {}  # journey id -> its candidate
        self.event_hits: dict[str, tuple[Trigger, tuple[str, ...]]] = {}  # best, all matched
        # The inputs indexed (derived as well, kept in step by `hold_journey`, `hold_event`
        # and `reindex`), so that an update costs about the candidates walked once, not the
        # inputs times the candidates: each answer's journey, each journey's answer and each
        # case's recovery were scans of every input held, and a customer id that visits 40
        # times a day (a bot, a shared id) cost 0.2 s per input after 20 days, growing with
        # the square of its inputs (`bench.bench_followup_history --visits-per-day 40`).
        self.order: list[tuple[int, str]] = []  # the candidates' (time, source id), sorted
        self.starts: list[tuple[int, str]] = []  # the journeys' (started_at, id), sorted
        self.span = 0  # >= the longest journey held (ended_at - started_at)
        self.times: list[tuple[int, str]] = []  # the events' (at_ms, event id), sorted
        self.by_journey: dict[str, list[str]] = {}  # journey id an event names -> event ids
        self.closing: dict[str, list[FollowupEvent]] = {}  # case id -> events closing it
        self.journey_versions = 0  # the sum of the journeys' versions (`version`)

    def hold_journey(self, journey: FollowupJourney) -> None:
        """Hold `journey` (a new one, or a later record of one held)."""
        old = self.journeys.get(journey.journey_id)
        self.journeys[journey.journey_id] = journey
        if old is not None:
            _take(self.starts, (old.started_at, old.journey_id))
            self.journey_versions -= old.version
        insort(self.starts, (journey.started_at, journey.journey_id))
        self.journey_versions += journey.version
        self.span = max(self.span, journey.ended_at - journey.started_at)

    def hold_event(self, event: FollowupEvent) -> None:
        """Hold `event` (one not held: events do not change)."""
        self.events[event.event_id] = event
        insort(self.times, (event.at_ms, event.event_id))
        self._link(event)

    def _link(self, event: FollowupEvent) -> None:
        """Index `event` by the journey id it names and the case it closes."""
        if event.journey_id is not None:
            self.by_journey.setdefault(event.journey_id, []).append(event.event_id)
        if event.closes_case is not None:
            self.closing.setdefault(event.closes_case, []).append(event)

    def reindex(self) -> None:
        """The indexes again from the inputs and candidates held (a restore, a prune)."""
        self.starts = sorted([(j.started_at, j.journey_id) for j in self.journeys.values()])
        self.span = max([j.ended_at - j.started_at for j in self.journeys.values()] + [0])
        self.journey_versions = sum([j.version for j in self.journeys.values()])
        self.times = sorted([(e.at_ms, e.event_id) for e in self.events.values()])
        self.by_journey = {}
        self.closing = {}
        for event in self.events.values():
            self._link(event)
        order = [(c.at_ms, c.source_id) for c in self.journey_hits.values()]
        order += [(self.events[event_id].at_ms, "event:" + event_id)
                  for event_id in self.event_hits]
        order.sort()
        self.order = order

    def version(self) -> int:
        return self.pruned_version + self.journey_versions + 4 * len(self.events)

    def _times(self) -> list[int]:
        """The inputs' times: journeys by their end, events by their time."""
        times = [j.ended_at for j in self.journeys.values()]
        times += [e.at_ms for e in self.events.values()]
        return times

    def last_ms(self) -> int:
        return max(self._times(), default=0)

    def oldest_ms(self) -> int:
        """The earliest time pruning looks at (`FollowupTracker._prune`)."""
        return min(self._times(), default=NEVER_MS)

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {"journeys": [list(j) for j in self.journeys.values()],
                                 "events": [list(e) for e in self.events.values()],
                                 "emitted": [list(c) for c in self.emitted.values()]}
        if self.cut != NEVER_MS:  # (absent until a prune: states written before read alike)
            state["pruned"] = [self.cut, self.pruned_version,
                               None if self.prior is None else list(self.prior)]
        # When `FollowupTracker.advance` looks at the customer next (to forget it, or to prune).
        # Derived before 2026-12-05 as last_ms + horizon at restore, which differs from the
        # deadline the running tracker holds once a journey record moves its end earlier, or
        # after a prune check: a restarted worker then forgot a customer a later stream time
        # than one that ran on, and the customer's next cases came with other versions.
        state["due"] = self.scheduled
        return state

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> CustomerState:
        """A part, rebuilt by its owner (`FollowupTracker.restore_key`)."""
        customer = cls()
        for raw in state["journeys"]:
            journey = FollowupJourney(*raw)
            customer.journeys[journey.journey_id] = journey
        for raw in state["events"]:
            event = FollowupEvent(*raw)
            customer.events[event.event_id] = event
        customer.reindex()  # (no candidates yet: the owner matches the inputs again)
        for raw in state["emitted"]:
            case = _case_from_state(raw)
            customer.emitted[case.case_id] = case
        pruned = state.get("pruned")
        if pruned is not None:
            cut, version, prior = pruned
            customer.cut, customer.pruned_version = int(cut), int(version)
            customer.prior = None if prior is None else (
                int(prior[0]), None if prior[1] is None else int(prior[1]))
        customer.scheduled = int(state.get("due", NEVER_MS))  # (absent: the owner derives it)
        return customer


class FollowupTracker:
    """Follow-up cases of many customers (one stream partition of the customer-keyed stage,
    or everything in replay). Calling pattern:

        cases = tracker.apply(journeys=[...], events=[...])   # FollowupJourney / FollowupEvent
        tracker.advance(watermark_ms)                         # forget customers out of reach
        for key in tracker.drain_dirty_keys(): table[key] = tracker.snapshot_key(key)
    """

    def __init__(self, rules: FollowupRules, horizon_ms: int, *,
                 resume: Mapping[str, Any] | None = None, prune: bool = True) -> None:
        """`resume`: a `snapshot()` to continue from. `prune`: forget a customer's inputs
        that stream time has left behind by two horizons even while the customer stays
        active (`_prune`: the cases are the same either way; off only for the tests that
        prove it)."""
        self.rules = rules
        self.horizon_ms = horizon_ms
        self.prune = prune
        self.customers: dict[str, CustomerState] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._dirty: set[str] = set()
        self._journey_triggers = tuple(t for t in rules.triggers if t.on == "journey")
        self._event_triggers = tuple(t for t in rules.triggers if t.on != "journey")
        if resume is not None:
            for customer_id, raw in resume["customers"].items():
                self.restore_key(customer_id, raw)
            self._dirty = set(resume.get("dirty", ()))

    # -- inputs ---------------------------------------------------------------------------
    def apply(self, journeys: Iterable[FollowupJourney] = (),
              events: Iterable[FollowupEvent] = ()) -> list[CaseRecord]:
        """Take the inputs in; returns the cases of every customer whose inputs changed."""
        changed: dict[str, None] = {}
        for journey in journeys:
            customer = self._customer(journey.customer_id)
            if journey.ended_at < customer.cut:
                continue  # pruned: a record sent again (a restart), nothing new
            old = customer.journeys.get(journey.journey_id)
            if old is None or journey.version > old.version:
                customer.hold_journey(journey)
                self._match_journey(customer, journey)
                changed[journey.customer_id] = None
        for event in events:
            customer = self._customer(event.customer_id)
            if event.at_ms < customer.cut:
                continue  # pruned: a copy sent again
            if event.event_id not in customer.events:
                customer.hold_event(event)
                self._match_event(customer, event)
                changed[event.customer_id] = None
        out: list[CaseRecord] = []
        for customer_id in changed:
            out.extend(self._emit(customer_id))
        return out

    def _customer(self, customer_id: str) -> CustomerState:
        customer = self.customers.get(customer_id)
        if customer is None:
            customer = self.customers[customer_id] = CustomerState()
        return customer

    def _emit(self, customer_id: str) -> list[CaseRecord]:
        customer = self.customers[customer_id]
        self._dirty.add(customer_id)
        if customer.scheduled == NEVER_MS:
            # One heap entry per customer: `advance` pushes it again, at the deadline it then
            # has, when the entry comes due and the customer's inputs moved on. An entry per
            # later deadline (until 2026-12-02) held about one per input within the horizon:
            # 397,414 tuples (37 MB) for 38,635 customers after 400,000 lines of a 90-day
            # history, each push a walk down a heap that grew with the history (issue 13
            # item 5, docs/core.md "Cost over long histories").
            customer.scheduled = customer.last_ms() + self.horizon_ms
            heappush(self._deadlines, (customer.scheduled, customer_id))
        if not customer.journey_hits and not customer.event_hits and not customer.emitted:
            return []  # most customers: nothing to open, nothing sent before
        version = customer.version()
        cases = {c.case_id: c for c in self.cases_of(customer_id, customer, version)}
        for case_id, old in customer.emitted.items():
            if case_id not in cases:
                cases[case_id] = old._replace(status=WITHDRAWN, version=version)
        out = sorted(cases.values(), key=lambda c: (c.opened_at, c.case_id))
        customer.emitted = {c.case_id: c for c in out}
        return out

    # -- the rules ------------------------------------------------------------------------
    def _match_journey(self, customer: CustomerState, journey: FollowupJourney) -> None:
        """Hold the candidate `journey` makes (the triggers it matches), or none."""
        matched: list[tuple[int, Trigger]] = []
        if journey.status != "superseded":
            for trigger in self._journey_triggers:
                if trigger.when == "closed" and journey.status != "closed":
                    continue
                value = journey.value(trigger.field)
                if value is None or value > trigger.at_most:
                    continue
                at = journey.peak_at if trigger.when == "any" else journey.ended_at
                matched.append((journey.ended_at if at is None else at, trigger))
        old = customer.journey_hits.pop(journey.journey_id, None)
        if old is not None:
            _take(customer.order, (old.at_ms, old.source_id))
        if matched:
            best = min(matched, key=lambda m: m[1].rank)[1]
            candidate = customer.journey_hits[journey.journey_id] = _Candidate(
                min(at for at, _ in matched), "journey:" + journey.journey_id, best,
                tuple(t.name for _, t in matched), journey, None)
            insort(customer.order, (candidate.at_ms, candidate.source_id))

    def _match_event(self, customer: CustomerState, event: FollowupEvent) -> None:
        """Hold the triggers `event` matches, if any (events do not change once held)."""
        if event.closes_case is not None:
            return
        hits = [t for t in self._event_triggers if _event_matches(t, event)]
        if hits:
            customer.event_hits[event.event_id] = (min(hits, key=lambda t: t.rank),
                                                   tuple(t.name for t in hits))
            insort(customer.order, (event.at_ms, "event:" + event.event_id))

    def candidates(self, customer: CustomerState) -> list[_Candidate]:
        """The inputs that would open a case, in time order."""
        return [self._candidate(customer, source_id) for _, source_id in customer.order]

    def _candidate(self, customer: CustomerState, source_id: str) -> _Candidate:
        """The candidate of `source_id`. An event's journey is looked up here: it can change
        as the customer's journeys do."""
        kind, _, input_id = source_id.partition(":")
        if kind == "journey":
            return customer.journey_hits[input_id]
        best_trigger, names = customer.event_hits[input_id]
        event = customer.events[input_id]
        return _Candidate(event.at_ms, source_id, best_trigger, names,
                          self._journey_of(customer, event), event)

    def cases_of(self, customer_id: str, customer: CustomerState, version: int
                 ) -> list[CaseRecord]:
        """The customer's cases from its inputs alone (no emission state)."""
        opened, _ = self._chain(customer_id, customer, customer.order)
        return [self._case(customer_id, customer, self._candidate(customer, source_id),
                           case_id, close, suppressed, version)
                for source_id, case_id, close, suppressed in opened]

    def _chain(self, customer_id: str, customer: CustomerState, order: list[tuple[int, str]]
               ) -> tuple[list[list[Any]], tuple[int, int | None] | None]:
        """The cases the candidates of `order` ((time, source id), in order) open, each
        [source id, case id, close event, suppressed], going on from the case the pruned
        inputs opened last (`CustomerState.prior`); and the last case opened, as `prior`
        holds it. Only the candidates that open a case are looked at further, and those a
        case holds back are counted, not walked: after a case opened at t, every candidate
        before `_held_until` is held back (a bot's customer id can hold thousands)."""
        closes = customer.closing
        opened: list[list[Any]] = []
        last = customer.prior  # (time, its close's time or None) of the last case opened
        index, count = 0, len(order)
        while index < count:
            at, source_id = order[index]
            if last is not None:
                until = self._held_until(last[0], last[1])
                if at < until:
                    after = bisect_left(order, (until, ""), index)  # source ids are not ""
                    if opened:  # (else the prior's: pruned, and final)
                        opened[-1][3] += after - index
                    index = after
                    continue
            case_id = case_id_of(customer_id, source_id)
            close = self._close_of(closes.get(case_id), at)
            opened.append([source_id, case_id, close, 0])
            last = (at, None if close is None else close.at_ms)
            index += 1
        return opened, last

    def _held_until(self, opened_at: int, closed_at: int | None) -> int:
        """The time before which a case opened at `opened_at` (closed at `closed_at`, or
        open) holds a candidate back: one at t is held back when t is within the cooldown,
        or the case is still open at t (no close, or its close after t) and t is within the
        open case's suppression. Both hold from the opening on, so together they hold up to
        the later of their ends.

        >>> tracker = FollowupTracker(FollowupRules(1, 7 * DAY_MS, 30 * DAY_MS, ()), DAY_MS)
        >>> [tracker._held_until(0, close) // DAY_MS for close in (None, 3 * DAY_MS, 9 * DAY_MS)]
        [30, 7, 9]
        """
        cooldown_end = opened_at + self.rules.cooldown_ms
        suppress_end = opened_at + self.rules.open_suppress_ms
        if closed_at is not None:
            suppress_end = min(suppress_end, closed_at)
        return max(cooldown_end, suppress_end)

    def _close_of(self, closing: list[FollowupEvent] | None, opened_at: int
                  ) -> FollowupEvent | None:
        """The event that closes a case opened at `opened_at`: the first (time, event id) of
        those naming it, within the case's window (`_in_window`)."""
        if not closing:
            return None
        inside = [e for e in closing if self._in_window(opened_at, e.at_ms)]
        return min(inside, key=lambda e: (e.at_ms, e.event_id), default=None)

    def _in_window(self, opened_at: int, at_ms: int) -> bool:
        """Whether an input at `at_ms` may still change a case opened at `opened_at` (close
        it, be its recovery journey or answer): from its opening to one horizon after it.
        Bounded so that a case is final once stream time is two horizons past its opening,
        whatever the customer does after (`_prune`)."""
        return opened_at <= at_ms <= opened_at + self.horizon_ms

    def _case(self, customer_id: str, customer: CustomerState, candidate: _Candidate,
              case_id: str, close: FollowupEvent | None, suppressed: int, version: int
              ) -> CaseRecord:
        journey, event = candidate.journey, candidate.event
        answer = event if event is not None and event.outcome is None else (
            None if journey is None else self._answer_in(customer, journey))
        silent = event is None and answer is None
        # The customer's next journey: the first that started after the case closed (contacted),
        # or after it opened (not contacted yet): analysts compare the two (recovery).
        # Journeys with moments only: the closing outcome event alone is a marker journey.
        since = candidate.at_ms if close is None else close.at_ms
        until = candidate.at_ms + self.horizon_ms  # the case's window (`_in_window`)
        recovery = self._recovery(customer, since, until,
                                  journey.journey_id if journey is not None else "")
        # NPS after contact: the customer's first answer after the same moment, in any journey
        # (survey answers are sparse; the one that opened the case is not after it)
        nps_after = self._answer_after(customer, since, until)
        trigger = candidate.trigger
        return CaseRecord(
            case_id=case_id, customer_id=customer_id,
            journey_id=journey.journey_id if journey is not None else (
                event.journey_id or "" if event is not None else ""),
            source_id=candidate.source_id, trigger=trigger.name,
            triggers=",".join(candidate.matched), priority=trigger.priority,
            opened_at=candidate.at_ms, due_at=candidate.at_ms + trigger.sla_ms, silent=silent,
            status=OPEN if close is None else CLOSED,
            closed_at=None if close is None else close.at_ms,
            result="" if close is None else close.result,
            peak_valence=None if journey is None else journey.peak_valence,
            peak_touchpoint="" if journey is None else journey.peak_touchpoint,
            peak_at=None if journey is None else journey.peak_at,
            end_valence=None if journey is None else journey.end_valence,
            end_touchpoint="" if journey is None else journey.end_touchpoint,
            end_at=None if journey is None else journey.end_at,
            peak_end_score=None if journey is None else journey.peak_end_score,
            survey_event_id="" if answer is None else answer.event_id,
            survey_nps=None if answer is None else answer.nps,
            survey_ces=None if answer is None else answer.ces,
            survey_csat=None if answer is None else answer.csat,
            outcome="" if event is None or event.outcome is None else event.outcome,
            suppressed=suppressed,
            recovery_journey_id="" if recovery is None else recovery.journey_id,
            recovery_peak_end_score=None if recovery is None else recovery.peak_end_score,
            recovery_nps=None if nps_after is None else nps_after.nps,
            rules_version=self.rules.version, version=version)

    @staticmethod
    def _recovery(customer: CustomerState, since: int, until: int, source: str
                  ) -> FollowupJourney | None:
        """The first journey (by start, id) with moments that started in (since, until],
        other than `source` (the case's own)."""
        for journey_id in _ids_within(customer.starts, since, until):
            journey = customer.journeys[journey_id]
            if (journey.status != "superseded" and journey_id != source
                    and journey.peak_end_score is not None):
                return journey
        return None

    @staticmethod
    def _answer_after(customer: CustomerState, since: int, until: int) -> FollowupEvent | None:
        """The first NPS answer (by time, event id) in (since, until]."""
        for event_id in _ids_within(customer.times, since, until):
            event = customer.events[event_id]
            if event.nps is not None and event.closes_case is None:
                return event
        return None

    @staticmethod
    def _journey_of(customer: CustomerState, event: FollowupEvent) -> FollowupJourney | None:
        """The journey an event belongs to, when known (the first by id among those that
        hold it, `_holds`): the journey of the id it names, and the journeys that span its
        time (started at most the longest journey held before it)."""
        found: list[FollowupJourney] = []
        if event.journey_id is not None:
            named = customer.journeys.get(event.journey_id)
            if named is not None and named.status != "superseded":
                found.append(named)
        for journey_id in _ids_within(customer.starts, event.at_ms - customer.span - 1,
                                      event.at_ms):
            journey = customer.journeys[journey_id]
            if (journey.status != "superseded" and journey.journey_id != event.journey_id
                    and _holds(journey, event)):
                found.append(journey)
        return min(found, key=lambda j: j.journey_id, default=None)

    @staticmethod
    def _answer_in(customer: CustomerState, journey: FollowupJourney) -> FollowupEvent | None:
        """The journey's first survey answer (by time, event id), if any: among the events
        that name it and those within its time (`_holds`)."""
        named = (customer.events[event_id]
                 for event_id in customer.by_journey.get(journey.journey_id, ()))
        answers = [e for e in named if e.outcome is None and e.closes_case is None]
        for event_id in _ids_within(customer.times, journey.started_at - 1, journey.ended_at):
            event = customer.events[event_id]
            if event.outcome is None and event.closes_case is None and _holds(journey, event):
                answers.append(event)
                break  # the first in time within it; those naming it may come earlier
        return min(answers, key=lambda e: (e.at_ms, e.event_id), default=None)

    # -- state ----------------------------------------------------------------------------
    def advance(self, watermark_ms: int) -> list[str]:
        """Forget the customers whose inputs stream time has left behind; their ids."""
        gone: list[str] = []
        heap = self._deadlines
        while heap and heap[0][0] < watermark_ms:
            deadline, customer_id = heappop(heap)
            customer = self.customers.get(customer_id)
            if customer is None or customer.scheduled != deadline:
                continue  # the entry of a customer forgotten, or restored since
            due = customer.last_ms() + self.horizon_ms
            if due < watermark_ms:
                del self.customers[customer_id]
                self._dirty.add(customer_id)
                gone.append(customer_id)
                continue
            # inputs came since the entry was pushed: due later (>= watermark_ms)
            if self.prune:
                self._prune(customer_id, customer, watermark_ms)
                # the next look at what to prune: when the oldest input held may go, and not
                # before a quarter horizon from now (a long journey can hold the cut back)
                again = max(customer.oldest_ms() + 2 * self.horizon_ms + 1,
                            watermark_ms + self.horizon_ms // 4 + 1)
                due = min(due, again)
            customer.scheduled = due
            self._dirty.add(customer_id)  # its state holds the deadline (`due`)
            heappush(heap, (due, customer_id))
        # sorted: the heap's order depends on its history (entries of deadlines that moved
        # on), which a restored tracker does not share
        return sorted(gone)

    def _prune(self, customer_id: str, customer: CustomerState, watermark_ms: int) -> None:
        """Forget the inputs of an active customer that stream time has left two horizons
        behind (`advance` marks the customer changed either way: its deadline moves). Exact:
        the cases are what they would be with every input held.

        - A case's window (`_in_window`) is one horizon from its opening; an input in it can
          still arrive up to the journey maximum length + the lateness later (both within the
          horizon, `followup_rules.horizon_ms`). So a case opened two horizons ago is final,
          sent with its final content by the update that brought its last input; it is not
          sent again (versions aside, which only grow: what the pruned inputs added stays in
          `pruned_version`).
        - The cut is never after the start of a journey held (its candidate, answers and
          events stay together), so every candidate pruned comes before every candidate held,
          and the cooldown chain goes on from the last case the pruned ones opened (`prior`).
        - An input before the cut that comes again (a restart sends records again) is passed
          over (`apply`): none can be new, it would be later than the lateness."""
        cut = watermark_ms - 2 * self.horizon_ms
        while True:  # back to the start of every journey held (one that ends after the cut)
            starts = [j.started_at for j in customer.journeys.values() if j.ended_at >= cut]
            earlier = min(starts, default=cut)
            if earlier >= cut:
                break
            cut = earlier
        if cut <= customer.cut:
            return
        gone_journeys = [j for j in customer.journeys.values() if j.ended_at < cut]
        gone_events = [e for e in customer.events.values() if e.at_ms < cut]
        if not gone_journeys and not gone_events:
            return
        _, prior = self._chain(customer_id, customer,
                               [key for key in customer.order if key[0] < cut])
        customer.cut = cut
        customer.prior = prior
        version = customer.version()  # kept: what the inputs going add stays in pruned_version
        for journey in gone_journeys:
            del customer.journeys[journey.journey_id]
            customer.journey_hits.pop(journey.journey_id, None)
        for event in gone_events:
            del customer.events[event.event_id]
            customer.event_hits.pop(event.event_id, None)
        customer.emitted = {case_id: case for case_id, case in customer.emitted.items()
                            if case.opened_at >= cut}
        customer.reindex()
        customer.pruned_version += version - customer.version()

    def drain_dirty_keys(self) -> list[str]:
        keys = sorted(self._dirty)
        self._dirty.clear()
        return keys

    def snapshot_key(self, customer_id: str) -> dict[str, Any] | None:
        """One customer's state as JSON-able data, or None when none is held."""
        customer = self.customers.get(customer_id)
        return None if customer is None else customer.snapshot()

    def restore_key(self, customer_id: str, state: Mapping[str, Any] | None) -> None:
        """Replace one customer's state by `state` (from `snapshot_key`; None removes it)."""
        if state is None:
            self.customers.pop(customer_id, None)
            return
        held = self.customers.get(customer_id)
        customer = self.customers[customer_id] = CustomerState.from_snapshot(state)
        for journey in customer.journeys.values():
            self._match_journey(customer, journey)
        for event in customer.events.values():
            self._match_event(customer, event)
        if customer.scheduled == NEVER_MS:  # a state written before `due` was kept
            customer.scheduled = customer.last_ms() + self.horizon_ms
        if held is None or held.scheduled != customer.scheduled:
            heappush(self._deadlines, (customer.scheduled, customer_id))
        # else the entry of the state replaced is the one it would push

    def snapshot(self) -> dict[str, Any]:
        """Every customer (`snapshot_key`) and the customers changed since the last
        `drain_dirty_keys` (the state contract, `pipeline.core.protocol`)."""
        return {"customers": {k: c.snapshot() for k, c in sorted(self.customers.items())},
                "dirty": sorted(self._dirty)}


def _event_matches(trigger: Trigger, event: FollowupEvent) -> bool:
    if trigger.on == "outcome":
        return event.outcome is not None and event.outcome == trigger.outcome
    if trigger.on != "survey":
        return False
    value = event.value(trigger.field)
    return value is not None and value <= trigger.at_most


def _holds(journey: FollowupJourney, event: FollowupEvent) -> bool:
    """Whether `event` belongs to `journey`: the same producer journey id (also a later piece
    `<id>@<time>` of it), else a customer-keyed journey spanning the event's time."""
    if event.journey_id is not None:
        return journey.journey_id == event.journey_id or (
            journey.journey_id.startswith(event.journey_id + "@")
            and journey.keyed_by == "journey_id"
            and journey.started_at <= event.at_ms <= journey.ended_at)
    return (journey.keyed_by != "journey_id"
            and journey.started_at <= event.at_ms <= journey.ended_at)


def _ids_within(index: list[tuple[int, str]], since: int, until: int) -> Iterator[str]:
    """The ids of the sorted `index` ((time, id)) whose time is in (since, until], in order.

    >>> list(_ids_within([(1, "a"), (2, "b"), (2, "c"), (5, "d")], 1, 4))
    ['b', 'c']
    """
    for position in range(bisect_left(index, (since + 1, "")), len(index)):
        at, key = index[position]
        if at > until:
            return
        yield key


def _take(items: list[tuple[int, str]], key: tuple[int, str]) -> None:
    """Remove `key` from the sorted `items` (it is there)."""
    del items[bisect_left(items, key)]
