"""Output records (docs/records.md): what the core emits to every sink.

Time fields hold integer epoch milliseconds (`None` where the contract allows null); `to_dict()`
turns them into RFC 3339 UTC text with milliseconds and `Z`, `from_dict()` parses them back.
Field names and order follow docs/records.md exactly.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, TypeVar

from pipeline.core.timefmt import format_opt, parse_opt

_R = TypeVar("_R", bound=tuple[Any, ...])

# Records are typed named tuples: immutable, compact, and built from a tuple of values in one C
# call, `new_record(JourneyRecord, values)` (tuple.__new__), about 0.2 us for the 28 journey
# fields where a frozen slots dataclass took ~2 us (docs/core.md, Performance): the stream
# builds one record per event. The keyword constructor also works, through Python code.
new_record: Final = tuple.__new__


def _to_dict(record: Any, times: frozenset[str]) -> dict[str, Any]:
    """JSON-able dict in contract order; the epoch-ms fields `times` as RFC 3339 text."""
    return {name: format_opt(value) if name in times else value
            for name, value in zip(record._fields, record, strict=True)}


def _from_dict(cls: type[_R], data: dict[str, Any], times: frozenset[str]) -> _R:
    names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    return tuple.__new__(cls, [parse_opt(data.get(name)) if name in times else data.get(name)
                               for name in names])


_JOURNEY_TIMES: Final = frozenset({"started_at", "ended_at", "peak_at", "end_at"})
_METRIC_TIMES: Final = frozenset({"window_start", "window_end"})
_ALERT_TIMES: Final = frozenset({"fired_at", "resolved_at", "window_start", "window_end"})


class JourneyRecord(NamedTuple):
    """Peak-end state of one journey; key `journey_id`, upsert by `version`."""

    journey_id: str
    customer_id: str
    keyed_by: str
    status: str
    close_reason: str
    started_at: int
    ended_at: int
    duration_seconds: float
    events: int
    moments: int
    peak_valence: float | None
    peak_touchpoint: str
    peak_at: int | None
    peak_event_id: str
    best_valence: float | None
    best_touchpoint: str
    worst_valence: float | None
    worst_touchpoint: str
    end_valence: float | None
    end_touchpoint: str
    end_channel: str
    end_stage: str
    end_at: int | None
    end_event_id: str
    peak_end_score: float | None
    mean_valence: float | None
    outcome: str
    version: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, _JOURNEY_TIMES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JourneyRecord:
        return _from_dict(cls, data, _JOURNEY_TIMES)


class MetricRecord(NamedTuple):
    """One partial bucket of one metric and segment from one source partition."""


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
        return _to_dict(self, _METRIC_TIMES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricRecord:
        return _from_dict(cls, data, _METRIC_TIMES)


class AlertRecord(NamedTuple):
    """One state change of an experience-drop alert; key `alert_id`, upsert by `version`."""


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

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, _ALERT_TIMES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertRecord:
        return _from_dict(cls, data, _ALERT_TIMES)
