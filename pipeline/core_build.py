"""Which build of peakend's pure per-event code this process runs: the interpreted sources or the
mypyc build.

The compiled modules (`COMPILED_GROUPS`: the pure core and the pure per-event adapter modules of
pipeline.contract, pipeline.stream and pipeline.storage) are plain typed Python.
`scripts/compile_core.py` (run by `make setup`) compiles them with mypyc into one separate
directory whose manifest holds the digest of all their sources; `activate` and `extend_path` put
that build in front of each package's path only when the digest matches the current sources, so
an edited source never runs as a stale binary (everything falls back to the interpreted modules
together). `PEAKEND_PURE_CORE=1` forces the interpreted modules everywhere; `PEAKEND_CORE_BUILD`
moves the build directory. `COMPILED` tells which one this process runs.

This lives outside the core so that importing the core reads no environment variable and no
file: `pipeline/__init__.py` calls `activate` once, before any core module is imported, and each
adapter package's `__init__` calls `extend_path` before it imports any of its modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

# The modules mypyc compiles, by package: every core module with per-event or per-bucket work,
# and the adapter modules that run per event and import no Faust, Kafka client or ClickHouse
# driver and do no I/O (docs/streaming.md, issue 15, has what each one is worth).
COMPILED_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pipeline.core", (
        "buckets", "claims", "clock", "config", "drops", "engine", "event", "journeys",
        "moments", "partitioner", "records", "scoring", "segment_totals", "stats", "surveys",
        "timefmt", "valence", "vectors",
    )),
    # not dead_letters.py: its frozen dataclass, compiled, cannot be unpickled (the parallel
    # backfill sends dead letters between processes), and it runs only per invalid record
    ("pipeline.contract", ("decoding", "encode", "limits", "parser", "rejected")),
    ("pipeline.stream", (
        "batches", "claims", "followups", "messages", "outbox", "partition", "segments",
    )),
    ("pipeline.storage", ("tables",)),
)
# The core's, as before (bench and docs name them).
COMPILED_MODULES = COMPILED_GROUPS[0][1]
PIPELINE_DIR = Path(__file__).resolve().parent
CORE_DIR = PIPELINE_DIR / "core"  # the sources, compiled or not
DEFAULT_BUILD = PIPELINE_DIR.parent / "build" / "core-compiled"

COMPILED = False  # set by `activate`


def package_dir(package: str) -> Path:
    """The source directory of a package of `COMPILED_GROUPS` ("pipeline.stream")."""
    return PIPELINE_DIR.parent.joinpath(*package.split("."))


def source_files() -> list[Path]:
    """Every source the build depends on: all of the core, and of each adapter package its
    `__init__.py` and the compiled modules (what they import from elsewhere is interpreted)."""
    files = set(CORE_DIR.glob("*.py"))
    for package, modules in COMPILED_GROUPS[1:]:
        files.update(package_dir(package) / f"{name}.py" for name in ("__init__", *modules))
    return sorted(files, key=lambda path: path.relative_to(PIPELINE_DIR).as_posix())


def core_digest() -> str:
    """SHA-256 over every source file of the core alone (name and bytes, sorted by name): the
    version of the core an engine state was written by (jobs/backfill/checkpoint.py)."""
    digest = hashlib.sha256()
    for path in sorted(CORE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_digest() -> str:
    """SHA-256 over every source file the build depends on (path and bytes, sorted by path)."""
    digest = hashlib.sha256()
    for path in source_files():
        name = path.relative_to(PIPELINE_DIR).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compiled_build(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The compiled build to use, or None (disabled, missing, stale or another Python)."""
    if environ.get("PEAKEND_PURE_CORE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None  # the same reading as pipeline.settings (a bool variable)
    build = Path(environ.get("PEAKEND_CORE_BUILD") or DEFAULT_BUILD)
    try:
        manifest = json.loads((build / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("python") != sys.version.split()[0] or manifest.get("digest") != (
            source_digest()):
        return None
    return build


_BUILD: Path | None = None  # the build `activate` chose


def activate(core: ModuleType) -> bool:
    """Choose the build for this process and put it (if current) in front of `core`'s package
    path; returns whether this process now runs it. Must run before any module of the core is
    imported."""
    global COMPILED, _BUILD
    build = compiled_build()
    if build is not None:
        # mypyc's shared runtime library is a top-level module of the build directory.
        sys.path.append(str(build))
        core.__path__.insert(0, str(build / "pipeline" / "core"))
    COMPILED = build is not None
    _BUILD = build
    return COMPILED


def extend_path(path: list[str], package: str) -> list[str]:
    """`path` (an adapter package's `__path__`) with the chosen build's directory for `package`
    in front, or as it is when this process runs the interpreted modules. Called by the package's
    `__init__` before it imports any of its modules."""
    if _BUILD is None:
        return path
    return [str(_BUILD.joinpath(*package.split("."))), *path]
