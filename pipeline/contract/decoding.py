"""Framing checks before any field is looked at: size, UTF-8, strict JSON (I-JSON, RFC 7493).

I-JSON because the event is read by more than Python: duplicate keys, lone surrogates and NaN are
read differently (or not at all) by other decoders, so one record could mean two things.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

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


def decode_json(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Size, UTF-8 and strict JSON (I-JSON, RFC 7493) checks; the decoded value, any JSON type."""
    if len(data) > max_bytes:
        raise Rejected(TOO_LARGE, f"record is {len(data)} bytes, above the limit of {max_bytes} "
                                  "(PEAKEND_MAX_EVENT_BYTES); split it or shorten free text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(NOT_UTF8, f"byte offset {exc.start}: {exc.reason} "
                                 f"(0x{data[exc.start]:02x}); events must be UTF-8 JSON") from None
    # Two C-speed counts bound the depth for nearly every record; only one with many brackets
    # (deep, or braces in its text) pays for the exact scan.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nesting_depth(text) > MAX_DEPTH:
        _too_deep(text)
    try:
        obj = _decode(text)
    except RecursionError:
        # deeper than Python's parser goes (~1,000 levels); no event is anywhere near that
        raise Rejected(NOT_JSON, "not JSON: nested deeper than the parser allows "
                                 "(about 1,000 levels)") from None
    except ValueError as exc:
        if not text.strip():
            message = "the record is empty"
        elif text.startswith("\ufeff"):
            message = "the record starts with a byte order mark (EF BB BF); send UTF-8 without BOM"
        elif "Exceeds the limit" in str(exc):
            # Python's own words name sys.set_int_max_str_digits, which means nothing to a producer
            message = "a number literal has more than 4300 digits"
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
