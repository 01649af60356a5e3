"""The handoff (`pipeline.stream.batches.Handoff`): stage one takes back the events its own
process's entry stage encoded instead of decoding the batch record, and gets exactly what a
decode gives: the same values of the same types (offsets of times, dict attributes, the content
digest), for events generated from the published schema and by `peakend generate`; records of
other processes, of workers without a handoff and records read twice are decoded."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.generate import GeneratorConfig, generate_events
from pipeline.contract import parse_event
from pipeline.core.event import TouchpointEvent
from pipeline.privacy import PersonalData
from pipeline.stream.batches import Handoff, RoutedEvent, decode_batch, decode_rows
from pipeline.stream.entry import Router

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from schema_strategy import schema_events

TOPIC = "cx.touchpoints"


def router(handoff: Handoff | None, partitions: int = 4, **kw: Any) -> Router:
    return Router(topic=TOPIC, partitions=partitions, max_event_bytes=65536,
                  privacy=PersonalData(keep_comments=False), handoff=handoff, **kw)


def as_records(lines: list[bytes]) -> list[SimpleNamespace]:
    return [SimpleNamespace(partition=n % 3, offset=n, value=line, timestamp=1_795_000_000_000 + n,
                            timestamp_type=1) for n, line in enumerate(lines)]


def exact(value: Any) -> Any:
    """`value` with every type and every time's offset made visible: `==` alone calls two
    datetimes equal at the same instant in different offsets, and 1 equal to 1.0 and True."""
    if isinstance(value, TouchpointEvent):
        return ("event", value.known_digest, *(exact(getattr(value, f))
                                               for f in value.__dataclass_fields__))
    if isinstance(value, datetime):
        return ("time", value.isoformat(), value.utcoffset())
    if isinstance(value, tuple | list):
        return (type(value).__name__, *(exact(v) for v in value))
    if isinstance(value, dict):
        return ("dict", *sorted((k, exact(v)) for k, v in value.items()))
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, *(exact(getattr(value, f))
                                        for f in value.__dataclass_fields__))
    return (type(value).__name__, value)


def taken_and_decoded(lines: list[bytes], **kw: Any) -> tuple[list[RoutedEvent], list[RoutedEvent]]:
    handoff = Handoff()
    routed = router(handoff, **kw).route(as_records(lines), read_ms=1_795_000_000_000)
    taken: list[RoutedEvent] = []
    decoded: list[RoutedEvent] = []
    for batches in routed.batches.values():
        for value in batches:
            events = handoff.take(value)
            assert events is not None, "a record of this process's entry stage is held"
            taken += events
            decoded += decode_batch(value)
    assert len(handoff) == 0  # everything written was taken
    return taken, decoded


def test_generated_events_taken_back_equal_their_decode() -> None:
    lines = [orjson.dumps(e) for e in generate_events(GeneratorConfig(events=3000, seed=5))]
    taken, decoded = taken_and_decoded(lines, max_batch_bytes=64 * 1024)  # many records
    assert len(taken) == len(decoded) > 2900
    assert [exact(t) for t in taken] == [exact(d) for d in decoded]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(schema_events(), min_size=1, max_size=8))
def test_schema_events_taken_back_equal_their_decode(events: list[dict[str, Any]]) -> None:
    lines = [orjson.dumps(e) for e in events]
    for line in lines:
        parse_event(line)  # the schema's events are valid: none may turn into a dead letter
    taken, decoded = taken_and_decoded(lines)
    assert [exact(t) for t in taken] == [exact(d) for d in decoded]
    # every event, in its input order within its journey key (batch records are per partition)
    def by_key(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, event_id in pairs:
            out.setdefault(key, []).append(event_id)
        return out

    assert by_key([(t.event.journey_key, t.event.event_id) for t in taken]) == by_key(
        [(e.get("journey_id") or e["customer_id"], e["event_id"]) for e in events])


def test_only_this_process_records_and_only_once() -> None:
    lines = [orjson.dumps(e) for e in generate_events(GeneratorConfig(events=50, seed=6))]
    ours, theirs = Handoff(), Handoff()
    mine = router(ours, partitions=1).route(as_records(lines), 0).batches[0][0]
    other = router(theirs, partitions=1).route(as_records(lines), 0).batches[0][0]
    plain = router(None, partitions=1).route(as_records(lines), 0).batches[0][0]
    assert mine != other  # the same events, another process's key
    assert ours.take(other) is None and ours.take(plain) is None
    assert ours.take(mine) is not None
    assert ours.take(mine) is None  # read again (a rewind): decoded like any other record
    # every reader that knows nothing of the key reads the records alike
    assert [exact(e) for e in decode_batch(mine)] == [exact(e) for e in decode_batch(plain)]
    assert list(decode_rows(mine)) == list(decode_rows(plain))


def test_bounded_oldest_first() -> None:
    lines = [orjson.dumps(e) for e in generate_events(GeneratorConfig(events=400, seed=7))]
    handoff = Handoff(max_events=100)
    values = []
    for start in range(0, 400, 40):
        routed = router(handoff, partitions=1).route(as_records(lines[start:start + 40]), 0)
        values += routed.batches[0]
        assert len(handoff) <= 100
    sizes = [len(decode_batch(v)) for v in values]
    newest, total = 0, 0  # the newest whole records of at most 100 events stay
    while newest < len(sizes) and total + sizes[-1 - newest] <= 100:
        total += sizes[-1 - newest]
        newest += 1
    assert 0 < newest < len(values)
    held = [handoff.take(v) is not None for v in values]
    assert held == [False] * (len(values) - newest) + [True] * newest
