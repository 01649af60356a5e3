"""A small YAML writer (block style) and a reader for exactly what it writes.

PyYAML is not a dependency of peakend, and the provisioning files must be readable YAML for
Grafana, Prometheus and docker compose. Strings that are not plain identifiers are written as
JSON strings (valid YAML double-quoted scalars) or, when they span lines, as `|-` literal blocks.
`load(dump(x)) == x` is tested for every generated file.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: str) -> str:
    return key if _PLAIN.match(key) and key.lower() not in _RESERVED else json.dumps(key)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            k = _key(str(key))
            if isinstance(item, str) and "\n" in item:
                out.append(f"{pad}{k}: |-")
                out.extend(f"{pad}  {line}" if line else "" for line in item.split("\n"))
            elif isinstance(item, dict | list) and item:
                out.append(f"{pad}{k}:")
                out.extend(_lines(item, indent + 2))
            elif isinstance(item, dict):
                out.append(f"{pad}{k}: {{}}")
            elif isinstance(item, list):
                out.append(f"{pad}{k}: []")
            else:
                out.append(f"{pad}{k}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                inner = _lines(item, indent + 2)
                out.append(f"{pad}- {inner[0][indent + 2:]}")
                out.extend(inner[1:])
            elif isinstance(item, str) and "\n" in item:
                raise ValueError("multi-line strings directly in lists are not supported")
            else:
                out.append(f"{pad}- {_scalar(item) if not isinstance(item, dict | list) else '[]'}")
    else:
        out.append(pad + _scalar(value))
    return out


def dump(value: Any, header: str = "") -> str:
    """YAML text of `value` (dicts, lists, str, int, float, bool, None)."""
    head = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return head + "\n".join(_lines(value, 0)) + "\n"


# ----------------------------------------------------------------------------- reader
def _parse_scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    if text == "null":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*([eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", text):
        return float(text)
    return text


def _split_key(text: str) -> tuple[str, str]:
    if text.startswith('"'):
        end = json.JSONDecoder().raw_decode(text)[1]
        key = json.loads(text[:end])
        rest = text[end:]
    else:
        key, _, rest = text.partition(":")
        rest = ":" + rest
    if not rest.startswith(":"):
        raise ValueError(f"expected 'key: value', got {text!r}")
    return key, rest[1:].strip()


def load(text: str) -> Any:
    """Read YAML written by `dump` (block mappings/sequences, JSON or plain scalars, `|-`)."""
    lines = [ln for ln in text.split("\n") if not ln.lstrip().startswith("#")]
    pos = 0

    def indent_of(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    def skip_blank() -> None:
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1

    def block(indent: int) -> Any:
        nonlocal pos
        skip_blank()
        if pos >= len(lines):
            return None
        first = lines[pos]
        if first.strip().startswith("- ") or first.strip() == "-":
            return seq(indent_of(first))
        return mapping(indent_of(first))

    def literal(indent: int) -> str:
        nonlocal pos
        body: list[str] = []
        while pos < len(lines) and (not lines[pos].strip() or indent_of(lines[pos]) >= indent):
            body.append(lines[pos][indent:] if lines[pos].strip() else "")
            pos += 1
        while body and body[-1] == "":
            body.pop()
        return "\n".join(body)

    def value_after(rest: str, indent: int) -> Any:
        nonlocal pos
        if rest == "|-":
            return literal(indent + 2)
        if rest:
            return _parse_scalar(rest)
        skip_blank()
        if pos < len(lines) and (indent_of(lines[pos]) > indent or (
                lines[pos].strip().startswith("- ") and indent_of(lines[pos]) == indent)):
            return block(indent_of(lines[pos]))
        return None

    def mapping(indent: int) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while True:
            skip_blank()
            if pos >= len(lines) or indent_of(lines[pos]) != indent or lines[
                    pos].strip().startswith("- "):
                return out
            key, rest = _split_key(lines[pos].strip())
            pos += 1
            out[key] = value_after(rest, indent)

    def seq(indent: int) -> list[Any]:
        nonlocal pos
        out: list[Any] = []
        while True:
            skip_blank()
            if pos >= len(lines) or indent_of(lines[pos]) != indent or not lines[
                    pos].strip().startswith("-"):
                return out
            item = lines[pos].strip()[2:]
            if item.startswith("- "):
                lines[pos] = " " * (indent + 2) + item
                out.append(seq(indent + 2))
            elif re.match(r'^("[^"]*"|[A-Za-z_/.][A-Za-z0-9_./-]*):( |$)', item):
                lines[pos] = " " * (indent + 2) + item
                out.append(mapping(indent + 2))
            else:
                pos += 1
                out.append(_parse_scalar(item))

    result = block(0)
    skip_blank()
    if pos < len(lines):
        raise ValueError(f"unexpected line {pos + 1}: {lines[pos]!r}")
    return result
