"""The entry stage without a broker: placement by journey key whatever the record's partition,
verdicts, batch records that round-trip, and the same results as keyed input."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.event import content_digest
from pipeline.core.partitioner import partition_for
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage.tables import DIGEST_KEY, OCCURRED_MS_KEY, rows
from pipeline.stream import entry
from pipeline.stream.batches import (
    MAX_BATCH_BYTES,
    Handoff,
    decode_batch,
    decode_rows,
    encode_rows,
    entry_row,
)
from pipeline.stream.entry import READ_LINGER_SECONDS, EntryStage, Routed, Router
from pipeline.stream.partition import PartitionProcessor, coalesce

SCORING_RULES = load_scoring_rules()

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "cx.touchpoints"


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("entry") / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--events", "3000", "--seed", "21",
         "--span", "1d", "--invalid-fraction", "0.03", "--late-fraction", "0.02",
         "--output", str(out), "--quiet"],
        cwd=ROOT, check=True,
    )
    return out.read_bytes().splitlines()


def router(partitions: int = 4, **kw: Any) -> Router:
    return Router(topic=TOPIC, partitions=partitions, max_event_bytes=65536,
                  privacy=PersonalData(keep_comments=True), **kw)


def records(lines: list[bytes], place: str, partitions: int = 4) -> list[SimpleNamespace]:
    """Records as a topic holds them: keyed by journey (the producer library), unkeyed
    round-robin (console producer) or all on one partition (a wrong constant key)."""
    out = []
    offsets = [0] * partitions
    for number, line in enumerate(lines):
        if place == "keyed":
            try:
                p = partition_for(parse_event(line).journey_key, partitions)
            except Rejected:
                p = 0
        elif place == "round_robin":
            p = number % partitions
        else:
            p = 0
        out.append(SimpleNamespace(partition=p, offset=offsets[p], value=line,
                                   timestamp=0, timestamp_type=0))
        offsets[p] += 1
    return out


def test_every_record_is_routed_or_dead_lettered(lines: list[bytes]) -> None:
    routed = router().route(records(lines, "round_robin"), read_ms=1 << 50)
    valid = sum(len(decode_batch(b)) for bs in routed.batches.values() for b in bs)
    assert routed.records == len(lines)
    assert valid == routed.events
    assert valid + len(routed.dead_letters) == len(lines)
    assert routed.dead_letters, "the generated file has invalid lines"
    for reason, letter in routed.dead_letters:
        data = json.loads(letter)
        assert data["reason"] == reason and data["source_topic"] == TOPIC


@pytest.mark.parametrize("place", ["keyed", "round_robin", "one_partition"])
def test_events_land_on_their_journey_key_partition(lines: list[bytes], place: str) -> None:
    routed = router().route(records(lines, place), read_ms=1 << 50)
    for target, batches in routed.batches.items():
        for batch in batches:
            for item in decode_batch(batch):
                assert partition_for(item.event.journey_key, 4) == target


def test_keyed_input_keeps_partition_and_order(lines: list[bytes]) -> None:
    """Keyed records stay on their partition number, in offset order: what replay assumes."""
    routed = router().route(records(lines, "keyed"), read_ms=1 << 50)
    for target, batches in routed.batches.items():
        items = [item for batch in batches for item in decode_batch(batch)]
        assert {item.source_partition for item in items} == {target}
        offsets = [item.source_offset for item in items]
        assert offsets == sorted(offsets)


def test_batches_round_trip_events_raw_bytes_and_rows(lines: list[bytes]) -> None:
    recs = records(lines, "round_robin")
    routed = router().route(recs, read_ms=123)
    by_source = {(r.partition, r.offset): r.value for r in recs}
    for batches in routed.batches.values():
        for batch in batches:
            for item, row in zip(decode_batch(batch), decode_rows(batch), strict=True):
                raw = by_source[(item.source_partition, item.source_offset)]
                assert item.raw == raw == row[3]
                assert item.event == parse_event(raw)
                # carried from the entry stage, not computed again by stage one
                assert item.event.known_digest == content_digest(parse_event(raw)) < -1
                assert item.arrival_ms == 123
                assert row[0]["event_id"] == item.event.event_id
                # the row's version is the core's digest and its occurred time the parser's
                # ms, carried, not recomputed: the same values as from the dict alone
                _, [with_digest] = rows("touchpoint_events", [row[0]])
                assert row[0][OCCURRED_MS_KEY] == item.event.occurred_ms
                _, [parsed_again] = rows("touchpoint_events", [
                    {k: v for k, v in row[0].items() if k not in (DIGEST_KEY, OCCURRED_MS_KEY)}])
                assert with_digest == parsed_again


@pytest.mark.parametrize("moment", [
    "2026-11-22T18:10:09.123+01:00", "2026-11-22T17:10:09.123456Z", "2026-11-22T17:10:09Z",
    "2026-11-22T17:10:09.999999-00:30", "2000-01-01T00:00:00.000Z", "2026-11-22T17:10:09.5Z",
    "2099-12-31T23:59:59.999999Z", "2026-11-23T00:59:59.9995+14:00"])
def test_the_occurred_ms_carried_to_the_sink_gives_the_columns_the_text_gives(
        moment: str) -> None:
    """The sink's occurred_at columns from the parser's ms (carried in the batch record)
    equal those parsed from the event's text, whatever its offset and fraction."""
    raw = json.dumps({"event_id": "e-1", "schema_version": 1, "occurred_at": moment,
                      "producer": "web", "customer_id": "c-1", "journey_id": "j-1",
                      "type": "interaction", "touchpoint": "home", "channel": "app",
                      "stage": "pre_purchase"}).encode()
    batch = next(b for bs in router().route(records([raw], "keyed"), read_ms=1).batches.values()
                 for b in bs)
    [(event, _, _, _)] = list(decode_rows(batch))
    columns, [carried] = rows("touchpoint_events", [event])
    _, [parsed] = rows("touchpoint_events", [
        {k: v for k, v in event.items() if k != OCCURRED_MS_KEY}])
    assert carried == parsed
    at = columns.index("occurred_at_ms")
    assert carried[at] == event[OCCURRED_MS_KEY] == parse_event(raw).occurred_ms



