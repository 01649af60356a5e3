"""The layout checks of the internal topics (pipeline/stream/layout.py) accept everything stage
one writes: for events generated from the published schema (and the contract's edge events:
extreme values, every optional member), each contributions record, follow-up input and claims
record that stage one makes of them reads back through its stage's reader, unchanged. A check
stricter than the writer would turn real records into dead letters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.followups import FollowupEvent, FollowupJourney
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream import messages
from pipeline.stream.claims import claim_item, decode_claims, encode_claims
from pipeline.stream.followups import (
    EVENT_KINDS,
    JOURNEY_KINDS,
    event_input,
    journey_input,
)
from pipeline.stream.followups import read as read_followup_inputs
from pipeline.stream.partition import PartitionProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from schema_roundtrip import EDGE_EVENTS
from schema_strategy import schema_events

CORE = CoreConfig()
RULES = load_scoring_rules(CORE.journeys.scoring_rules_path)
GENERATED = settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large])


def test_each_follow_up_field_has_its_kinds() -> None:
    assert len(JOURNEY_KINDS) == len(FollowupJourney._fields)
    assert len(EVENT_KINDS) == len(FollowupEvent._fields)


def written_and_read(obj: dict[str, Any]) -> int:
    """Stage one's records for the event `obj` (and for its journey closed), each through its
    stage's reader: what it reads equals what was written. The records checked."""
    event = parse_event(orjson.dumps(obj))
    if isinstance(event, Rejected):
        return 0
    proc = PartitionProcessor(0, CORE, RULES)
    out = proc.process(event, event.occurred_ms)
    checked = 0
    items = [message for _, message in out.contributions]
    journeys = list(out.journeys)
    if out.watermark is not None:
        assert messages.read(orjson.dumps(messages.watermark(0, out.watermark)))
    later = proc.process(event, event.occurred_ms + CORE.journeys.max_length_ms)  # a duplicate
    items += [message for _, message in later.contributions]
    journeys += later.journeys
    if items:
        record = orjson.dumps(messages.batch(items))
        assert messages.read(record) == orjson.loads(record)
        checked += 1
    inputs = [message for _, message in map(journey_input, journeys)]
    wanted = event_input(event, CORE.journeys.ces_5_more_effort)
    if wanted is not None:
        inputs.append(wanted[1])
    if inputs:
        record = orjson.dumps({"b": inputs})
        assert read_followup_inputs(record) == orjson.loads(record)
        checked += 1
    if out.claim is not None:
        claim = claim_item(event.event_id, event.journey_key, out.claim, 0, event.occurred_ms,
                           proc.watermark, 1, 7, orjson.dumps(obj))
        for record in encode_claims([claim]):
            assert decode_claims(record) == [claim]
            checked += 1
    return checked


@GENERATED
@given(schema_events())
def test_what_stage_one_writes_for_a_schema_valid_event_reads_back(obj: dict[str, Any]) -> None:
    written_and_read(obj)


@pytest.mark.parametrize("obj", EDGE_EVENTS, ids=lambda o: o["event_id"])
def test_what_stage_one_writes_for_an_edge_event_reads_back(obj: dict[str, Any]) -> None:
    assert written_and_read(obj) >= 2  # its journey and its claim at least
