"""`peakend replay` makes no reference cycles (bench/replay_cycles.py; docs/core.md "Cost over
long histories"): with the collector off for the whole command, a full collection afterwards
finds nothing unreachable. A change that makes a cycle per line fails here before it makes
replay's heap grow with nothing to collect it."""

from __future__ import annotations

import gc
from pathlib import Path

from bench.replay_cycles import measure
from jobs.generate import GeneratorConfig, encode_event, generate_events


def test_replay_leaves_no_reference_cycles_and_the_collector_as_found(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = GeneratorConfig(events=3_000, seed=5, span_ms=2 * 86_400_000)
    events.write_bytes(b"".join(encode_event(e) + b"\n" for e in generate_events(config)))
    assert gc.isenabled()
    off = measure(str(events), "off")
    assert off["lines"] > 2_000  # the generator's invalid share are dead letters, in the run
    assert off["young"] == 0 and off["unreachable"] == 0
    assert gc.isenabled()
    policy = measure(str(events), "policy")
    assert policy["young"] > 0 and policy["unreachable"] == 0
