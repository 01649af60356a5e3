"""Collection rules for the whole repository (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import pipeline.core_build

# With the compiled core active (scripts/compile_core.py), `pipeline.core.*` resolve to the mypyc
# build, and pytest cannot collect doctests from a module whose __file__ is not its source file.
# `make test` therefore runs the core's doctests and unit tests in a first pass on the
# interpreted sources (PEAKEND_PURE_CORE=1), then the whole suite against the compiled build.
collect_ignore = ["pipeline/core"] if pipeline.core_build.COMPILED else []


def pytest_report_header() -> str:
    if pipeline.core_build.COMPILED:
        return ("peakend core: compiled (mypyc); pipeline/core doctests run in the "
                "PEAKEND_PURE_CORE=1 pass of `make test`")
    return "peakend core: interpreted"
