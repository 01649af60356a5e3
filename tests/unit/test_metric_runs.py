"""A replay that spills its metric records to runs on disk writes the same metrics.jsonl and
windows.jsonl as one that holds them all (`pipeline/metric_runs.py`): spilled records need not
be final, so later versions of a spilled key must win in the merge exactly as in memory."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.generate import GeneratorConfig, generate_events
from pipeline.core.config import CoreConfig
from pipeline.core.records import MetricRecord
from pipeline.metric_runs import MetricKey, MetricRuns, key_of
from pipeline.replay import Replay, with_now

NOW_MS = 1_830_000_000_000  # every generated event reached us before this
FAR_FUTURE = 1 << 62


def replay_to(folder: Path, spill_every: int, before_ms: int | None) -> Replay:
    """Generated events (with late ones and re-sent copies) replayed into `folder`; every
    `spill_every` lines the metric records of buckets starting before `before_ms` (None: the
    replay's own bound) are spilled."""
    config = GeneratorConfig(events=3_000, seed=21, span_ms=3 * 86_400_000)
    replay = Replay(with_now(CoreConfig(), NOW_MS), 4, "generated", 65536)
    for number, event in enumerate(generate_events(config), start=1):
        replay.line(number, json.dumps(event).encode())
        if number % spill_every == 0:
            if before_ms is None:
                replay.spill_metrics()
            else:
                replay.metric_runs.spill(before_ms)
    replay.keep(replay.engine.finish())
    replay.write(folder)
    return replay


def test_spilling_anything_at_any_time_writes_the_same_files(tmp_path: Path) -> None:
    held = replay_to(tmp_path / "held", 10**9, None)
    everything = replay_to(tmp_path / "everything", 37, FAR_FUTURE)  # nothing final about it
    own_bound = replay_to(tmp_path / "own", 200, None)  # as `peakend replay` spills
    assert held.metric_runs.spilled == 0 and held.metric_keys is not None
    assert everything.metric_runs.spilled >= held.metric_keys  # every key went to a run
    assert 0 < own_bound.metric_runs.spilled < held.metric_keys  # the old buckets only
    for name in ("metrics.jsonl", "windows.jsonl", "journeys.jsonl"):
        expected = (tmp_path / "held" / name).read_bytes()
        assert (tmp_path / "everything" / name).read_bytes() == expected, name
        assert (tmp_path / "own" / name).read_bytes() == expected, name
    assert held.metric_keys == everything.metric_keys == own_bound.metric_keys
    assert held.metric_keys > 500
    assert f"metric partials: {held.metric_keys}" in everything.summary(1.0)


def some_records() -> list[MetricRecord]:
    config = GeneratorConfig(events=300, seed=4, span_ms=3_600_000)
    replay = Replay(with_now(CoreConfig(), NOW_MS), 1, "generated", 65536)
    for number, event in enumerate(generate_events(config), start=1):
        replay.line(number, json.dumps(event).encode())
    return list(replay.metrics.values())[:6]


RECORDS = some_records()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(RECORDS) - 1), st.integers(1, 5),
                          st.integers(0, 100), st.booleans()), max_size=60))
def test_the_merge_keeps_what_memory_keeps(steps: list[tuple[int, int, int, bool]]) -> None:
    """Per key the first record of the highest version, whatever was spilled in between."""
    runs = MetricRuns()
    memory: dict[MetricKey, MetricRecord] = {}
    for index, version, n, spill in steps:
        record = RECORDS[index]._replace(version=version, n=n)  # same key, other content
        runs.keep(record)
        old = memory.get(key_of(record))
        if old is None or record.version > old.version:
            memory[key_of(record)] = record
        if spill:
            runs.spill(FAR_FUTURE)
    assert list(runs.merged()) == [memory[key] for key in sorted(memory)]
