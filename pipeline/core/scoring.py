"""Versioned scoring rules: valence of a moment from operational signals, kept as data.

The rules live in `schemas/scoring-rules.v1.json` so operations can tune them without a code
change; the version travels with them. How contributions combine is documented there and here:
negative contributions c combine as 1 - prod(1 - |c|), positive ones the same way, and the
valence is positive minus negative. So one problem gives its own score, several compound towards
-1 without passing it, and a resolution offsets problems instead of being averaged away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipeline.core.event import Signals

_NUMERIC: Final = ("wait_seconds", "handle_seconds", "transfers")
_FLAGS: Final = ("resolved", "error")
# Signal slots (the order of _NUMERIC + _FLAGS) and rule kinds; Final: constants when compiled.
_WAIT: Final = 0
_HANDLE: Final = 1
_RESOLVED: Final = 3
_SLOTS: Final = {name: slot for slot, name in enumerate(_NUMERIC + _FLAGS)}
_FLAG: Final = 0
_STEPS: Final = 1
_LINEAR: Final = 2


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; `kind` is flag, steps or linear (see the JSON file for their meaning)."""

    signal: str
    kind: str
    equals: bool = True
    valence: float = 0.0
    steps: tuple[tuple[float, float], ...] = ()  # (at, valence), ascending by `at`
    x_from: float = 0.0
    x_to: float = 1.0
    v_from: float = 0.0
    v_to: float = 0.0

    def contribution(self, value: float | bool) -> float:
        if self.kind == "flag":
            return self.valence if value is self.equals else 0.0
        x = float(value)
        if self.kind == "steps":
            result = 0.0
            for at, valence in self.steps:
                if x >= at:
                    result = valence
            return result
        if x <= self.x_from:
            return self.v_from
        if x >= self.x_to:
            return self.v_to
        share = (x - self.x_from) / (self.x_to - self.x_from)
        return self.v_from + share * (self.v_to - self.v_from)


def _rule(raw: Mapping[str, Any]) -> Rule:
    signal = str(raw["signal"])
    kind = str(raw["kind"])
    if signal not in _NUMERIC + _FLAGS:
        raise ValueError(f"scoring rule: unknown signal {signal!r}")
    if kind == "flag":
        if signal not in _FLAGS:
            raise ValueError(f"scoring rule: {signal} is not a flag")
        return Rule(signal, kind, equals=bool(raw["equals"]), valence=_valence(raw["valence"]))
    if signal not in _NUMERIC:
        raise ValueError(f"scoring rule: {signal} is not numeric")
    if kind == "steps":
        steps = sorted((float(s["at"]), _valence(s["valence"])) for s in raw["steps"])
        return Rule(signal, kind, steps=tuple(steps))
    if kind == "linear":
        x_from, x_to = float(raw["from"]), float(raw["to"])
        if not x_to > x_from:
            raise ValueError(f"scoring rule: {signal} linear needs to > from")
        return Rule(signal, kind, x_from=x_from, x_to=x_to,
                    v_from=_valence(raw["valence_from"]), v_to=_valence(raw["valence_to"]))
    raise ValueError(f"scoring rule: unknown kind {kind!r}")


def _valence(raw: Any) -> float:
    value = float(raw)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"scoring rule: valence {value} outside [-1, 1]")
    return value


class ScoringRules:
    """Signals -> valence in [-1, 1].

    >>> from pipeline.scoring_rules import load_scoring_rules  # the file: an adapter's job
    >>> rules = load_scoring_rules()
    >>> rules.score(Signals(error=True))
    -0.8
    >>> round(rules.score(Signals(error=True, resolved=True)), 6)  # 0.5 offsets -0.8
    -0.3
    >>> round(rules.score(Signals(wait_seconds=3600, transfers=4, resolved=False)), 4)
    -0.979
    >>> rules.score(Signals(wait_seconds=5, handle_seconds=120, resolved=True))
    0.5
    """

    __slots__ = ("_plan", "rules", "version")

    def __init__(self, rules: Sequence[Rule], version: int = 1) -> None:
        self.version = version
        self.rules = tuple(rules)
        # (signal slot, kind, rule) in file order: the products below depend on that order
        kinds = {"flag": _FLAG, "steps": _STEPS, "linear": _LINEAR}
        self._plan = tuple((_SLOTS[r.signal], kinds[r.kind], r) for r in self.rules)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoringRules:
        return cls([_rule(r) for r in data["rules"]], version=int(data["version"]))

    def score(self, signals: Signals) -> float:
        value = self.score_or_none(signals)
        return 0.0 if value is None else value

    def score_or_none(self, s: Signals) -> float | None:
        """`score`, or None when every signal is missing (the hot path of journeys). Reads each
        signal once and walks the rules in order; typed locals keep compiled code unboxed."""
        wait, handle, transfers = s.wait_seconds, s.handle_seconds, s.transfers
        resolved, error = s.resolved, s.error
        if (wait is None and handle is None and transfers is None and resolved is None
                and error is None):
            return None
        keep_neg = 1.0  # product of (1 - |c|) over negative contributions
        keep_pos = 1.0
        for slot, kind, rule in self._plan:
            if kind == _FLAG:
                flag = resolved if slot == _RESOLVED else error
                if flag is None or flag is not rule.equals:
                    continue
                c = rule.valence
            else:
                # one typed branch per signal: a float | int union would make compiled code
                # call the float() builtin on an object
                if slot == _WAIT:
                    if wait is None:
                        continue
                    x = wait
                elif slot == _HANDLE:
                    if handle is None:
                        continue
                    x = handle
                else:
                    if transfers is None:
                        continue
                    x = float(transfers)
                if kind == _STEPS:
                    c = 0.0
                    for at, valence in rule.steps:
                        if x >= at:
                            c = valence
                elif x <= rule.x_from:
                    c = rule.v_from
                elif x >= rule.x_to:
                    c = rule.v_to
                else:
                    c = rule.v_from + (x - rule.x_from) / (rule.x_to - rule.x_from) * (
                        rule.v_to - rule.v_from)
            if c < 0.0:
                keep_neg *= 1.0 + c
            elif c > 0.0:
                keep_pos *= 1.0 - c
        return keep_neg - keep_pos
