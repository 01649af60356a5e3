"""Load `schemas/scoring-rules.v1.json` into the core's `ScoringRules`.

The core parses rules (`ScoringRules.from_dict`) and never reads a file: every adapter that
builds a `JourneyTracker` or `ExperienceEngine` (the worker, replay, backfill, the drivers job,
benches and tests) loads the rules here and passes them in (issue 19).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.scoring import ScoringRules

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
    try:
        data = json.loads(rules_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScoringRulesError(
            f"{rules_path}: cannot read the scoring rules: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ScoringRulesError(f"{rules_path}: not JSON: {exc}") from None
    try:
        return ScoringRules.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScoringRulesError(f"{rules_path}: {exc!r}") from None


__all__ = ["DEFAULT_RULES_PATH", "ScoringRulesError", "load_scoring_rules"]
