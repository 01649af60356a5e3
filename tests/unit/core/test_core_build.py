"""The mypyc-compiled core (scripts/compile_core.py) gives the interpreted core's results, bit for
bit, and is used only while it matches the sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMPILE = ROOT / "scripts" / "compile_core.py"

# Runs the whole engine over the core benchmark's generated mix (journey-id and customer keyed,
# surveys, out of order input, drops) and prints which core ran and a digest of every record
# (and of every event's dict form, `eventdict`).
PROGRAM = """
import hashlib, json, sys
import pipeline.core_build
from pipeline.scoring_rules import load_scoring_rules
from bench.bench_core import generate
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.eventdict import event_from_dict, event_to_dict

SCORING_RULES = load_scoring_rules()
engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
digest = hashlib.sha256()
events = generate(30_000, seed=7)
for e in events:  # the batch records' dict form, both ways
    as_dict = event_to_dict(e)
    digest.update(json.dumps(as_dict).encode())
    assert event_from_dict(as_dict, e.occurred_ms) == e, e
for i in range(0, len(events), 250):
    out, reasons = engine.process_many(events[i:i + 250], partition=i // 250 % 3)
    for r in [*out.journeys, *out.metrics, *out.alerts]:
        digest.update(json.dumps(r.to_dict(), sort_keys=True).encode())
    digest.update(json.dumps(reasons).encode())
for r in engine.finish().journeys:
    digest.update(json.dumps(r.to_dict(), sort_keys=True).encode())
print(json.dumps({"compiled": pipeline.core_build.COMPILED,
                  "journeys_module": sys.modules["pipeline.core.journeys"].__file__,
                  "digest": digest.hexdigest()}))
"""


def run_core(**env: str) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("PEAKEND_PURE_CORE", "PEAKEND_CORE_BUILD")}
    proc = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env={**full, **env},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's compiled build when current, else a fresh one (about 40 s)."""
    default = ROOT / "build" / "core-compiled"
    if subprocess.run([sys.executable, str(COMPILE), "--check"], cwd=ROOT,
                      check=False).returncode == 0:
        return default
    out = tmp_path_factory.mktemp("core-compiled")
    subprocess.run([sys.executable, str(COMPILE), "--out", str(out)], cwd=ROOT, check=True,
                   timeout=900)
    return out


def test_compiled_core_equals_interpreted_core(build: Path) -> None:
    pure = run_core(PEAKEND_PURE_CORE="1")
    compiled = run_core(PEAKEND_CORE_BUILD=str(build))
    assert pure["compiled"] is False and str(pure["journeys_module"]).endswith("journeys.py")
    assert compiled["compiled"] is True
    assert str(compiled["journeys_module"]).startswith(str(build))
    assert compiled["digest"] == pure["digest"]


def test_a_stale_build_is_not_used(build: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(build, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["digest"] = "0" * 64  # as if a source changed after compiling
    (stale / "manifest.json").write_text(json.dumps(manifest))
    assert run_core(PEAKEND_CORE_BUILD=str(stale))["compiled"] is False
    assert subprocess.run([sys.executable, str(COMPILE), "--check", "--out", str(stale)],
                          cwd=ROOT, check=False).returncode == 1


def test_a_build_without_a_listed_module_is_not_current(build: Path, tmp_path: Path) -> None:
    """A module added to COMPILED_MODULES makes the build stale even though no source changed
    (a module added to the list was once skipped that way)."""
    short = tmp_path / "short"
    shutil.copytree(build, short)
    manifest = json.loads((short / "manifest.json").read_text())
    assert "journeys" in manifest["modules"]
    manifest["modules"] = [m for m in manifest["modules"] if m != "journeys"]
    (short / "manifest.json").write_text(json.dumps(manifest))
    assert subprocess.run([sys.executable, str(COMPILE), "--check", "--out", str(short)],
                          cwd=ROOT, check=False).returncode == 1
    assert subprocess.run([sys.executable, str(COMPILE), "--check", "--out", str(build)],
                          cwd=ROOT, check=False).returncode == 0


def test_compiled_event_fields_are_read_only_at_run_time(build: Path) -> None:
    """Compiled, a `Final` field of the event's classes cannot be assigned at run time either
    (interpreted, mypy refuses it: test_core_event_classes.py)."""
    program = ("import pipeline.core_build\n"
               "from pipeline.core.event import Signals\n"
               "s = Signals(wait_seconds=1.0)\n"
               "try:\n"
               "    s.wait_seconds = 2.0\n"
               "except AttributeError:\n"
               "    print('refused', pipeline.core_build.COMPILED, s.wait_seconds)\n"
               "else:\n"
               "    print('assigned', pipeline.core_build.COMPILED, s.wait_seconds)\n")
    full = {k: v for k, v in os.environ.items()
            if k not in ("PEAKEND_PURE_CORE", "PEAKEND_CORE_BUILD")}
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT,
                          env={**full, "PEAKEND_CORE_BUILD": str(build)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["refused", "True", "1.0"]
