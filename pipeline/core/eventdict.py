"""A validated event as the plain dict of its schema-v1 JSON or as a flat row, and back, for
events that have already passed the contract: what the entry stage writes into a batch record
for every event and what stage one and the ClickHouse sink read back (`pipeline.stream.batches`:
format 2 carried the dict, format 3 carries the row).

In the core, not in `pipeline.contract.encode` (which re-exports the dict form), because the
row form runs for every event in three processes (entry stage, stage one, sink) and the core is
the part that is compiled: written here, reading the event's fields is a load from the native
object instead of a descriptor call, and the row is built without the interpreter
(docs/streaming.md, fourteenth round, has the figures). The dict form is for format 2's records,
the backfill and the tests. `event_from_dict` and `event_from_row` do NOT validate: they are
only for what `event_to_dict` and `event_row` made.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, Final

from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.timefmt import THREE_DIGITS, TWO_DIGITS

_ZERO: Final = timedelta(0)
# The classes called through their Python entry points, as from interpreted code: compiled code
# calling them directly converts an int given for a `float | None` field (wait_seconds, valence)
# to a float, and an event read back must hold exactly what the parser gave it, 30 as 30
# (tests/unit/stream/test_handoff.py compares the types).
_new_event: Any = TouchpointEvent
_new_signals: Any = Signals
_new_survey: Any = Survey
# proleptic ordinal -> 'YYYY-MM-DDT': a memo of a pure function (filled on a miss, emptied when
# full), as `timefmt`'s of days; events of a stream fall on few days.
_DATES: Final[dict[int, str]] = {}
_DATES_MAX: Final = 8192


def format_occurred_at(moment: datetime) -> str:
    """RFC 3339 with the event's own offset; `Z` for UTC; fraction only when there is one:
    `moment.isoformat()` with `Z` for `+00:00`.

    >>> from datetime import timezone
    >>> format_occurred_at(datetime(2026, 11, 22, 17, 10, 9, 123000, tzinfo=timezone.utc))
    '2026-11-22T17:10:09.123000Z'
    >>> format_occurred_at(datetime(2026, 11, 22, 17, 10, 9, tzinfo=timezone(-timedelta(hours=5))))
    '2026-11-22T17:10:09-05:00'
    """
    if moment.utcoffset() != _ZERO:
        return moment.isoformat()
    # UTC, nearly every event: put together from a memo of the date and tables of digits,
    # which costs a quarter of `isoformat` and the suffix's replacement (tests hold both equal).
    ordinal = moment.toordinal()
    date = _DATES.get(ordinal)
    if date is None:
        if len(_DATES) >= _DATES_MAX:
            _DATES.clear()
        date = _DATES[ordinal] = moment.date().isoformat() + "T"
    clock = (f"{date}{TWO_DIGITS[moment.hour]}:{TWO_DIGITS[moment.minute]}:"
             f"{TWO_DIGITS[moment.second]}")
    micro = moment.microsecond
    if micro == 0:
        return clock + "Z"
    high = micro // 1000
    return f"{clock}.{THREE_DIGITS[high]}{THREE_DIGITS[micro - high * 1000]}Z"


# Field names of each optional part, in schema order.
_SIGNAL_FIELDS: Final = tuple(f.name for f in fields(Signals))
_SURVEY_FIELDS: Final = tuple(f.name for f in fields(Survey))


def _present(part: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of an optional part that are set, in schema order (absent stays absent).
    Read through `Any` (Python's attribute lookup): compiled, reading a `float | None` field as
    its declared type turns an int the parser kept (30 seconds) into 30.0, and the event read
    back must hold what the parser gave it. Not on the stream's path since format 3 (the dict
    form is for format 2's records, the backfill and the tests)."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(part, name)
        if value is not None:
            out[name] = value
    return out


def _valence(event: Any) -> Any:
    return event.valence  # as read in _present


def event_to_dict(event: TouchpointEvent) -> dict[str, Any]:
    """A dict that `parse_dict` turns back into an equal event (and the schema accepts).
    Fields left unset are omitted rather than written as null: null is not a valid value for
    any optional field in v1."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "schema_version": event.schema_version,
        "occurred_at": format_occurred_at(event.occurred_at),
        "producer": event.producer,
        "customer_id": event.customer_id,
    }
    if event.journey_id is not None:
        out["journey_id"] = event.journey_id
    out["type"] = event.type
    out["touchpoint"] = event.touchpoint
    out["channel"] = event.channel
    out["stage"] = event.stage
    valence = _valence(event)
    if valence is not None:
        out["valence"] = valence
    if event.signals is not None:
        out["signals"] = _present(event.signals, _SIGNAL_FIELDS)
    if event.survey is not None:
        out["survey"] = _present(event.survey, _SURVEY_FIELDS)
    if event.outcome is not None:
        out["outcome"] = event.outcome
    if event.attributes:
        out["attributes"] = dict(event.attributes)
    return out


def _signals(data: dict[str, Any]) -> Signals:
    made: Signals = _new_signals(data.get("wait_seconds"), data.get("handle_seconds"),
                                 data.get("transfers"), data.get("resolved"), data.get("error"))
    return made


def _survey(data: dict[str, Any]) -> Survey:
    made: Survey = _new_survey(data.get("nps"), data.get("ces"), data.get("ces_scale"),
                               data.get("csat"), data.get("comment"),
                               data.get("ces_higher_means"))
    return made


