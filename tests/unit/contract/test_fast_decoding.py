"""The event decoder's orjson path (`decoding._decode_fast`) decides exactly as the strict path
(the standard library's decoder with the I-JSON checks) would: the same value, and nothing it
should have refused, a repeated key above all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobs.generate import GeneratorConfig, encode_record, generate_records
from pipeline.contract import decoding
from pipeline.contract.rejected import Rejected

# Text with what makes the fast path's checks work: colons, quotes, backslashes, digits.
TEXT = st.text(alphabet=st.sampled_from(list('ab:"\\ 1é\u2028{}[],')), max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        # (key, value) pairs, repeated keys possible: written out by `_render`
        st.lists(st.tuples(TEXT, inner), max_size=5).map(_Pairs)), max_leaves=12)


class _Pairs(list[tuple[str, Any]]):
    """An object as the pairs a producer wrote (a key may come twice)."""


def _render(value: Any, space: str) -> str:
    if isinstance(value, _Pairs):
        return "{" + ",".join(f"{json.dumps(k)}{space}:{space}{_render(v, space)}"
                              for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(_render(v, space) for v in value) + "]"
    return json.dumps(value)


def _strict(data: bytes) -> tuple[str, Any]:
    try:
        return "value", decoding._decode_strict(data.decode("utf-8"))
    except Rejected as rejected:
        return "rejected", (rejected.reason, str(rejected))


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)


def check(data: bytes) -> bool:
    """The fast path, where it decides, agrees with the strict one; whether it decided."""
    fast = decoding._decode_fast(data)
    if fast is decoding._NOT_DECIDED:
        return False
    kind, strict = _strict(data)
    assert kind == "value", (data, strict)  # the fast path took what the strict one refuses
    assert _same(fast, strict), (data, fast, strict)
    return True


@settings(max_examples=1500, deadline=None)
@given(_values(), st.sampled_from(["", " ", "\n"]))
@example(_Pairs([("a", 1), ("a", 2)]), "")
@example(_Pairs([("a", "x:y"), ("a", "z")]), "")
@example(_Pairs([("k", _Pairs([("a", ":"), ("a", ":")]))]), " ")
@example(_Pairs([("t", "12:00:00"), ("t", "12:00:00")]), "")
def test_the_fast_path_decides_as_the_strict_one(value: Any, space: str) -> None:
    check(_render(value, space).encode("utf-8"))


@pytest.mark.parametrize("text", [
    '{"a":1,"a":1}', '{"a" : 1, "a" : 2}', '{"a":{"b":1,"b":1}}', '[{"a":1},{"a":1,"a":1}]',
    '{":":1,":":1}', '{"a":":","a":":"}', '{"a":"\\":","a":1}', '{"a":1}\n{"a":1}',
    '[18446744073709551616]', '[1e400]', '[NaN]', '{"a":"\t"}', '\ufeff{}', '{"a":"\\ud800"}',
    '', '   ', '[1,]', '{"a":1,}', '01',
])
def test_refused_or_repeated_keys_are_left_to_the_strict_path(text: str) -> None:
    data = text.encode("utf-8")
    assert decoding._decode_fast(data) is decoding._NOT_DECIDED
    try:  # and decode_json gives what the strict path gives
        got: tuple[str, Any] = ("value", decoding.decode_json(data))
    except Rejected as rejected:
        got = ("rejected", (rejected.reason, str(rejected)))
    assert got == _strict(data)


def test_generated_events_take_the_fast_path() -> None:
    """The generator's default mix (what the benchmarks measure) nearly all decodes fast."""
    records = [r for r in generate_records(GeneratorConfig(events=3000))]
    lines = [encode_record(r) for r in records]
    fast = sum(check(line) for line in lines)
    assert fast >= 0.9 * len(lines), (fast, len(lines))
