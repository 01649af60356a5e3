"""Loading the scoring rules (pipeline/scoring_rules.py): the bundled file, and one line naming
the file for a file that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.scoring import ScoringRules
from pipeline.scoring_rules import DEFAULT_RULES_PATH, ScoringRulesError, load_scoring_rules


def test_the_bundled_rules_load_and_equal_their_file_parsed_by_the_core() -> None:
    import json

    rules = load_scoring_rules()
    again = ScoringRules.from_dict(json.loads(DEFAULT_RULES_PATH.read_text()))
    assert rules.version == again.version and rules.rules == again.rules and rules.rules


@pytest.mark.parametrize("content, says", [
    (None, "cannot read the scoring rules"),
    (b"{not json", "not JSON"),
    (b'{"version": 1}', "KeyError"),
    (b'{"version": 1, "rules": [{"signal": "mood", "kind": "flag"}]}', "mood"),
])
def test_an_unusable_file_gives_one_line_naming_it(tmp_path: Path, content: bytes | None,
                                                   says: str) -> None:
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ScoringRulesError) as caught:
        load_scoring_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message
