"""The layout checks of the records on the worker's internal topics (contributions, follow-up
inputs, claims): each record is read whole and checked before a stage applies any of it.

Only this worker writes those topics, but a record it cannot read must not stop it: another
version of peakend during a rolling upgrade, a tool or a person writing to the wrong topic. A
stage that trusted the layout failed on such a record at every restart (a crash loop), or took
a value of the wrong kind into its state (a segment named `1=None`, a deadline that is a
string) where it broke later inputs. A record that fails the check becomes an `unreadable`
dead letter, none of it applied. The check is of layout and kinds, and of instants for a
range no real record leaves (`TIME`), not of values: a record of the right layout with made-up
values cannot be told from a real one (docs/security.md: let the worker alone write to them).
`python -m bench.fuzz_internal` mutates real records at random: none may make an agent fail.

Kinds are sets of exact types: `True` is not an int here, as JSON tells them apart.

>>> check_row(["e1", 3, None], (STR, INT, optional(NUMBER)), "a claim")
>>> check_row(["e1", True, None], (STR, INT, optional(NUMBER)), "a claim")
Traceback (most recent call last):
ValueError: a claim whose item 1 is a bool, not int
>>> check_fields({"t": "w", "p": 0}, {"t": STR, "p": INT, "w": INT}, {}, "a watermark")
Traceback (most recent call last):
ValueError: a watermark without "w"
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

Kinds = frozenset[type]

STR: Kinds = frozenset({str})
INT: Kinds = frozenset({int})
BOOL: Kinds = frozenset({bool})
NUMBER: Kinds = frozenset({int, float})  # a float written as a whole number reads as an int
LIST: Kinds = frozenset({list})

# The instants the internal records can carry: the years the core can write as text, with room
# for the durations a setting may add to one (ten years at most, `settings.MAX_SECONDS`). A value
# of the right kind outside them is no record this worker wrote (the contract's events fall in
# FIRST_YEAR..LAST_YEAR), and the stages failed on it at every restart (`OverflowError: date
# value out of range` where the core writes it as text: `python -m bench.fuzz_internal`), so it
# is refused as any other bad value is. Inside them a made-up instant is applied (the module
# docstring).
_EARLIEST_YEAR, _LATEST_YEAR = 1000, 9000
EARLIEST_MS = int(datetime(_EARLIEST_YEAR, 1, 1, tzinfo=UTC).timestamp()) * 1000
LATEST_MS = int(datetime(_LATEST_YEAR, 1, 1, tzinfo=UTC).timestamp()) * 1000


class Instants(frozenset[type]):
    """The kinds of an instant in epoch milliseconds: an int between EARLIEST_MS and LATEST_MS
    (`check_row` and `check_fields` check the range too). `optional(TIME)` is one as well."""


TIME: Kinds = Instants({int})


def optional(kinds: Kinds) -> Kinds:
    made = kinds | {type(None)}
    return Instants(made) if isinstance(kinds, Instants) else made


def is_instant(value: Any) -> bool:
    """An int within the instants the internal records can carry (`Instants`).

    >>> is_instant(1_795_367_409_123), is_instant(0), is_instant(10 ** 16), is_instant(1.5e12)
    (True, True, False, False)
    """
    return type(value) is int and EARLIEST_MS <= value < LATEST_MS


def describe_instants() -> str:
    """The range of `Instants`, for the messages that refuse a value outside it."""
    return f"an instant in epoch ms between the years {_EARLIEST_YEAR} and {_LATEST_YEAR}"


def of_record_type(declared: str) -> Kinds:
    """The kinds of a `pipeline.core.records.RecordField.type` (`time` is epoch ms; `?`
    allows null).

    >>> sorted(k.__name__ for k in of_record_type("float?"))
    ['NoneType', 'float', 'int']
    """
    base = {"str": STR, "int": INT, "time": TIME, "float": NUMBER, "bool": BOOL}[
        declared.rstrip("?")]
    return optional(base) if declared.endswith("?") else base


def kind_names(kinds: Kinds) -> str:
    return " or ".join(sorted("null" if k is type(None) else k.__name__ for k in kinds))


def check_row(row: Any, kinds: tuple[Kinds, ...], what: str) -> None:
    """`row` is a list of len(kinds) values, each of its kinds; else a ValueError naming the
    first that is not."""
    if type(row) is not list or len(row) != len(kinds):
        raise ValueError(f"{what} that is not a list of {len(kinds)} values")
    for i, value in enumerate(row):
        if type(value) not in kinds[i]:
            raise ValueError(f"{what} whose item {i} is a {_kind(value)}, "
                             f"not {kind_names(kinds[i])}")
        if type(kinds[i]) is Instants:
            _check_instant(value, kinds[i], f"{what} whose item {i}")


def check_fields(obj: Any, required: Mapping[str, Kinds], optional: Mapping[str, Kinds],
                 what: str) -> None:
    """`obj` is an object with every `required` member and no others but the `optional`
    ones, each of its kinds; else a ValueError naming the first member that is not."""
    if type(obj) is not dict:
        raise ValueError(f"{what} that is a {_kind(obj)}, not an object")
    for name, kinds in required.items():
        if name not in obj:
            raise ValueError(f'{what} without "{name}"')
        if type(obj[name]) not in kinds:
            raise ValueError(f'{what} whose "{name}" is a {_kind(obj[name])}, '
                             f"not {kind_names(kinds)}")
        _check_instant(obj[name], kinds, f'{what} whose "{name}"')
    if len(obj) > len(required):
        for name, value in obj.items():
            if name in required:
                continue
            allowed = optional.get(name)
            if allowed is None:
                raise ValueError(f'{what} with a member "{name}" this version does not read')
            if type(value) not in allowed:
                raise ValueError(f'{what} whose "{name}" is a {_kind(value)}, '
                                 f"not {kind_names(allowed)}")
            _check_instant(value, allowed, f'{what} whose "{name}"')


def _check_instant(value: Any, kinds: Kinds, what: str) -> None:
    if type(kinds) is Instants and value is not None and not is_instant(value):
        raise ValueError(f"{what} ({value}) is not {describe_instants()}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
