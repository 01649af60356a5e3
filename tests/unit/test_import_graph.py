"""No import cycle in `pipeline/` or `jobs/`: the module import graph, built statically from every
source file (module-level and function-level imports alike: an import moved into a function to
dodge a cycle still makes one), has no strongly connected component of more than one module and
no module importing itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "jobs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(path): path
            for top in PACKAGES for path in sorted((ROOT / top).rglob("*.py"))
            if "build" not in path.relative_to(ROOT).parts}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a module, or a name inside one) falls in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from a import b` imports a, and a.b when b is a submodule
            targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        for target in targets:
            hit = resolve(target, known)
            if hit is not None and hit != module:
                found.add(hit)
    return found


def import_graph() -> dict[str, set[str]]:
    known = sources()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges = imports_of(module, path, known)
        # importing a.b.c runs a and a.b first; those edges are not the module's choice, drop them
        graph[module] = {target for target in edges if not module.startswith(target + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle inside a component, to name in the failure: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        following = sorted(graph[path[-1]] & members)
        back = [t for t in following if t in seen]
        if back:
            return [*path[path.index(back[0]):], back[0]]
        path.append(following[0])
        seen.add(following[0])


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert "pipeline.core.engine" in graph and "jobs.drivers" in graph
    assert graph["pipeline.core.engine"], "the core engine imports other core modules"


def test_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert a_cycle_through(["a", "b", "c"], graph) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_pipeline_or_jobs() -> None:
    graph = import_graph()
    named = [" -> ".join(a_cycle_through(component, graph)) for component in cycles(graph)]
    assert named == [], "import cycles:\n" + "\n".join(named)


def test_batch_code_imports_nothing_of_the_stream_adapter() -> None:
    """The batch jobs and replay run the core without Kafka: what they share with the stream (the
    dead-letter messages, the topics' tables) lives in the core or beside the topics."""
    graph = import_graph()
    batch = [m for m in graph if m.startswith("jobs.") or m == "pipeline.replay"]
    leaks = sorted(f"{m} -> {t}" for m in batch for t in graph[m]
                   if t.startswith("pipeline.stream"))
    assert leaks == []
