"""The follow-up stage of the stream, for one partition of `<app>-followup-inputs`.

Why its own stage: the per-customer cooldown needs every input of a customer in one place, and
stage one is partitioned by *journey* key (a producer journey id, else the customer id), so one
customer's journeys can sit on several partitions. Stage one therefore sends what the follow-up
rules need (the latest record of every journey per flush, survey answers and outcome events) to
an internal topic partitioned by customer id; this stage applies them to a `FollowupTracker`
(pipeline/core/followups.py) and sends the cases to `cx.followups` keyed by case id. No Faust
object: the worker persists `dirty_state()` in a table keyed by customer.

Input messages are JSON objects: {"j": [FollowupJourney fields]} or {"e": [FollowupEvent
fields]}, sent in batch records {"b": [input, ...]} (one per target partition and flush:
`pipeline.stream.outbox`). Every input is idempotent in the tracker (a journey keeps its
highest version, an event its first copy by event_id), so a re-read after a crash changes
nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from pipeline.core.clock import NEVER_MS
from pipeline.core.event import TouchpointEvent
from pipeline.core.followups import (
    WITHDRAWN,
    CaseRecord,
    FollowupEvent,
    FollowupJourney,
    FollowupRules,
    FollowupTracker,
)
from pipeline.core.records import JOURNEY_FIELDS, JourneyRecord
from pipeline.stream.layout import (
    INT,
    LIST,
    NUMBER,
    STR,
    TIME,
    Kinds,
    check_fields,
    check_row,
    of_record_type,
    optional,
)

NEVER = NEVER_MS

# The kinds of each input's fields, as `journey_input` and `event_input` write them (`read`
# checks a record against them before the stage applies any of it): a journey's from the
# journey record's declaration (its fields are a part of the record's), an event's here.
_JOURNEY_TYPES = {f.name: f.type for f in JOURNEY_FIELDS}
JOURNEY_KINDS: tuple[Kinds, ...] = tuple(
    of_record_type(_JOURNEY_TYPES[name]) for name in FollowupJourney._fields)
EVENT_KINDS: tuple[Kinds, ...] = (
    STR, STR, optional(STR), TIME, STR,  # event_id, customer_id, journey_id, at_ms, touchpoint
    optional(INT), optional(NUMBER), optional(INT),  # nps, ces (on 1-7), csat
    optional(STR), optional(STR), STR)  # outcome, closes_case, result
_INPUT = {"j": JOURNEY_KINDS, "e": EVENT_KINDS}


def journey_input(record: JourneyRecord) -> tuple[bytes, dict[str, Any]]:
    """(key, message) of a journey record for the follow-up stage. Every record goes (the
    latest of each journey per flush, as to cx.journeys): cases, their evidence and versions are
    functions of each journey's latest record, which a filter on the record could hold back
    (a journey that matched a trigger and then stopped matching)."""
    return record.customer_id.encode(), {"j": list(FollowupJourney.from_record(record))}


def event_input(event: TouchpointEvent, ces_5_more_effort: bool = False
                ) -> tuple[bytes, dict[str, Any]] | None:
    """(key, message) of an accepted event for the follow-up stage, or None (most events);
    `ces_5_more_effort` as in the core's JourneyConfig."""
    signal = FollowupEvent.from_event(event, ces_5_more_effort)
    if signal is None:
        return None
    return event.customer_id.encode(), {"e": list(signal)}


def unbatched(messages: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Inputs in order, batch records expanded.

    >>> list(unbatched([{"b": [{"e": [1]}, {"j": [2]}]}, {"e": [3]}]))
    [{'e': [1]}, {'j': [2]}, {'e': [3]}]
    """
    for message in messages:
        if "b" in message:
            yield from message["b"]
        else:
            yield message


def read(value: bytes) -> dict[str, Any]:
    """A follow-up inputs record (a batch record, or one input as written before batches),
    checked whole (pipeline/stream/layout.py: why); a ValueError names what does not read.

    >>> read(b'{"b":[{"e":["e1","c1",null,5,"web",0,null,null,null,null,""]}]}')["b"][0]["e"][3]
    5
    >>> read(b'{"b":[{"e":["e1","c1",null,"5","web",0,null,null,null,null,""]}]}')
    Traceback (most recent call last):
    ValueError: a follow-up event (input 0 of a batch) whose item 3 is a str, not int
    """
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"a follow-up inputs record that is not JSON: {exc}") from None
    if type(record) is dict and "b" in record:
        check_fields(record, {"b": LIST}, {}, "a follow-up inputs record")
        for i, message in enumerate(record["b"]):
            _check_input(message, f"(input {i} of a batch)")
    else:
        _check_input(record, "(a record of its own)")
    return record  # type: ignore[no-any-return]


def _check_input(message: Any, where: str) -> None:
    if type(message) is not dict or len(message) != 1 or next(iter(message)) not in _INPUT:
        raise ValueError(f'a follow-up input {where} that is not {{"j": [...]}} or '
                         f'{{"e": [...]}}')
    kind, fields = next(iter(message.items()))
    check_row(fields, _INPUT[kind], f"a follow-up {'journey' if kind == 'j' else 'event'} "
                                    f"{where}")


class FollowupStage:
    """Follow-up cases of the customers of one input partition."""

    def __init__(self, rules: FollowupRules, horizon_ms: int) -> None:
        self.tracker = FollowupTracker(rules, horizon_ms)
        self.watermark = NEVER  # the latest input time seen: drives forgetting
        # case life-cycle changes since the last drain: (opened|closed|withdrawn, priority)
        self.transitions: Counter[tuple[str, str]] = Counter()

    def restore_keys(self, states: Iterable[tuple[str, Any]], watermark: int) -> list[CaseRecord]:
        """Restore the partition's customers; returns their cases to send again (they may have
        been lost with a crash between the state write and the output delivery: harmless
        duplicates otherwise, same versions)."""
        out: list[CaseRecord] = []
        for customer_id, state in states:
            self.tracker.restore_key(customer_id, state)
            out.extend(self.tracker.customers[customer_id].emitted.values())
        self.watermark = max(self.watermark, watermark)
        return out

    def apply(self, messages: Iterable[dict[str, Any]]) -> list[CaseRecord]:
        """Apply a batch of input messages; the cases of every customer they changed."""
        journeys: list[FollowupJourney] = []
        events: list[FollowupEvent] = []
        for message in unbatched(messages):
            if "j" in message:
                journey = FollowupJourney(*message["j"])
                journeys.append(journey)
                self.watermark = max(self.watermark, journey.ended_at)
            elif "e" in message:
                event = FollowupEvent(*message["e"])
                events.append(event)
                self.watermark = max(self.watermark, event.at_ms)
        customers = self.tracker.customers
        touched = {j.customer_id for j in journeys} | {e.customer_id for e in events}
        before = {c: {k: v.status for k, v in customers[c].emitted.items()}
                  for c in touched if c in customers}
        cases = self.tracker.apply(journeys, events)
        for case in cases:
            old = before.get(case.customer_id, {}).get(case.case_id)
            if old != case.status:
                change = "opened" if old is None else case.status
                if change != WITHDRAWN or old is not None:
                    self.transitions[(change, case.priority)] += 1
        self.tracker.advance(self.watermark)
        return cases

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(customer id, state or None to delete) changed since the last call."""
        return [(key, self.tracker.snapshot_key(key)) for key in self.tracker.drain_dirty_keys()]
