"""Framing checks before any field is looked at: size, UTF-8, strict JSON (I-JSON, RFC 7493).

I-JSON because the event is read by more than Python: duplicate keys, lone surrogates and NaN are
read differently (or not at all) by other decoders, so one record could mean two things.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final, NoReturn

import orjson

from pipeline.contract.rejected import INVALID, NOT_JSON, NOT_OBJECT, NOT_UTF8, TOO_LARGE, Rejected

DEFAULT_MAX_BYTES = 65536
# A valid event nests 2 levels (the event, then signals/survey/attributes). Anything much deeper
# is rejected before decoding: Python's decoder recurses once per level, and a record nested
# ~1,000 deep raised RecursionError in whatever called it next (a deep stack in the worker).
MAX_DEPTH = 32
# A JSON string (escapes included) or one bracket: brackets inside strings do not nest.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = ""
        for key, _ in pairs:
            if key in seen:
                duplicate = key
                break
            seen.add(key)
        raise _DuplicateKey(f"duplicate key {duplicate!r} in an object; keys must be unique "
                            "(I-JSON, RFC 7493) or readers disagree on which value counts")
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (JavaScript constant; use null or a finite number)")


_decode: Callable[[str], Any] = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_no_constant
).decode


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep the brackets of `text` nest outside strings, counting stops past `limit`.

    >>> nesting_depth('{"a": [1, {"b": "[[[["}]}')
    3
    """
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token == "{" or token == "[":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif token == "}" or token == "]":
            depth -= 1
    return deepest


def _too_deep(text: str) -> NoReturn:
    """Rejected with the reason the record's first character points to (it is not decoded)."""
    start = text.lstrip(" \t\r\n")[:1]
    deep = f"nested more than {MAX_DEPTH} levels deep"
    if start == "{":
        raise Rejected(INVALID, f"the record is {deep}; an event nests at most 2 levels (the "
                                "event, then signals, survey or attributes)")
    if start == "[":
        raise Rejected(NOT_OBJECT, f"the record is an array {deep}, not a JSON object "
                                   "(send exactly one event object per record)")
    raise Rejected(NOT_JSON, f"not JSON: brackets {deep}")


# A number of 19 or more digits may be an integer beyond 64 bits, which orjson reads as a float
# where the standard library keeps the int. Found by mapping every digit to "0" and everything
# else to "." (bytes.translate, C speed: a regex for 19 digits cost 3 times as much as orjson's
# whole decoding).
_DIGITS: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x2E for i in range(256))
_LONG_NUMBER: Final = b"0" * 19


def has_long_number(data: bytes) -> bool:
    """Whether `data` holds a run of 19 or more digits (in a number, or in a string: either way
    orjson may not read it as the standard library does).

    >>> has_long_number(b'{"n": 123}'), has_long_number(b'[18446744073709551616]')
    (False, True)
    """
    return _LONG_NUMBER in data.translate(_DIGITS)


_NOT_DECIDED: Final = object()


def _decode_fast(data: bytes) -> Any:
    """The value of `data` when orjson reads it exactly as `_decode_strict` would and no object
    repeats a key; `_NOT_DECIDED` otherwise (the strict path then gives the value or the
    verdict). orjson took 0.9 us for a generated event where the standard library's decoder
    with a pairs hook took 3.7 (`bench/bench_entry_codec.py`).

    - No backslash: every string is as written (no escape, so no lone surrogate), and a `"`
      always opens or closes one.
    - No run of 19 digits (`has_long_number`): no integer beyond 64 bits.
    - orjson refuses what the standard library refuses here (NaN, control characters, a BOM,
      trailing data) and also 1e400 (infinity): all of those go the strict way.
    - Repeated keys: orjson keeps the last value silently. Outside strings a `:` only ever
      separates a key from its value, so the record's `:` count is its keys plus the colons
      inside its strings. orjson's encoding of the decoded value escapes no `:`: its count is
      the kept keys plus the colons of the kept strings. A repeated key (one key fewer, its
      value's strings gone) makes the record's count the larger.
    """
    if b"\\" in data or has_long_number(data):
        return _NOT_DECIDED
    try:
        value = orjson.loads(data)
        again = orjson.dumps(value)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _NOT_DECIDED
    if data.count(b":") != again.count(b":"):
        return _NOT_DECIDED  # a repeated key
    return value


