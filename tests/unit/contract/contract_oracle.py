"""The reference verdict: strict I-JSON decoding, then jsonschema on the published schema.

Written independently of pipeline.contract on purpose: it is what the parser is checked against.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from typing import Any

from contract_corpus import SCHEMA_PATH
from jsonschema import Draft202012Validator, FormatChecker, validators

SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

# RFC 3339 section 5.6 date-time, as rfc3339-validator (jsonschema's own checker) reads it.
_RFC3339 = re.compile(
    r"^(\d{4})-(0[1-9]|1[0-2])-(\d{2})T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$",
    re.ASCII,
)


def is_rfc3339_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _RFC3339.match(instance.upper())
    if match is None:
        return False
    year, month, day = (int(part) for part in match.groups())
    return year > 0 and 1 <= day <= calendar.monthrange(year, month)[1]


_formats = FormatChecker(formats=())
_formats.checks("date-time")(is_rfc3339_date_time)

# v1 rejects 9.0 for integer fields; plain JSON Schema would accept it.
_types = Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _c, x: type(x) is int)
StrictValidator = validators.extend(Draft202012Validator, type_checker=_types)
VALIDATOR = StrictValidator(SCHEMA, format_checker=_formats)


class NotIJson(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise NotIJson("duplicate key")
    return dict(pairs)


def _constant(name: str) -> Any:
    raise NotIJson(name)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotIJson(text)
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def decode_i_json(data: bytes) -> Any:
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                       parse_float=_float)
    if _has_lone_surrogate(value):
        raise NotIJson("lone surrogate")
    return value


def schema_accepts(data: bytes, max_bytes: int = 65536) -> bool:
    if len(data) > max_bytes:
        return False
    try:
        value = decode_i_json(data)
    except ValueError:
        return False
    return bool(VALIDATOR.is_valid(value))


def schema_errors(value: Any) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(value)]
