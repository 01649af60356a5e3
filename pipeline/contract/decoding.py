"""Framing checks before any field is looked at: size, UTF-8, strict JSON (I-JSON, RFC 7493).

I-JSON because the event is read by more than Python: duplicate keys, lone surrogates and NaN are
read differently (or not at all) by other decoders, so one record could mean two things.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

from pipeline.contract.rejected import NOT_JSON, NOT_UTF8, TOO_LARGE, Rejected

DEFAULT_MAX_BYTES = 65536


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
