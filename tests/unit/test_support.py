"""tests/support/ (shared by the tests and bench/) finds the repository from where it lives."""

from __future__ import annotations

from pathlib import Path

from tests.support import stack, stream

ROOT = Path(__file__).resolve().parents[2]


def test_support_modules_find_the_repository_and_the_stack_script() -> None:
    assert stack.ROOT == stream.ROOT == ROOT
    assert stack.STACK.is_file() and stack.STACK == ROOT / "scripts" / "stack.sh"