def decode_json(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Size, UTF-8 and strict JSON (I-JSON, RFC 7493) checks; the decoded value, any JSON type."""
    if len(data) > max_bytes:
        raise Rejected(TOO_LARGE, f"record is {len(data)} bytes, above the limit of {max_bytes} "
                                  "(PEAKEND_MAX_EVENT_BYTES); split it or shorten free text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(NOT_UTF8, f"byte offset {exc.start}: {exc.reason} "
                                 f"(0x{data[exc.start]:02x}); events must be UTF-8 JSON"
                                 f"{registry_framing(data)}") from None
    # Two C-speed counts bound the depth for nearly every record; only one with many brackets
    # (deep, or braces in its text) pays for the exact scan.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nesting_depth(text) > MAX_DEPTH:
        _too_deep(text)
    value = _decode_fast(data)
    if value is not _NOT_DECIDED:
        return value
    return _decode_strict(text)


def registry_framing(data: bytes) -> str:
    """A hint for a record that starts like Confluent Schema Registry's wire format (a zero
    byte, then a 4-byte schema id, then Avro, Protobuf or JSON): a producer whose serializer
    adds the registry's header. Empty for any other record.

    >>> hint = registry_framing(b'\\x00\\x00\\x00\\x01\\x2c{"event_id": "e1"}')
    >>> hint[:80]
    '; it starts like a Confluent Schema Registry record (magic byte 0, schema id 300'
    >>> registry_framing(b'{"event_id": "e1"}')
    ''
    """
    if len(data) < 5 or data[0] != 0:
        return ""
    schema_id = int.from_bytes(data[1:5], "big")
    return (f"; it starts like a Confluent Schema Registry record (magic byte 0, schema id "
            f"{schema_id}): send the event JSON itself, without the 5-byte header (a string or "
            "byte-array serializer)")


def _decode_strict(text: str) -> Any:
    """Strict JSON (I-JSON) by the standard library's decoder: the value, or `Rejected` with
    the reason. The reference `_decode_fast` must agree with wherever it decides."""
    try:
        obj = _decode(text)
    except RecursionError:
        # deeper than Python's parser goes (~1,000 levels); no event is anywhere near that
        raise Rejected(NOT_JSON, "not JSON: nested deeper than the parser allows "
                                 "(about 1,000 levels)") from None
    except ValueError as exc:
        if not text.strip():
            message = "the record is empty"
        elif text.startswith("\x00"):
            message = f"{exc}{registry_framing(text.encode('utf-8'))}"
        elif text.startswith("\ufeff"):
            message = "the record starts with a byte order mark (EF BB BF); send UTF-8 without BOM"
        elif "Exceeds the limit" in str(exc):
            # Python's own words name sys.set_int_max_str_digits, which means nothing to a producer
            message = "a number literal has more than 4300 digits"
        elif str(exc).startswith("Extra data"):
            message = f"{exc}: more than one JSON value; send exactly one event object per record"
        else:
            message = str(exc)
        raise Rejected(NOT_JSON, f"not JSON: {message}") from None
    if "\\u" in text:  # only escapes can smuggle in a lone surrogate; rare, so checked lazily
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise Rejected(NOT_JSON, "not JSON: nested deeper than the parser allows "
                                     "(about 1,000 levels)") from None
        except UnicodeEncodeError:
            message = ("not JSON: a \\u escape encodes a lone UTF-16 surrogate, which is not a "
                       "Unicode character (I-JSON, RFC 7493)")
            raise Rejected(NOT_JSON, message) from None
    return obj
