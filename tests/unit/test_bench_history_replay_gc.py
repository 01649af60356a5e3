"""bench/bench_history.py --replay-gc: the replay child runs the command with automatic
collection off when told to (its parent passes `--replay-gc` by environment), and with the
command's own policy otherwise."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from bench.bench_history import timed_replay
from jobs.generate import GeneratorConfig, encode_event, generate_events


@pytest.mark.parametrize("setting", ["off", "policy"])
def test_the_replay_child_follows_its_collector_setting(tmp_path: Path, setting: str) -> None:
    events = tmp_path / "events.jsonl"
    config = GeneratorConfig(events=300, seed=2)
    events.write_bytes(b"".join(encode_event(e) + b"\n" for e in generate_events(config)))
    try:
        spent = timed_replay(str(events), str(tmp_path / "out"), setting)
        assert spent > 0
        assert gc.isenabled() == (setting == "policy")
    finally:
        gc.enable()
