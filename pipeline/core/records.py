"""Output records (docs/records.md): what the core emits to every sink.

Time fields hold integer epoch milliseconds (`None` where the contract allows null); `to_dict()`
turns them into RFC 3339 UTC text with milliseconds and `Z`, `from_dict()` parses them back.
Field names and order follow docs/records.md exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, TypeVar

from pipeline.core.timefmt import format_opt, parse_opt

_BUILDERS: dict[type, Any] = {}
_R = TypeVar("_R")


def _builder(cls: type) -> Any:
    """An unrolled constructor: one slot-descriptor call per field, no loop, no keywords."""
    names = [f.name for f in fields(cls)]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def build(values):", "    r = new(cls)"]
    for i, name in enumerate(names):
        namespace[f"set_{i}"] = getattr(cls, name).__set__
        lines.append(f"    set_{i}(r, values[{i}])")
    lines.append("    return r")
    exec("\n".join(lines), namespace)  # generated from the field names only
    return namespace["build"]


def builder_of(cls: type[_R]) -> Callable[[tuple[Any, ...]], _R]:
    """The cached unrolled constructor of a record class: `build(values)` (all fields in
    contract order). Hot paths keep it in a module global to skip the lookups."""
    build = _BUILDERS.get(cls)
    if build is None:
        build = _BUILDERS[cls] = _builder(cls)
    return build  # type: ignore[no-any-return]


class _Record:
    """JSON conversion shared by the records; `TIME_FIELDS` names the epoch-ms fields."""

    __slots__ = ()
    TIME_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = format_opt(value) if f.name in self.TIME_FIELDS else value
        return out

    @classmethod
    def from_values(cls, values: tuple[Any, ...]) -> Self:
        """Build from all field values in contract order, without keyword overhead (hot path).
        Slot descriptors set the fields directly, so the record stays frozen afterwards."""
        build = _BUILDERS.get(cls)
        if build is None:
            build = _BUILDERS[cls] = _builder(cls)
        return build(values)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            value = data.get(f.name)
            values[f.name] = parse_opt(value) if f.name in cls.TIME_FIELDS else value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class JourneyRecord(_Record):
    """Peak-end state of one journey; key `journey_id`, upsert by `version`."""

    TIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"started_at", "ended_at", "peak_at", "end_at"}
    )

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


@dataclass(frozen=True, slots=True)
class MetricRecord(_Record):
    """One partial bucket of one metric and segment from one source partition."""

    TIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"window_start", "window_end"})

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


@dataclass(frozen=True, slots=True)
class AlertRecord(_Record):
    """One state change of an experience-drop alert; key `alert_id`, upsert by `version`."""

    TIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"fired_at", "resolved_at", "window_start", "window_end"}
    )

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
