"""The local stack (scripts/stack.sh) for tests and benchmarks: start it, read its environment;
a failure fails the calling test with the script's own words (never a skip)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack.sh"


def run_stack(*args: str, timeout: float = 600) -> str:
    """Run scripts/stack.sh; a failure fails the calling test with the script's own words."""
    proc = subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/stack.sh {' '.join(args)} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc.stdout


def stack_env() -> dict[str, str]:
    env = {}
    for line in run_stack("env").splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value
    return env


@dataclass(frozen=True)
class ClickHouseUrls:
    writer: str
    reader: str
    admin: str
