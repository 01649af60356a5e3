"""Load `schemas/followup-rules.v1.json`: check it against its JSON Schema, then parse it.

Every command that opens follow-up cases (worker, replay) calls `load_rules()` at start with
PEAKEND_FOLLOWUP_RULES (empty: the bundled file); a bad file stops it with one line naming the
file, the place in it and what is wrong (`FollowupRulesError`), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from pipeline.core.config import DAY_MS
from pipeline.core.followups import FollowupRules
from pipeline.rules_file import read_rules_json

# package data (pipeline/schemas links to the repository's schemas/): there in a wheel too
SCHEMAS = Path(__file__).resolve().parent / "schemas"
DEFAULT_RULES_PATH = SCHEMAS / "followup-rules.v1.json"
SCHEMA_PATH = SCHEMAS / "followup-rules.v1.schema.json"


class FollowupRulesError(ValueError):
    """One line: which rules file is unusable and why."""


def load_rules(path: str | Path = "") -> FollowupRules:
    """The follow-up rules of `path` (default: the repository's v1 file), checked."""
    rules_path = Path(path) if path else DEFAULT_RULES_PATH
    data = read_rules_json(rules_path, "the follow-up rules", FollowupRulesError)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise FollowupRulesError(f"{rules_path}: at {where}: {error.message}")
    try:
        return FollowupRules.from_dict(data)
    except ValueError as exc:
        raise FollowupRulesError(f"{rules_path}: {exc}") from None


def horizon_ms(rules: FollowupRules, max_journey_ms: int, allowed_lateness_ms: int) -> int:
    """How long after a customer's last input its follow-up state must be kept: a journey record
    can still change up to its maximum length + the lateness after its events, and a case
    suppresses later candidates for the longer of the two suppression windows."""
    return max(rules.cooldown_ms, rules.open_suppress_ms) + max_journey_ms + allowed_lateness_ms


__all__ = ["DAY_MS", "DEFAULT_RULES_PATH", "FollowupRulesError", "horizon_ms", "load_rules"]
