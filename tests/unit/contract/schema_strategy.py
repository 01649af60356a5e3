"""Events generated from the published schema itself, with hypothesis-jsonschema.

hypothesis-jsonschema 0.23 (the latest release) drives Hypothesis' private `cu.many` with the
`while elements.more(): ... elements.reject()` protocol, which Hypothesis 6.1xx replaced by a
context manager. `_ManyCompat` speaks the old protocol over the new one, installed only in
hypothesis-jsonschema's own module namespace, so nothing else in the test run is touched.
When a release of hypothesis-jsonschema supports the new protocol the shim steps aside.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import hypothesis_jsonschema._from_schema as _from_schema
from contract_corpus import SCHEMA_PATH
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as cu
from hypothesis_jsonschema import from_schema

_NEW_MANY = not hasattr(cu.many, "more")


class _ManyCompat:
    """The pre-6.1xx `many` interface (`more()`, `reject()`) over the context-manager one."""

    def __init__(self, data: Any, **kwargs: Any) -> None:
        self._many = cu.many(data, **kwargs)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._steps)
        except StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject()


if _NEW_MANY:
    _from_schema.cu = SimpleNamespace(**{**vars(cu), "many": _ManyCompat})  # type: ignore[attr-defined,assignment]

SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())


def schema_events() -> st.SearchStrategy[dict[str, Any]]:
    """Every event this strategy draws is valid under the published schema (and only that:
    it knows nothing about the parser)."""
    return from_schema(SCHEMA)  # type: ignore[return-value]
