"""Events generated from the published schema itself, with hypothesis-jsonschema.

hypothesis-jsonschema 0.23 (the latest release) drives Hypothesis' private `cu.many` with the
`while elements.more(): ... elements.reject()` protocol, which Hypothesis 6.1xx replaced by a
context manager. `_ManyCompat` speaks the old protocol over the new one, installed only in
hypothesis-jsonschema's own module namespace, so nothing else in the test run is touched.
When a release of hypothesis-jsonschema supports the new protocol the shim steps aside.
"""

from __future__ import annotations

import copy
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
EVENT_TYPES = tuple(SCHEMA["properties"]["type"]["enum"])


def for_type(kind: str) -> dict[str, Any]:
    """The published schema with `type` fixed to `kind` and its top-level conditionals
    (`allOf` of `if type == X then ... else ...`) evaluated for that type: the same set of valid
    events of that type, stated so the generator need not find the branch by filtering (on the
    whole schema it sometimes rejected every draw: Unsatisfiable)."""
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["type"] = {"const": kind}
    branches = []
    for rule in schema.pop("allOf"):
        condition = rule["if"]
        # only the shape used in the schema is evaluated; anything else fails loudly here
        assert condition["required"] == ["type"] and list(condition["properties"]) == ["type"]
        branch = rule.get("then") if condition["properties"]["type"]["const"] == kind \
            else rule.get("else")
        if branch is not None:
            branches.append(branch)
    return {"allOf": [schema, *branches]}


def schema_events() -> st.SearchStrategy[dict[str, Any]]:
    """Events valid under the published schema (and only that: the strategy knows nothing
    about the parser), every type equally likely."""
    return st.one_of([from_schema(for_type(kind)) for kind in EVENT_TYPES])  # type: ignore[misc]
