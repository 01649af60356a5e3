"""The event's classes (pipeline/core/event.py): read-only values whose fields are declared once
as `Final` class annotations and once more as the parameters of their written-out `__init__`
(compiled, it stores each field into the native object directly). These tests keep the two in
step and prove mypy still rejects an assignment to a field of each class while accepting
building, comparing and `dataclasses.replace` (the compiled build refuses one at run time too:
test_core_build.py)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import pickle
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mypy import api

from pipeline.core.event import NOT_DIGESTED, Signals, Survey, TouchpointEvent, content_digest

CLASSES = (Signals, Survey, TouchpointEvent)
SOURCE = Path(__file__).resolve().parents[3] / "pipeline" / "core" / "event.py"

CHECKED = textwrap.dedent("""\
    import dataclasses
    from datetime import UTC, datetime
    from pipeline.core.event import Signals, Survey, TouchpointEvent

    e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey", "web",
                        "web", "use", signals=Signals(wait_seconds=1.0), survey=Survey(nps=9))
    changed = dataclasses.replace(e, event_id="e2")
    same: bool = changed == e
    e.event_id = "e3"
    e.signals.wait_seconds = 2.0  # type: ignore[union-attr]
    Survey(nps=1).nps = 2
""")


def _class_source(name: str) -> ast.ClassDef:
    """The class as written (read from the source: a compiled `__init__` has no signature)."""
    tree = ast.parse(SOURCE.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_init_takes_exactly_the_init_fields_in_order_with_their_types(cls: type[Any]) -> None:
    node = _class_source(cls.__name__)
    declared = {n.target.id: ast.unparse(n.annotation) for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    init_fields = [f.name for f in dataclasses.fields(cls) if f.init]
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    params = init.args.args[1:]
    assert [a.arg for a in params] == init_fields
    for a in params:
        assert a.annotation is not None, (cls.__name__, a.arg)
        taken = ast.unparse(a.annotation)
        if a.arg == "attributes":  # taken as None for "no attributes" (a fresh dict each time)
            taken = taken.removesuffix(" | None")
        assert declared[a.arg] == f"Final[{taken}]", (cls.__name__, a.arg)
    # each field, the init=False ones too, set exactly once by __init__, and nothing else
    assigned = [t.attr for n in init.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Attribute)]
    assert sorted(assigned) == sorted(f.name for f in dataclasses.fields(cls))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_set_by_init_and_replace_keeps_the_rest(cls: type[Any]) -> None:
    init = next(n for n in _class_source(cls.__name__).body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args.args[1:]
    required = [a.arg for a in args[:len(args) - len(init.args.defaults)]]
    sample: dict[str, Any] = {"event_id": "e1", "occurred_at": datetime(2026, 11, 22, tzinfo=UTC),
                              "producer": "p", "customer_id": "c1", "type": "survey",
                              "touchpoint": "web", "channel": "web", "stage": "use"}
    built = cls(**{name: sample[name] for name in required})
    for f in dataclasses.fields(cls):
        getattr(built, f.name)  # a slot never set would raise AttributeError
    if dataclasses.fields(cls)[0].name == "event_id":
        again = dataclasses.replace(built, event_id="e2")
        assert (again.event_id, again.occurred_ms) == ("e2", built.occurred_ms)


def test_the_digest_is_kept_but_never_carried_to_changed_content() -> None:
    e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey", "web",
                        "web", "use", survey=Survey(nps=9))
    assert e.known_digest == NOT_DIGESTED
    digest = content_digest(e)
    assert e.known_digest == digest
    assert dataclasses.replace(e, event_id="e2").known_digest == NOT_DIGESTED
    assert e == dataclasses.replace(e)  # the digest is not compared


def test_mypy_rejects_assigning_a_field_of_every_event_class(tmp_path: Path) -> None:
    source = tmp_path / "mutate.py"
    source.write_text(CHECKED)
    out, _, status = api.run([str(source), "--strict", "--no-incremental",
                              "--cache-dir", str(tmp_path / "cache")])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out
    # one error per assignment, on exactly those lines, and nothing else in the file
    assert [int(line.split(":")[1]) for line in errors] == [9, 10, 11], out
    assert all("final attribute" in line for line in errors), out


def test_the_classes_build_compare_and_replace_at_run_time() -> None:
    s = Signals(wait_seconds=1.0, transfers=2)
    assert s == Signals(1.0, None, 2) and s != dataclasses.replace(s, transfers=3)
    assert Survey(nps=9).has_score()
    assert [f.name for f in dataclasses.fields(TouchpointEvent)][:3] == [
        "event_id", "occurred_at", "producer"]
    assert not hasattr(s, "__dict__")  # slotted or native: no per-instance dict


@pytest.mark.parametrize("copied", [lambda v: pickle.loads(pickle.dumps(v)), copy.copy,
                                    copy.deepcopy], ids=["pickle", "copy", "deepcopy"])
def test_pickle_and_copy_rebuild_equal_values(copied: Any) -> None:
    """Compiled, the classes are native: pickle and `copy` rebuild them through `__reduce__`."""
    e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey", "web",
                        "web", "use", "j1", 1, 0.25, Signals(1.5, None, 2, True, None),
                        Survey(9, 3, 5, None, "fine", "less_effort"), "won", {"tier": "gold"},
                        occurred_ms=1795000000123)
    digest = content_digest(e)
    for value in (e, e.signals, e.survey):
        again = copied(value)
        assert again == value and type(again) is type(value) and again is not value
    again = copied(e)
    assert again.occurred_ms == 1795000000123  # given, not derived again
    assert again.known_digest == NOT_DIGESTED and content_digest(again) == digest
