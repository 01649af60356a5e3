"""The pure domain core: no Faust, Kafka or ClickHouse imports here.

The stream (Faust agents), the batch jobs and `peakend replay` all call this package, so the same
events give the same numbers wherever they are processed.

The modules are plain typed Python. `scripts/compile_core.py` (run by `make setup`) can compile
them with mypyc into a separate directory; this file puts that build in front of the package
path only when its manifest matches the current sources, so an edited source never runs as a
stale binary. `PEAKEND_PURE_CORE=1` forces the interpreted modules; `PEAKEND_CORE_BUILD` moves
the build directory. `COMPILED` tells which one this process runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

# The modules mypyc compiles (every module with per-event or per-bucket work).
COMPILED_MODULES = (
    "buckets", "claims", "clock", "config", "drops", "engine", "event", "journeys", "metrics",
    "moments",
    "partitioner", "records", "scoring", "segment_totals", "stats", "surveys", "timefmt",
    "valence",
)
SOURCE_DIR = Path(__file__).resolve().parent  # where the sources are, compiled or not
DEFAULT_BUILD = SOURCE_DIR.parents[1] / "build" / "core-compiled"


def source_digest() -> str:
    """SHA-256 over every source file of this package (name and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _compiled_build() -> Path | None:
    """The compiled build to use, or None (disabled, missing, stale or another Python)."""
    if os.environ.get("PEAKEND_PURE_CORE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None  # the same reading as pipeline.settings (a bool variable)
    build = Path(os.environ.get("PEAKEND_CORE_BUILD") or DEFAULT_BUILD)
    try:
        manifest = json.loads((build / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("python") != sys.version.split()[0] or manifest.get("digest") != (
            source_digest()):
        return None
    return build


_build = _compiled_build()
COMPILED = _build is not None
if _build is not None:
    # mypyc's shared runtime library is a top-level module of the build directory.
    sys.path.append(str(_build))
    __path__.insert(0, str(_build / "pipeline" / "core"))
