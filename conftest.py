"""Collection rules for the whole repository (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings

import pipeline.core_build

# Property tests (Hypothesis) under `make test` draw the same examples on every run and machine
# (`--hypothesis-profile=ci`): a merge is judged on the tree, not on the draw. Before, each CI
# run drew its own, and one found a case no earlier run had (2026-12-06), so a tree green on
# this machine failed on the CI machine. New draws are explored by `make fuzz` (the default
# profile: a random seed each run, failures kept in .hypothesis/ and replayed first).
settings.register_profile("ci", derandomize=True, print_blob=True)

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


# The run's exit status, kept for `pytest_unconfigure` below.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Embedded chdb keeps its engine's thread pools running until the process exits, and its
    # static teardown at exit can crash (chdb-io/chdb-core#181): a `make test` whose 236
    # integration tests had all passed ended in "ShutdownTablesThreadPool is not initialized"
    # and a segmentation fault (2026-12-02). Once pytest has reported and every plugin has
    # finished, a process that loaded chdb leaves with pytest's own status, without the
    # interpreter's teardown.
    if "chdb" in sys.modules and _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
