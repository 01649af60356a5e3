"""Which build of the pure core this process runs: its interpreted sources or the mypyc build.

The core's modules are plain typed Python. `scripts/compile_core.py` (run by `make setup`) can
compile them with mypyc into a separate directory; `activate` puts that build in front of
`pipeline.core`'s package path only when its manifest matches the current sources, so an edited
source never runs as a stale binary. `PEAKEND_PURE_CORE=1` forces the interpreted modules;
`PEAKEND_CORE_BUILD` moves the build directory. `COMPILED` tells which one this process runs.

This lives outside the core so that importing the core reads no environment variable and no
file: `pipeline/__init__.py` calls `activate` once, before any core module is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

# The modules mypyc compiles (every module with per-event or per-bucket work).
COMPILED_MODULES = (
    "buckets", "claims", "clock", "config", "drops", "engine", "event", "eventdict", "followups",
    "journeys", "moments", "partitioner", "records", "scoring", "segment_totals", "stats",
    "surveys", "timefmt", "valence", "vectors",
)
CORE_DIR = Path(__file__).resolve().parent / "core"  # the sources, compiled or not
DEFAULT_BUILD = CORE_DIR.parents[1] / "build" / "core-compiled"

COMPILED = False  # set by `activate`


def source_digest() -> str:
    """SHA-256 over every source file of the core (name and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(CORE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
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


def activate(core: ModuleType) -> bool:
    """Put the current compiled build (if any) in front of `core`'s package path; returns
    whether this process now runs it. Must run before any module of the core is imported."""
    global COMPILED
    build = compiled_build()
    if build is not None:
        # mypyc's shared runtime library is a top-level module of the build directory.
        sys.path.append(str(build))
        core.__path__.insert(0, str(build / "pipeline" / "core"))
    COMPILED = build is not None
    return COMPILED
