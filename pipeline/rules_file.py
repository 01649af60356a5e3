"""Read a rules file (scoring rules, follow-up rules) as JSON, with one-line errors naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def read_rules_json(path: Path, what: str, error: type[ValueError]) -> Any:
    """The JSON document of `path`; `error` (one line: the file, then why) when it cannot be
    read or is not JSON. `what` names the rules in the message ("the scoring rules")."""
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise error(f"{path}: not JSON: {exc}") from None
