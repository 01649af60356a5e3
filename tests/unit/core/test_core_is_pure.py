"""The core's layering rule, checked on its sources: no Faust, Kafka or ClickHouse import, no
import of the adapters above it, and nothing read from the environment, a file or `sys.path` at
import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "pipeline" / "core"
SOURCES = sorted(CORE.glob("*.py"))
FOREIGN = ("faust", "aiokafka", "kafka", "clickhouse_driver", "chdb", "mode", "rocksdict",
           "pyarrow", "prometheus_client")


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_core_imports_nothing_of_the_servers_or_the_adapters(source: Path) -> None:
    for name in imported(ast.parse(source.read_text())):
        top = name.split(".")[0]
        assert top not in FOREIGN, f"{source.name} imports {name}"
        if top == "pipeline":
            assert name == "pipeline.core" or name.startswith("pipeline.core."), (
                f"{source.name} imports the adapter {name}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_core_reads_no_environment(source: Path) -> None:
    text = source.read_text()
    for needle in ("os.environ", "getenv", "sys.path", "__path__"):
        assert needle not in text, f"{source.name} uses {needle}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_core_reads_no_file_at_all(source: Path) -> None:
    """Not at import and not later: the scoring rules are loaded by the adapters
    (`pipeline.scoring_rules`) and passed in (issue 19)."""
    calls = {node.func.attr if isinstance(node.func, ast.Attribute)
             else getattr(node.func, "id", "")
             for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Call)}
    assert not calls & {"open", "read_text", "read_bytes", "load_scoring_rules"}, source.name


def test_importing_every_core_module_opens_no_file_but_its_own_code() -> None:
    """In a fresh interpreter (interpreted core), an audit hook sees every `open` while the core's
    modules are imported: only Python sources, bytecode and extension modules may be read."""
    program = f"""
import importlib, sys
import pipeline  # the adapter side: chooses the core build (pipeline.core_build)
opened = []
sys.addaudithook(lambda event, args: opened.append(args[0])
                 if event == "open" and isinstance(args[0], str) else None)  # not an fd
for name in {[p.stem for p in SOURCES if p.stem != "__init__"]!r}:
    importlib.import_module("pipeline.core." + name)
code = (".py", ".pyc", ".so")
print([path for path in opened if not path.endswith(code) and "__pycache__" not in path])
"""
    env = {"PEAKEND_PURE_CORE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


# A NamedTuple's own API has leading underscores; it is public nonetheless.
NAMED_TUPLE_API = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_private_name_of_another_object_is_used(path: Path) -> None:
    """A module calls another class through its public methods (issue 19: the engine called
    the tracker's `_apply`, `_advance`, `_withdraw` and read `_end_deltas`): an attribute with
    one leading underscore is read on `self` or `cls`, or on another object of a class of the
    same module (`JourneyMoments.merge` filling the result it builds)."""
    tree = ast.parse(path.read_text())
    own = {node.name for node in ast.walk(tree)
           if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    own |= {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls") and isinstance(node.ctx, ast.Store)}
    leaks = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in NAMED_TUPLE_API
                and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            leaks.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert leaks == []
