"""Output records (docs/records.md): what the core emits to every sink.

Time fields hold integer epoch milliseconds (`None` where the contract allows null); `to_dict()`
turns them into RFC 3339 UTC text with milliseconds and `Z`, `from_dict()` parses them back.
Field names, order and types are declared once, in `JOURNEY_FIELDS`, `METRIC_FIELDS` and
`ALERT_FIELDS` (docs/records.md lists the same, a test holds them equal).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final, NamedTuple, TypeVar

from pipeline.core.timefmt import format_ms, format_opt, parse_opt

_R = TypeVar("_R", bound=tuple[Any, ...])

# Metric and alert records (and EndDelta) are typed named tuples: immutable, compact, and built
# from a tuple of values in one C call, `new_record(MetricRecord, values)` (tuple.__new__),
# where the keyword constructor runs Python code. JourneyRecord, built once per event, is a
# plain class (its docstring says why).
new_record: Final = tuple.__new__


def _to_dict(names: tuple[str, ...], values: Iterable[Any], times: frozenset[str]
             ) -> dict[str, Any]:
    """JSON-able dict in contract order; the epoch-ms fields `times` as RFC 3339 text."""
    return {name: format_opt(value) if name in times else value
            for name, value in zip(names, values, strict=True)}


def _values_of(names: tuple[str, ...], data: dict[str, Any], times: frozenset[str]
               ) -> list[Any]:
    """Inverse of `_to_dict`: the values in `names` order, the `times` fields parsed back."""
    return [parse_opt(data.get(name)) if name in times else data.get(name) for name in names]


def _from_dict(cls: type[_R], data: dict[str, Any], times: frozenset[str]) -> _R:
    names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    return tuple.__new__(cls, _values_of(names, data, times))


class RecordField(NamedTuple):
    """One field of an output record: the declaration everything else about it is derived from
    or checked against (the record class, its `to_dict` times, the table row of
    `pipeline.storage.tables`, the DDL of schemas/clickhouse/ and the tables of docs/records.md;
    tests/unit/storage/test_record_fields.py and tests/unit/core/test_core_record_fields.py fail
    when one of them disagrees)."""

    name: str
    # As docs/records.md writes it: str, int, float, bool, time (epoch ms in the record, RFC 3339
    # in its dict, DateTime plus an `_ms` Int64 column in its table); `?` allows null.
    type: str
    # A text that a record dict may lack or hold as null (written before the field existed, or
    # never set): its table stores `empty` then ('' unless the field says otherwise).
    or_empty: bool = False
    empty: str = ""


def text_or_empty(name: str) -> RecordField:
    """A text field that a record dict may lack or hold as null: stored as ''."""
    return RecordField(name, "str", or_empty=True)


# The fields of each record in the order of the contract (docs/records.md).
JOURNEY_FIELDS: Final = (
    RecordField("journey_id", "str"), RecordField("customer_id", "str"),
    RecordField("keyed_by", "str"), RecordField("status", "str"), text_or_empty("close_reason"),
    RecordField("started_at", "time"), RecordField("ended_at", "time"),
    RecordField("duration_seconds", "float"), RecordField("events", "int"),
    RecordField("moments", "int"),
    RecordField("peak_valence", "float?"), text_or_empty("peak_touchpoint"),
    RecordField("peak_at", "time?"), text_or_empty("peak_event_id"),
    RecordField("best_valence", "float?"), text_or_empty("best_touchpoint"),
    RecordField("worst_valence", "float?"), text_or_empty("worst_touchpoint"),
    RecordField("end_valence", "float?"), text_or_empty("end_touchpoint"),
    text_or_empty("end_channel"), text_or_empty("end_stage"), RecordField("end_at", "time?"),
    text_or_empty("end_event_id"),
    RecordField("peak_end_score", "float?"), RecordField("mean_valence", "float?"),
    text_or_empty("outcome"), RecordField("version", "int"),
)
# The parts of a metric record that replay's window rows (`pipeline.core.windows.WINDOW_FIELDS`)
# hold as well, declared here once and put together into both tables: the series, the span, the
# estimate and the counts.
SERIES_FIELDS: Final = (
    RecordField("metric", "str"), RecordField("segment_dim", "str"),
    RecordField("segment_value", "str"))
SPAN_FIELDS: Final = (RecordField("window_start", "time"), RecordField("window_end", "time"))
ESTIMATE_FIELDS: Final = (  # `pipeline.core.surveys.Estimate`
    RecordField("n", "int"), RecordField("value", "float?"), RecordField("ci_low", "float?"),
    RecordField("ci_high", "float?"))
COUNT_FIELDS: Final = (  # the counts of the metric kinds (each kind's `columns`, surveys.py)
    RecordField("promoters", "int"), RecordField("passives", "int"),
    RecordField("detractors", "int"), RecordField("total", "float"),
    RecordField("total_sq", "float"), RecordField("easy", "int"), RecordField("hard", "int"),
    RecordField("positives", "int"))
METRIC_FIELDS: Final = (
    *SERIES_FIELDS, *SPAN_FIELDS, RecordField("source_partition", "int"), *ESTIMATE_FIELDS,
    *COUNT_FIELDS, RecordField("version", "int"),
)
ALERT_FIELDS: Final = (
    RecordField("alert_id", "str"), RecordField("rule", "str"), RecordField("metric", "str"),
    RecordField("segment_dim", "str"), RecordField("segment_value", "str"),
    RecordField("state", "str"), RecordField("severity", "str"),
    RecordField("fired_at", "time"), RecordField("resolved_at", "time?"),
    RecordField("window_start", "time"), RecordField("window_end", "time"),
    RecordField("value", "float"), RecordField("baseline", "float"), RecordField("n", "int"),
    RecordField("baseline_n", "int"), RecordField("ci_low", "float"),
    RecordField("ci_high", "float"), RecordField("effect", "float"),
    RecordField("p_value", "float"), RecordField("version", "int"),
    # issue 16 (migration 004): absent from records written before
    RecordField("threshold", "float?"), text_or_empty("message"),
)


def names_of(fields: tuple[RecordField, ...]) -> tuple[str, ...]:
    return tuple([f.name for f in fields])


def times_of(fields: tuple[RecordField, ...]) -> frozenset[str]:
    """The fields a record holds as epoch ms and its dict as RFC 3339 text."""
    return frozenset([f.name for f in fields if f.type.startswith("time")])


_JOURNEY_FIELDS: Final = names_of(JOURNEY_FIELDS)
_JOURNEY_TIMES: Final = times_of(JOURNEY_FIELDS)
_METRIC_TIMES: Final = times_of(METRIC_FIELDS)
_ALERT_TIMES: Final = times_of(ALERT_FIELDS)
# The count columns of a MetricRecord, in order (a metric kind fills its own,
# `pipeline.core.surveys`, zeros elsewhere).
COUNT_COLUMNS: Final = names_of(COUNT_FIELDS)


class JourneyRecord:
    """Peak-end state of one journey; key `journey_id`, upsert by `version` (fields:
    `JOURNEY_FIELDS`; mypyc needs each attribute written out below, and
    tests/unit/core/test_core_record_fields.py holds those lists to the table).

    A plain class where the other records are named tuples: the stream builds one per event,
    and compiled, a class keeps its ints and floats unboxed in its fields (one allocation; the
    tuple took ~15 for the boxed values and its two copies, a third of the journey tracker's
    instructions, docs/core.md Performance). It compares, hashes, pickles and prints like the
    named tuple did; `astuple()` gives its values in `_fields` order.
    """

    __slots__ = _JOURNEY_FIELDS
    _fields: ClassVar[tuple[str, ...]] = _JOURNEY_FIELDS

    def __init__(
        self,
        journey_id: str,
        customer_id: str,
        keyed_by: str,
        status: str,
        close_reason: str,
        started_at: int,
        ended_at: int,
        duration_seconds: float,
        events: int,
        moments: int,
        peak_valence: float | None,
        peak_touchpoint: str,
        peak_at: int | None,
        peak_event_id: str,
        best_valence: float | None,
        best_touchpoint: str,
        worst_valence: float | None,
        worst_touchpoint: str,
        end_valence: float | None,
        end_touchpoint: str,
        end_channel: str,
        end_stage: str,
        end_at: int | None,
        end_event_id: str,
        peak_end_score: float | None,
        mean_valence: float | None,
        outcome: str,
        version: int,
    ) -> None:
        self.journey_id = journey_id
        self.customer_id = customer_id
        self.keyed_by = keyed_by
        self.status = status
        self.close_reason = close_reason
        self.started_at = started_at
        self.ended_at = ended_at
        self.duration_seconds = duration_seconds
        self.events = events
        self.moments = moments
        self.peak_valence = peak_valence
        self.peak_touchpoint = peak_touchpoint
        self.peak_at = peak_at
        self.peak_event_id = peak_event_id
        self.best_valence = best_valence
        self.best_touchpoint = best_touchpoint
        self.worst_valence = worst_valence
        self.worst_touchpoint = worst_touchpoint
        self.end_valence = end_valence
        self.end_touchpoint = end_touchpoint
        self.end_channel = end_channel
        self.end_stage = end_stage
        self.end_at = end_at
        self.end_event_id = end_event_id
        self.peak_end_score = peak_end_score
        self.mean_valence = mean_valence
        self.outcome = outcome
        self.version = version

    def astuple(self) -> tuple[Any, ...]:
        return (self.journey_id, self.customer_id, self.keyed_by, self.status, self.close_reason,
                self.started_at, self.ended_at, self.duration_seconds, self.events,
                self.moments, self.peak_valence, self.peak_touchpoint, self.peak_at,
                self.peak_event_id, self.best_valence, self.best_touchpoint,
                self.worst_valence, self.worst_touchpoint, self.end_valence,
                self.end_touchpoint, self.end_channel, self.end_stage, self.end_at,
                self.end_event_id, self.peak_end_score, self.mean_valence, self.outcome,
                self.version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JourneyRecord):
            return NotImplemented
        return self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash(self.astuple())

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self.astuple(),
                                                           strict=True))
        return f"JourneyRecord({pairs})"

    def __reduce__(self) -> tuple[type[JourneyRecord], tuple[Any, ...]]:
        return (JourneyRecord, self.astuple())

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than `_to_dict(self._fields, self.astuple(), _JOURNEY_TIMES)`:
        # compiled, a dict display is one presized dict filled from the unboxed fields, where
        # the zip built a tuple of boxed values and grew the dict four times (the worker's
        # outputs encode a journey record for every 3 events: docs/streaming.md, thirteenth
        # round). tests/unit/core/test_core_record_fields.py holds it to `_to_dict`.
        return {
            "journey_id": self.journey_id, "customer_id": self.customer_id,
            "keyed_by": self.keyed_by, "status": self.status, "close_reason": self.close_reason,
            "started_at": format_ms(self.started_at), "ended_at": format_ms(self.ended_at),
            "duration_seconds": self.duration_seconds, "events": self.events,
            "moments": self.moments, "peak_valence": self.peak_valence,
            "peak_touchpoint": self.peak_touchpoint, "peak_at": format_opt(self.peak_at),
            "peak_event_id": self.peak_event_id, "best_valence": self.best_valence,
            "best_touchpoint": self.best_touchpoint, "worst_valence": self.worst_valence,
            "worst_touchpoint": self.worst_touchpoint, "end_valence": self.end_valence,
            "end_touchpoint": self.end_touchpoint, "end_channel": self.end_channel,
            "end_stage": self.end_stage, "end_at": format_opt(self.end_at),
            "end_event_id": self.end_event_id, "peak_end_score": self.peak_end_score,
            "mean_valence": self.mean_valence, "outcome": self.outcome, "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JourneyRecord:
        return cls(*_values_of(cls._fields, data, _JOURNEY_TIMES))


class MetricRecord(NamedTuple):
    """One partial bucket of one metric and segment from one source partition (fields:
    `METRIC_FIELDS`; replay's `pipeline.core.windows.WindowRecord` holds one for its sums rather
    than repeating these fields)."""

    metric: str
    segment_dim: str
    segment_value: str
    window_start: int
    window_end: int
    source_partition: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    promoters: int
    passives: int
    detractors: int
    total: float
    total_sq: float
    easy: int
    hard: int
    positives: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        # Written out, as JourneyRecord.to_dict (why there); the same items in the same order as
        # `_to_dict(self._fields, self, _METRIC_TIMES)` (tests/unit/core/test_core_record_fields.py)
        return {
            "metric": self.metric, "segment_dim": self.segment_dim,
            "segment_value": self.segment_value, "window_start": format_ms(self.window_start),
            "window_end": format_ms(self.window_end), "source_partition": self.source_partition,
            "n": self.n, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "promoters": self.promoters, "passives": self.passives,
            "detractors": self.detractors, "total": self.total, "total_sq": self.total_sq,
            "easy": self.easy, "hard": self.hard, "positives": self.positives,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricRecord:
        return _from_dict(cls, data, _METRIC_TIMES)


class AlertRecord(NamedTuple):
    """One state change of an experience-drop alert; key `alert_id`, upsert by `version`
    (fields: `ALERT_FIELDS`)."""

    alert_id: str
    rule: str
    metric: str
    segment_dim: str
    segment_value: str
    state: str
    severity: str
    fired_at: int
    resolved_at: int | None
    window_start: int
    window_end: int
    value: float
    baseline: float
    n: int
    baseline_n: int
    ci_low: float
    ci_high: float
    effect: float
    p_value: float
    version: int
    # Issue 16, appended (with defaults) so records written before them still read: the
    # one-sided p threshold the false-alarm budget gave for this severity (p passed it; None on
    # records written before it was kept) and the plain sentence for the page
    # (`pipeline.core.drops.describe`).
    threshold: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self._fields, self, _ALERT_TIMES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertRecord:
        """Also reads a record written before `threshold` and `message` (None and "")."""
        # The default goes into the dict, not onto the record: compiled, reading `message`
        # checks its type, and None is not a str.
        if data.get("message") is None:
            data = {**data, "message": ""}
        return _from_dict(cls, data, _ALERT_TIMES)
