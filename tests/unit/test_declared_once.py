"""Rules declared in one place and read everywhere else (issue 19): where a value still has to be
written twice (the core's config takes defaults of its own, so the pure core runs without the
settings layer), these tests fail as soon as the two disagree."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path
from typing import Any, cast

import pytest

from dashboards import build, compose
from pipeline.core.config import CoreConfig
from pipeline.core.event import STAGES
from pipeline.settings import Settings, format_value, variable_name
from pipeline.stream.topics import topic_partitions


def _differences(made: Any, core: Any, path: str) -> list[str]:
    if dataclasses.is_dataclass(made):
        return [d for f in dataclasses.fields(made)
                for d in _differences(getattr(made, f.name), getattr(core, f.name),
                                      f"{path}.{f.name}")]
    return [] if made == core else [f"{path}: settings give {made!r}, the core {core!r}"]


def test_the_settings_defaults_build_the_cores_own_defaults() -> None:
    """`Settings().core_config()` and `CoreConfig()` are the same configuration, field by field:
    a default changed on one side only (a window, a threshold, the lateness) fails here."""
    assert _differences(Settings.from_env({}).core_config(), CoreConfig(), "core") == []


@pytest.mark.parametrize("variable,value", [
    ("PEAKEND_ALERT_MIN_N", "37"), ("PEAKEND_BUCKET_SECONDS", "120"),
    ("PEAKEND_ALLOWED_LATENESS_SECONDS", "600"), ("PEAKEND_ALERT_P_VALUE", "0.05")])
def test_a_setting_reaches_the_core(variable: str, value: str) -> None:
    """The comparison above could pass with a setting that reaches nothing: each of these must
    change the core's configuration."""
    assert _differences(Settings.from_env({variable: value}).core_config(), CoreConfig(), "core")


def test_dashboards_read_the_rules_they_show_from_the_pipeline() -> None:
    defaults = Settings.from_env({})
    assert build.MIN_N == defaults.alert_min_n == CoreConfig().drops.min_n
    query = build.STAGE["query"]
    assert isinstance(query, str) and query.split(",") == list(STAGES)
    public = {name: n for name, n in topic_partitions(defaults).items()
              if not name.startswith(defaults.app_id)}
    assert public == compose.TOPICS
    assert set(public) >= {defaults.topic_touchpoints, defaults.topic_dead_letters,
                           defaults.topic_journeys, defaults.topic_metrics, defaults.topic_alerts}


def _assignments(names: set[str]) -> dict[str, list[str]]:
    """Module-level assignments to any of `names` in pipeline/ and jobs/: module -> names."""
    root = Path(__file__).resolve().parents[2]
    found: dict[str, list[str]] = {}
    for top in ("pipeline", "jobs"):
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                targets = (node.targets if isinstance(node, ast.Assign)
                           else [node.target] if isinstance(node, ast.AnnAssign) else [])
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in names:
                        found.setdefault(str(path.relative_to(root)), []).append(target.id)
    return found


def test_time_units_and_the_never_sentinel_are_declared_once() -> None:
    """The core's time units (`pipeline.core.config`) and its "never" / "far" instants
    (`pipeline.core.clock`) are imported wherever they are needed, never written again."""
    units = _assignments({"SECOND_MS", "MINUTE_MS", "HOUR_MS", "DAY_MS", "WEEK_MS"})
    assert units == {"pipeline/core/config.py": ["SECOND_MS", "MINUTE_MS", "HOUR_MS", "DAY_MS"]}
    assert _assignments({"NEVER_MS", "FAR_MS"}) == {"pipeline/core/clock.py": ["NEVER_MS",
                                                                               "FAR_MS"]}


def _core_settings() -> list[str]:
    """The settings `Settings.core_config` reads (`self.<name>` in its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Settings.core_config)))
    return sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Name) and node.value.id == "self"})


def _other_value(name: str) -> str:
    """A valid value of the setting other than its default, as its variable spells it."""
    default = Settings.model_fields[name].default
    if isinstance(default, tuple):
        return ",".join(default[:1])
    if isinstance(default, str):
        choices = typing.get_args(Settings.model_fields[name].annotation)
        return cast(str, next(c for c in choices if c != default))  # a Literal of strings
    return format_value(default * 2 if default else 60)


def test_every_setting_the_core_reads_reaches_the_core() -> None:
    """Each setting `core_config` reads, set to another valid value, changes the core's
    configuration: none is read and then dropped, none mapped onto a field that a later
    assignment overwrites."""
    names = _core_settings()
    assert len(names) >= 20
    unchanged = [name for name in names
                 if not _differences(Settings.from_env(
                     {variable_name(name): _other_value(name)}).core_config(),
                     CoreConfig(), "core")]
    assert unchanged == []
