"""The event's classes stay read-only where it is checked: `value_class` (pipeline/core/value.py)
drops `frozen=True`'s runtime guard for speed, so the guarantee is the type checker's, and mypy
runs on every change (`make lint`, CI). This proves mypy still rejects an assignment to a field
of each class, and still accepts building, comparing and `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from mypy import api

from pipeline.core.event import Signals, Survey, TouchpointEvent

ROOT = Path(__file__).resolve().parents[2]

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


def test_mypy_rejects_assigning_a_field_of_every_event_class(tmp_path: Path) -> None:
    source = tmp_path / "mutate.py"
    source.write_text(CHECKED)
    out, _, status = api.run([str(source), "--strict", "--no-incremental",
                              "--cache-dir", str(tmp_path / "cache")])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out
    # one error per assignment, on exactly those lines, and nothing else in the file
    assert [int(line.split(":")[1]) for line in errors] == [9, 10, 11], out
    assert all("read-only" in line for line in errors), out


def test_the_classes_build_compare_and_replace_at_run_time() -> None:
    s = Signals(wait_seconds=1.0, transfers=2)
    assert s == Signals(1.0, None, 2) and s != dataclasses.replace(s, transfers=3)
    assert Survey(nps=9).has_score()
    assert [f.name for f in dataclasses.fields(TouchpointEvent)][:3] == [
        "event_id", "occurred_at", "producer"]
    assert not hasattr(s, "__dict__")  # slotted: no per-instance dict