def event_from_dict(data: dict[str, Any], occurred_ms: int = -1) -> TouchpointEvent:
    """The event `event_to_dict` made, rebuilt WITHOUT validation: only for dicts this process
    or another peakend stage made from a validated event (`pipeline.stream.batches`), never for
    input. `occurred_ms`, when given, is the event's own (the parser's, not recomputed).

    >>> from datetime import timezone
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, 1, 2, 3, 4000, tzinfo=timezone.utc),
    ...                     "p", "c1", "survey", "web", "web", "use", survey=Survey(nps=9),
    ...                     signals=Signals(transfers=2), attributes={"tier": "gold"})
    >>> event_from_dict(event_to_dict(e), e.occurred_ms) == e
    True
    """
    signals = data.get("signals")
    survey = data.get("survey")
    attributes = data.get("attributes")
    made: TouchpointEvent = _new_event(
        data["event_id"],
        datetime.fromisoformat(data["occurred_at"]),
        data["producer"],
        data["customer_id"],
        data["type"],
        data["touchpoint"],
        data["channel"],
        data["stage"],
        data.get("journey_id"),
        data["schema_version"],
        data.get("valence"),
        None if signals is None else _signals(signals),
        None if survey is None else _survey(survey),
        data.get("outcome"),
        attributes if attributes else {},
        occurred_ms,
    )
    return made


# The event as a flat row (batch records of format 3, pipeline/stream/batches.py): its schema
# fields in this order, each optional part as a presence flag (0/1) followed by its fields
# inline, `attributes` a map or None when empty. Flat, so that the ClickHouse sink takes its
# touchpoint_events columns from a batch's rows by transposing them (`zip(*rows)`) instead of
# looking every field up in a dict per row, and JSON has no keys to write or read.
ROW_FIELDS: Final = (
    "event_id", "schema_version", "occurred_at", "producer", "customer_id", "journey_id",
    "type", "touchpoint", "channel", "stage", "valence",
    "signals", "wait_seconds", "handle_seconds", "transfers", "resolved", "error",
    "survey", "nps", "ces", "ces_scale", "ces_higher_means", "csat", "comment",
    "outcome", "attributes",
)
_NO_SIGNALS: Final = (0, None, None, None, None, None)
_NO_SURVEY: Final = (0, None, None, None, None, None, None)


def event_row(event: TouchpointEvent, head: list[Any]) -> list[Any]:
    """`head` followed by the event's `ROW_FIELDS` (a new list).

    >>> from datetime import timezone
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, 1, 2, 3, tzinfo=timezone.utc), "p",
    ...                     "c1", "survey", "web", "web", "use", survey=Survey(nps=9))
    >>> row = event_row(e, [7])
    >>> len(row) == 1 + len(ROW_FIELDS), row[:4], row[18:20]
    (True, [7, 'e1', 1, '2026-11-22T01:02:03Z'], [1, 9])
    """
    row = [*head, event.event_id, event.schema_version, format_occurred_at(event.occurred_at),
           event.producer, event.customer_id, event.journey_id, event.type, event.touchpoint,
           event.channel, event.stage, event.valence]
    signals = event.signals
    if signals is None:
        row.extend(_NO_SIGNALS)
    else:
        row.extend((1, signals.wait_seconds, signals.handle_seconds, signals.transfers,
                    signals.resolved, signals.error))
    survey = event.survey
    if survey is None:
        row.extend(_NO_SURVEY)
    else:
        row.extend((1, survey.nps, survey.ces, survey.ces_scale, survey.ces_higher_means,
                    survey.csat, survey.comment))
    row.append(event.outcome)
    row.append(dict(event.attributes) if event.attributes else None)
    return row


def event_from_row(row: list[Any], at: int, occurred_ms: int = -1) -> TouchpointEvent:
    """The event whose `ROW_FIELDS` start at `row[at]`, rebuilt WITHOUT validation (as
    `event_from_dict`: only for rows a peakend stage made from a validated event).

    >>> from datetime import timezone
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, 1, 2, 3, 4000, tzinfo=timezone.utc),
    ...                     "p", "c1", "survey", "web", "web", "use", survey=Survey(nps=9),
    ...                     signals=Signals(transfers=2), attributes={"tier": "gold"})
    >>> event_from_row(event_row(e, [0, 0]), 2, e.occurred_ms) == e
    True
    """
    signals = None
    if row[at + 11]:
        signals = _new_signals(row[at + 12], row[at + 13], row[at + 14], row[at + 15],
                               row[at + 16])
    survey = None
    if row[at + 17]:
        survey = _new_survey(row[at + 18], row[at + 19], row[at + 20], row[at + 22],
                             row[at + 23], row[at + 21])
    attributes = row[at + 25]
    made: TouchpointEvent = _new_event(
        row[at],
        datetime.fromisoformat(row[at + 2]),
        row[at + 3],
        row[at + 4],
        row[at + 6],
        row[at + 7],
        row[at + 8],
        row[at + 9],
        row[at + 5],
        row[at + 1],
        row[at + 10],
        signals,
        survey,
        row[at + 24],
        attributes if attributes else {},
        occurred_ms,
    )
    return made
