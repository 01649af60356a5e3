"""The worker's outbox without Faust: what leaves per flush, coalesced, and nothing twice."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.partitioner import partition_for
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream import messages
from pipeline.stream.outbox import ALERTS, CONTRIBUTIONS, JOURNEYS, METRICS, Outbox
from pipeline.stream.partition import PartitionProcessor
from pipeline.stream.segments import SegmentStage

SCORING_RULES = load_scoring_rules()

ROOT = Path(__file__).resolve().parents[3]


def events(n: int = 2000) -> list[bytes]:
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.jsonl"
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--events", str(n),
                        "--seed", "4", "--span", "1d", "--output", str(out), "--quiet"],
                       cwd=ROOT, check=True)
        return out.read_bytes().splitlines()


def test_one_record_per_journey_and_bucket_per_flush_with_the_latest_versions() -> None:
    config = CoreConfig()
    procs = [PartitionProcessor(p, config, SCORING_RULES) for p in range(3)]
    segments = SegmentStage(config)
    outbox = Outbox(3)
    latest: dict[str, int] = {}
    closed = 0
    parsed = []
    for line in events():
        with contextlib.suppress(Rejected):
            parsed.append(parse_event(line))
    for event in parsed:
        p = partition_for(event.journey_key, 3)
        out = procs[p].process(event)
        outbox.add_journey_output(p, out)
        for record in out.journeys:
            if record.version >= latest.get(record.journey_id, -1):
                latest[record.journey_id] = record.version
    drained = outbox.drain()
    assert not outbox and not outbox.drain().records  # drained once
    journeys = [json.loads(r.value) for r in drained.records if r.role == JOURNEYS]
    ids = [j["journey_id"] for j in journeys]
    assert len(ids) == len(set(ids)) == len(latest)  # one per journey, each the latest
    assert {j["journey_id"]: j["version"] for j in journeys} == latest
    closed = sum(j["status"] == "closed" for j in journeys)
    assert sum(drained.closed.values()) == closed
    assert drained.counts[JOURNEYS] == len(journeys)
    # contributions: one message per segment and partition, carrying every item in order
    contributions = [r for r in drained.records if r.role == CONTRIBUTIONS]
    marks = [r for r in contributions if r.key is None]
    assert marks and all(r.partition is not None for r in marks)
    keyed = [(r.key, json.loads(r.value)) for r in contributions if r.key is not None]
    for key, message in keyed:
        assert message["t"] == messages.BATCH and message["items"]
        assert {messages.segment_key(i["d"], i["s"]).encode() for i in message["items"]} == {key}
    # the segment stage's metric records leave once per bucket
    for _, message in keyed:
        outbox.add_segment_output(segments.apply(message))
    outbox.add_segment_output(segments.flush())
    second = outbox.drain()
    metric_keys = [(json.loads(r.value)["metric"], json.loads(r.value)["segment_dim"],
                    json.loads(r.value)["segment_value"], json.loads(r.value)["window_start"])
                   for r in second.records if r.role == METRICS]
    assert metric_keys and len(metric_keys) == len(set(metric_keys))
    assert second.counts[METRICS] == len(metric_keys)
    assert all(r.role in (METRICS, ALERTS) for r in second.records)
