"""The mypyc build of the per-event adapter modules (pipeline.core_build.COMPILED_GROUPS, built by
scripts/compile_core.py with the core) gives the interpreted modules' results, byte for byte,
and is used only while it matches the sources (docs/streaming.md, issue 15)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core_build import COMPILED_GROUPS

ROOT = Path(__file__).resolve().parents[3]
COMPILE = ROOT / "scripts" / "compile_core.py"

# Generated records with invalid ones mixed in (dead letters) and late ones, through every
# per-event path as the worker and the sink run them (bench/bench_adapters.py: the entry stage's
# batch records and dead letters, the journeys, claims and segments agents' records, the sink's
# columns per table); prints which modules ran and a digest of everything that left.
PROGRAM = """
import json, sys
import pipeline.core_build
from jobs.generate import GeneratorConfig, generate_records
from bench.bench_adapters import workload

config = GeneratorConfig(events=4_000, seed=15, span_ms=6 * 3600_000, late_fraction=0.03,
                         invalid_fraction=0.05)
values = [r if isinstance(r, bytes) else json.dumps(r).encode()
          for r in generate_records(config)]
values += [b"", b"not json", b"[1]", b'{"event_id": 7}', b"\\xff\\xfe", b"{}" + b" " * 70_000]
_, digest = workload(values)()
modules = [f"{package}.{name}" for package, names in pipeline.core_build.COMPILED_GROUPS
           for name in names]
print(json.dumps({"compiled": pipeline.core_build.COMPILED, "digest": digest,
                  "files": {m: sys.modules[m].__file__ for m in modules if m in sys.modules}}))
"""


def run_adapters(**env: str) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("PEAKEND_PURE_CORE", "PEAKEND_CORE_BUILD")}
    proc = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT,
                          env={**full, **env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's compiled build when current, else a fresh one (about 2-3 minutes)."""
    default = ROOT / "build" / "core-compiled"
    if subprocess.run([sys.executable, str(COMPILE), "--check"], cwd=ROOT,
                      check=False).returncode == 0:
        return default
    out = tmp_path_factory.mktemp("core-compiled")
    subprocess.run([sys.executable, str(COMPILE), "--out", str(out)], cwd=ROOT, check=True,
                   timeout=1200)
    return out


def test_compiled_adapters_equal_interpreted_adapters(build: Path) -> None:
    pure = run_adapters(PEAKEND_PURE_CORE="1")
    compiled = run_adapters(PEAKEND_CORE_BUILD=str(build))
    assert pure["compiled"] is False and compiled["compiled"] is True
    pure_files, compiled_files = pure["files"], compiled["files"]
    assert isinstance(pure_files, dict) and isinstance(compiled_files, dict)
    # every adapter module ran, from the build when compiled and from its source when not
    for package, names in COMPILED_GROUPS[1:]:
        for name in names:
            module = f"{package}.{name}"
            assert str(pure_files[module]).endswith(f"{name}.py"), module
            assert str(compiled_files[module]).startswith(str(build)), module
            assert not str(compiled_files[module]).endswith(".py"), module
    assert compiled["digest"] == pure["digest"]


def test_a_stale_build_runs_every_module_interpreted(build: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(build, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["digest"] = "0" * 64  # as if an adapter source changed after compiling
    (stale / "manifest.json").write_text(json.dumps(manifest))
    ran = run_adapters(PEAKEND_CORE_BUILD=str(stale))
    assert ran["compiled"] is False
    files = ran["files"]
    assert isinstance(files, dict)
    assert all(str(path).endswith(".py") and not str(path).startswith(str(stale))
               for path in files.values())


def test_the_digest_covers_every_compiled_source() -> None:
    from pipeline.core_build import package_dir, source_files

    files = set(source_files())
    for package, names in COMPILED_GROUPS:
        for name in names:
            assert package_dir(package) / f"{name}.py" in files


def test_make_runs_the_doctests_of_every_compiled_module_interpreted() -> None:
    # conftest.py leaves the compiled modules out of the compiled pass's doctest collection
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    listed = set(next(line for line in text.splitlines()
                      if line.startswith("COMPILED_SOURCES =")).split("=", 1)[1].split())
    assert listed == {"pipeline/core", *(f"{package.replace('.', '/')}/{name}.py"
                                         for package, names in COMPILED_GROUPS[1:]
                                         for name in names)}
