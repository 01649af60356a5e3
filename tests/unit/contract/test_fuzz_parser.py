"""Bounded fuzzing of the parser: whatever bytes arrive, `parse_event` returns a TouchpointEvent or
raises `Rejected`, never anything else, and quickly.

The worker calls `parse_event` on every input record; any other exception escapes the agent and
stops processing, so this is the contract that keeps poison input from taking the worker down.
About 2,000 examples in all, each under a deadline, so the file stays cheap in CI.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from contract_strategies import JSON_VALUES, mutated_events, valid_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract import Rejected, parse_event
from pipeline.core.event import TouchpointEvent

MAX_BYTES = 65536
FUZZ = settings(
    max_examples=500,
    deadline=500,  # ms per example; a parse takes microseconds, the slack is for a busy machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # reproducible in CI; the corpus explores a fixed, bounded set
)


def only_event_or_rejected(data: bytes) -> None:
    started = time.perf_counter()
    try:
        result = parse_event(data, max_bytes=MAX_BYTES)
    except Rejected as rejected:
        assert rejected.reason in {"not_utf8", "not_json", "not_object", "invalid", "too_large"}
        assert isinstance(rejected.error, str) and rejected.error
    else:
        assert isinstance(result, TouchpointEvent)
    # anything else (RecursionError, TypeError, OverflowError...) fails the test by escaping
    assert time.perf_counter() - started < 1.0, f"parse took too long for {len(data)} bytes"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    only_event_or_rejected(data)


@FUZZ
@given(mutated_events() | valid_events(), st.data())
def test_mutated_events_byte_level(event: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(_dumps(event))
    for _ in range(data.draw(st.integers(0, 4))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "delete":
            del raw[at]
        elif action == "insert":
            raw[at:at] = data.draw(st.sampled_from(
                [b"{", b"}", b"[", b"]", b'"', b"\\", b"\\u", b"\\ud800", b"\xff", b"\xc3",
                 b",", b":", b"NaN", b"1e999", b"-0", b"\x00", b"null"]))
        else:
            del raw[at:]
    only_event_or_rejected(bytes(raw))


@FUZZ
@given(valid_events(), st.sampled_from(["attributes", "survey", "signals", "valence",
                                        "customer_id", "extra"]), JSON_VALUES)
def test_wrong_types_in_fields(event: dict[str, Any], field: str, value: Any) -> None:
    event[field] = value
    only_event_or_rejected(_dumps(event))


@FUZZ
@given(valid_events(), st.integers(1, 30_000), st.sampled_from(["array", "object", "mixed"]),
       st.sampled_from(["top", "attributes", "survey", "signals"]))
def test_deep_nesting(event: dict[str, Any], depth: int, shape: str, where: str) -> None:
    if shape == "array":
        nested = "[" * depth + "1" + "]" * depth
    elif shape == "object":
        nested = '{"a":' * depth + "1" + "}" * depth
    else:
        nested = '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2)
    if where == "top":
        text = nested
    else:
        event[where] = "__NESTED__"
        text = json.dumps(event).replace('"__NESTED__"', nested)
    only_event_or_rejected(text.encode())


@pytest.mark.parametrize("depth", [999, 1_000, 5_000, 20_000, 32_000])
def test_deep_nesting_is_rejected_not_crashing(depth: int) -> None:
    """Found by the fuzzer: nesting deeper than Python's recursion limit (about 1,000 levels)
    made `json` raise RecursionError, which escaped `parse_event` (and so the worker's agent
    and the sink). A 2 KiB record is enough; it must become a `not_json` dead letter."""
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "0" + "}" * depth):
        data = text.encode()
        if len(data) > MAX_BYTES:
            continue
        only_event_or_rejected(data)