def test_large_reads_split_into_bounded_batch_records(lines: list[bytes]) -> None:
    routed = router(max_batch_bytes=20_000).route(records(lines, "keyed"), read_ms=1 << 50)
    sizes = [len(b) for bs in routed.batches.values() for b in bs]
    assert len(sizes) > 8
    assert max(sizes) <= 20_000
    assert sum(len(decode_batch(b)) for bs in routed.batches.values() for b in bs) == \
        routed.events
    assert MAX_BATCH_BYTES < 1024 * 1024  # the broker's default message.max.bytes


def test_generated_entries_are_within_their_estimate(lines: list[bytes]) -> None:
    """The cut's estimate (`ENTRY_SLACK_BYTES`) holds for the generator's events: no entry's
    JSON is longer than the record it was parsed from plus the slack, so their records are cut
    without halving (a schema event may pass it: then its record is halved, below)."""
    margins = []
    for line in lines:
        try:
            event = parse_event(line)
        except Rejected:
            continue
        row = entry_row(3, 1 << 40, 1 << 45, line, event)
        margins.append(len(encode_rows([row])) - 2 - len(line))  # less the list's brackets
    assert len(margins) > 2500
    assert max(margins) <= entry.ENTRY_SLACK_BYTES


@pytest.mark.parametrize("slack", [-10_000, entry.ENTRY_SLACK_BYTES])
def test_records_longer_than_their_estimate_are_halved_until_they_fit(
        lines: list[bytes], slack: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut judges an entry's length before it is encoded; a record that comes out longer
    than the bound is halved: every record fits, and the events are all there, in read order
    per partition, equal to those of one record per read."""
    monkeypatch.setattr(entry, "ENTRY_SLACK_BYTES", slack)  # -10,000: every estimate too short
    handoff = Handoff()
    routed = router(max_batch_bytes=20_000, handoff=handoff).route(
        records(lines, "keyed"), read_ms=1 << 50)
    whole = router(max_batch_bytes=1 << 30).route(records(lines, "keyed"), read_ms=1 << 50)
    assert set(routed.batches) == set(whole.batches)
    for target, values in routed.batches.items():
        assert max(len(value) for value in values) <= 20_000
        taken = [event for value in values for event in handoff.take(value) or []]
        decoded = [event for value in values for event in decode_batch(value)]
        [one] = whole.batches[target]
        assert [(e.source_offset, e.raw) for e in taken] == \
            [(e.source_offset, e.raw) for e in decoded] == \
            [(e.source_offset, e.raw) for e in decode_batch(one)]
    assert len(handoff) == 0


def test_log_append_time_is_the_arrival(lines: list[bytes]) -> None:
    rec = records(lines[:1], "keyed")[0]
    rec.timestamp, rec.timestamp_type = 1795367409123, 1
    routed = router().route([rec], read_ms=5)
    [batch] = [b for bs in routed.batches.values() for b in bs]
    assert decode_batch(batch)[0].arrival_ms == 1795367409123


def test_pseudonymised_before_it_leaves_the_entry_stage(lines: list[bytes]) -> None:
    privacy = PersonalData(key=b"k" * 32)
    recs = records(lines[:50], "keyed")
    by_source = {(r.partition, r.offset): r.value for r in recs}
    routed = Router(topic=TOPIC, partitions=4, max_event_bytes=65536,
                    privacy=privacy).route(recs, read_ms=1 << 50)
    for bs in routed.batches.values():
        for b in bs:
            for item in decode_batch(b):
                raw = by_source[item.source_partition, item.source_offset]
                original = parse_event(raw)
                assert item.event.customer_id == privacy.pseudonym(original.customer_id)
                assert item.event.customer_id != original.customer_id
                # the batch record carries the original sealed (issue 21), not as received
                assert original.customer_id.encode() not in item.raw
                assert item.raw.startswith(b"\x00sealed\x00")


def stage_one_results(routed: Routed, partitions: int = 4) -> dict[str, tuple[object, ...]]:
    procs = [PartitionProcessor(p, CoreConfig(), SCORING_RULES) for p in range(partitions)]
    latest = {}
    for target, batches in sorted(routed.batches.items()):
        outs = [procs[target].process(i.event, i.arrival_ms)
                for b in batches for i in decode_batch(b)]
        for record in coalesce(outs).journeys:
            latest[record.journey_id] = record
    # What analysts see: the journeys not superseded, every field but the version (an upsert
    # counter: a journey whose start moved and moved back keeps counting above its old one).
    return {k: tuple(v for f, v in r.to_dict().items() if f != "version")
            for k, r in latest.items() if r.status != "superseded"}


def test_unkeyed_input_gives_the_results_of_keyed_input(lines: list[bytes]) -> None:
    """All on one partition (a constant key) keeps the file's order within each target
    partition, so stage one computes exactly what keyed input gives; round-robin input read
    a chunk of each partition in turn reorders events within journeys by seconds, which the
    core absorbs (ids that a reordering made and retired are `superseded`)."""
    keyed = stage_one_results(router().route(records(lines, "keyed"), read_ms=1 << 50))
    one = router().route(records(lines, "one_partition"), read_ms=1 << 50)
    assert stage_one_results(one) == keyed
    # round-robin records read as a consumer reads them: a chunk of each partition in turn
    spread = records(lines, "round_robin")
    chunks = [spread[i:i + 400] for i in range(0, len(spread), 400)]
    rng = random.Random(3)
    read: list[SimpleNamespace] = []
    for chunk in chunks:
        by_partition = sorted(chunk, key=lambda r: (r.partition, r.offset))
        parts = [[r for r in by_partition if r.partition == p] for p in range(4)]
        rng.shuffle(parts)
        read.extend(r for part in parts for r in part)
    assert stage_one_results(router().route(read, read_ms=1 << 50)) == keyed


class TrickleConsumer:
    """aiokafka's `getmany` as a steady trickle: each call returns the next few records."""

    def __init__(self, reads: list[dict[str, list[int]]]) -> None:
        self.reads = reads
        self.calls = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        self.calls += 1
        if not self.reads:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        read = self.reads.pop(0)
        assert sum(len(batch) for batch in read.values()) <= max_records
        return read


def entry_stage(max_records: int) -> EntryStage:
    return EntryStage(router(), bootstrap="", group_id="", batches_topic="",
                      dead_letters_topic="", client_options={}, max_records=max_records,
                      metrics=SimpleNamespace())


def test_a_read_gathers_a_trickle_into_one_batch_then_stops() -> None:
    # a steady rate: a few records per fetch; one read takes them together, in offset order
    consumer = TrickleConsumer([{"a": [0, 1]}, {"b": [0]}, {"a": [2]}, {"a": [3], "b": [1]}])
    data = asyncio.run(entry_stage(1000)._read(consumer))
    assert data == {"a": [0, 1, 2, 3], "b": [0, 1]}
    # and once nothing more comes it returns within the linger, not at the fetch timeout
    started = time.monotonic()
    assert asyncio.run(entry_stage(1000)._read(TrickleConsumer([{"a": [0]}]))) == {"a": [0]}
    assert time.monotonic() - started < READ_LINGER_SECONDS + 0.1


def test_a_full_read_waits_for_nothing() -> None:
    consumer = TrickleConsumer([{"a": [0, 1, 2]}, {"a": [3]}])
    assert asyncio.run(entry_stage(3)._read(consumer)) == {"a": [0, 1, 2]}
    assert consumer.calls == 1
    # a read never holds more than max_records
    consumer = TrickleConsumer([{"a": [0, 1]}, {"b": [0]}, {"a": [2]}])
    assert asyncio.run(entry_stage(3)._read(consumer)) == {"a": [0, 1], "b": [0]}


def test_the_entry_stage_asks_the_broker_for_fuller_fetches(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Its consumer is built with the stage's fetch (pipeline/kafka_fetch.py), which
    `build_entry_stage` derives from PEAKEND_STREAM_BATCH_SECONDS."""
    import aiokafka

    from pipeline.kafka_fetch import STREAM_FETCH_MIN_BYTES, FetchSize
    from pipeline.settings import Settings
    from pipeline.stream.entry_process import build_entry_stage

    class Built(Exception):
        pass

    seen: dict[str, Any] = {}

    def consumer(**options: Any) -> None:
        seen.update(options)
        raise Built

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", consumer)
    for seconds, wait_ms in (("0.2", 100), ("0.05", 25), ("5", 500)):
        stage = build_entry_stage(Settings.from_env({"PEAKEND_STREAM_BATCH_SECONDS": seconds}),
                                  SimpleNamespace())
        assert stage.fetch == FetchSize(STREAM_FETCH_MIN_BYTES, wait_ms)
        seen.clear()
        with pytest.raises(Built):
            asyncio.run(stage._run_once())
        assert (seen["fetch_min_bytes"], seen["fetch_max_wait_ms"]) == (
            STREAM_FETCH_MIN_BYTES, wait_ms)


def test_a_record_without_a_value_is_a_dead_letter_that_says_tombstone(lines: list[bytes]
                                                                       ) -> None:
    # Debezium sends a tombstone (a null value) after each delete; an empty value is not one
    read = [SimpleNamespace(partition=0, offset=0, value=None, timestamp=0, timestamp_type=0),
            SimpleNamespace(partition=0, offset=1, value=b"", timestamp=0, timestamp_type=0),
            SimpleNamespace(partition=0, offset=2, value=lines[0], timestamp=0,
                            timestamp_type=0)]
    routed = router().route(read, read_ms=1 << 50)
    assert routed.records == 3 and routed.events == 1
    letters = [json.loads(letter) for _, letter in routed.dead_letters]
    assert [(d["reason"], d["source_offset"]) for d in letters] == [("not_json", 0),
                                                                   ("not_json", 1)]
    assert "a tombstone" in letters[0]["error"]
    assert "tombstones.on.delete=false" in letters[0]["error"]
    assert letters[1]["error"] == "not JSON: the record is empty"
