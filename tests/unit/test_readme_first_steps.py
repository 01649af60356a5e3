"""The README's commands run as written: its first steps end to end, and no line is a trap.

The first steps (the ```sh blocks after the `first-steps` markers) run in a fresh directory whose
`.venv` is this project's: each line split as a shell would split it, without a shell, with the
exit status its comment announces. Every ```sh line of the README must paste safely: no pipe,
redirection, `;`, `&` or `[a|b]` placeholder outside quotes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "<<", "(", ")"}


def sh_blocks(text: str) -> list[list[str]]:
    return [block.strip("\n").splitlines()
            for block in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)]


def split_comment(line: str) -> tuple[str, str]:
    command, _, comment = line.partition("  #")
    return command.strip(), comment.strip()


def first_steps() -> list[str]:
    """The lines of each ```sh block that follows a `first-steps` marker, in order."""
    return [line for part in README.split("<!-- first-steps")[1:] for line in sh_blocks(part)[0]]


def test_every_readme_shell_line_pastes_safely() -> None:
    lines = [line for block in sh_blocks(README) for line in block]
    assert len(lines) >= 8
    for line in lines:
        command, _ = split_comment(line)
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        assert not SHELL_OPERATORS & set(tokens), f"README line runs shell operators: {line}"
        assert not any(re.fullmatch(r"\[.*\|.*\].*", t) for t in tokens), line


def test_first_steps_run_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code (the shared .venv may point elsewhere)
    steps = first_steps()
    commands = [shlex.split(split_comment(s)[0])[1] for s in steps]
    assert commands == ["generate", "validate", "replay", "drivers"], commands
    assert all(shlex.split(s)[0] == ".venv/bin/peakend" for s in steps)
    for line in steps:
        command, comment = split_comment(line)
        expected = 1 if "exits 1" in comment else 0
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == expected, f"{line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        if expected:
            assert re.search(r"events\.jsonl:\d+: ", done.stdout + done.stderr), done.stdout
    journeys = (tmp_path / "out" / "journeys.jsonl").read_text().splitlines()
    assert journeys and all("peak_valence" in json.loads(line) for line in journeys[:5])
    # the drivers line, last, prints its ranking of touchpoints
    assert re.search(r"^drivers by touchpoint, outcome nps: \d+ journeys", done.stdout, re.M), (
        done.stdout[-2000:])
