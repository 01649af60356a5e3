"""Load `schemas/scoring-rules.v1.json` into the core's `ScoringRules`.

The core parses rules (`ScoringRules.from_dict`) and never reads a file: every adapter that
builds a `JourneyTracker` or `ExperienceEngine` (the worker, replay, backfill, the drivers job,
benches and tests) loads the rules here and passes them in (issue 19).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.scoring import ScoringRules
from pipeline.rules_file import read_rules_json

# package data (pipeline/schemas links to the repository's schemas/): there in a wheel too
DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "schemas" / "scoring-rules.v1.json"


class ScoringRulesError(ValueError):
    """One line: which scoring rules file is unusable and why."""


def load_scoring_rules(path: str | Path = "") -> ScoringRules:
    """The scoring rules of `path` (default: the repository's v1 file).

    >>> load_scoring_rules().version
    1
    """
    rules_path = Path(path) if path else DEFAULT_RULES_PATH
    data = read_rules_json(rules_path, "the scoring rules", ScoringRulesError)
    try:
        return ScoringRules.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScoringRulesError(f"{rules_path}: {exc!r}") from None


__all__ = ["DEFAULT_RULES_PATH", "ScoringRulesError", "load_scoring_rules"]
