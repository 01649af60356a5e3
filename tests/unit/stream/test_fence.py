"""`GenerationFence`: after a dropped batch, no later record of its generation is applied, and
why that matters: applying a partition's later events over a hole changes its journeys."""

from __future__ import annotations

import json

from pipeline.contract import parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.event import TouchpointEvent
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream.fence import GenerationFence
from pipeline.stream.partition import PartitionProcessor

SCORING_RULES = load_scoring_rules()


def test_records_of_a_dropped_generation_are_refused_until_the_next_one() -> None:
    fence = GenerationFence()
    assert fence.admits(0, current=0)
    fence.drop([])  # nothing processed: nothing fenced
    assert fence.admits(0, current=0)
    fence.drop([5])
    assert not fence.admits(5, current=5)
    assert not fence.admits(4, current=5)
    assert fence.admits(6, current=6)
    fence.drop([4])  # an older drop never reopens a newer fence
    assert not fence.admits(5, current=5) and fence.admits(6, current=6)


def event(n: int, minute: int) -> TouchpointEvent:
    return parse_event(json.dumps({
        "schema_version": 1, "event_id": f"e{n}", "producer": "test", "customer_id": "c1",
        "occurred_at": f"2026-11-01T10:{minute:02d}:00Z", "type": "interaction",
        "touchpoint": "cart", "channel": "web", "stage": "purchase",
    }).encode())


def records(minutes: tuple[tuple[int, int], ...]) -> dict[str, str]:
    """Each journey id the processor sent, with its last status."""
    processor = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    sent: dict[str, str] = {}
    for n, minute in minutes:
        for record in processor.process(event(n, minute)).journeys:
            sent[record.journey_id] = record.status
    return sent


def test_a_hole_in_a_partitions_events_leaves_a_journey_replay_never_sends() -> None:
    """The hazard the fence prevents: minutes 0, 20, 40 are one session (gaps under 30 min).
    Applied as 0, 40 (the batch holding 20 dropped, the next one applied) and then 20 (re-read
    by the partition's owner), the 40 starts a session of its own that the 20 then merges:
    its record stays behind as `superseded`, a row `peakend replay` never writes."""
    in_order = records(((0, 0), (1, 20), (2, 40)))
    holed = records(((0, 0), (2, 40), (1, 20)))
    assert in_order == {"c1@2026-11-01T10:00:00.000Z": "open"}
    assert holed == {**in_order, "c1@2026-11-01T10:40:00.000Z": "superseded"}
