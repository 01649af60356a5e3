"""The worker's agents (pipeline/stream/agents.py) without a broker: batch records through
`AgentLoop` with dict tables, a fake stream and a fake output producer. Each batch writes each
changed key once; an agent rebuilt from the table (a restart, a partition moving) continues with
the outputs of one that never stopped; dead letters and claims' withdrawals take Faust's
producer."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from jobs.generate import GeneratorConfig, generate_records
from pipeline.contract import parse_event
from pipeline.core.config import CoreConfig
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream.agent_loop import AgentLoop, AppliedCounter, RebalanceGuard, StageAgent
from pipeline.stream.agents import (
    ClaimsAgent,
    DeadLetters,
    FollowupsAgent,
    JourneysAgent,
    SegmentsAgent,
)
from pipeline.stream.batches import (
    OCCURRED_MS_AT,
    RAW_AT,
    Handoff,
    decode_batch,
    decode_entries,
    encode_rows,
    encode_withdrawals,
    join_rows,
)
from pipeline.stream.claims import decode_claims
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.entry import Router
from pipeline.stream.flush import OutputFlusher
from pipeline.stream.outbox import (
    ALERTS,
    CLAIMS,
    CONTRIBUTIONS,
    FOLLOWUP_INPUTS,
    FOLLOWUPS,
    JOURNEYS,
    METRICS,
    Outbox,
)
from pipeline.stream.partition import WATERMARK_KEY, PartitionProcessor
from tests.unit.stream.fake_faust import (
    Event,
    Group,
    Offsets,
    PartitionedTable,
    SentSoon,
    Stream,
)
from tests.unit.stream.test_delivery import FakeProducer

PARTITIONS = 3
TOPICS = {JOURNEYS: "cx.journeys", CONTRIBUTIONS: "app-contributions", METRICS: "cx.metrics",
          ALERTS: "cx.alerts", FOLLOWUP_INPUTS: "app-followup-inputs",
          FOLLOWUPS: "cx.followups", CLAIMS: "app-claims"}
SENT = list[tuple[str, int, list[tuple[bytes | None, bytes]]]]


class Parts:
    """One worker's agents wired in memory; what left is in `sent`."""

    def __init__(self, tables: dict[str, PartitionedTable] | None = None,
                 handoff: Handoff | None = None, followups: bool = False) -> None:
        """`followups`: stage one sends follow-up inputs (as the worker does)."""
        self.core = CoreConfig()
        self.stats = WorkerMetrics.create()
        self.sent: SENT = []
        rules = load_rules()
        self.outputs = OutputFlusher(
            Outbox(PARTITIONS, rules if followups else None),
            BatchDelivery(lambda: FakeProducer(self.sent, partitions=PARTITIONS), TOPICS),
            self.stats)
        self.group = Group()
        self.guard = RebalanceGuard(self.group)
        self.dead_letter_topic = SentSoon()
        self.journey_events = SentSoon()
        letters = DeadLetters(self.dead_letter_topic, PersonalData(keep_comments=True),
                              self.stats)
        self.tables = tables if tables is not None else {
            name: PartitionedTable() for name in ("journeys", "segments", "claims", "followups")}
        self.journeys = JourneysAgent(
            core=self.core, rules=load_scoring_rules(self.core.journeys.scoring_rules_path),
            table=self.tables["journeys"], outputs=self.outputs, guard=self.guard,
            dead_letters=letters, source_topic="cx.touchpoints", partitions=PARTITIONS,
            flush_every_events=50, stats=self.stats, highwater=lambda tp: 10_000,
            handoff=handoff)
        self.segments = SegmentsAgent(core=self.core, table=self.tables["segments"],
                                      outputs=self.outputs, guard=self.guard,
                                      dead_letters=letters, sources=PARTITIONS, stats=self.stats)
        self.followups = FollowupsAgent(
            rules=rules, horizon_ms=horizon_ms(rules, self.core.journeys.max_length_ms,
                                               self.core.journeys.allowed_lateness_ms),
            table=self.tables["followups"], outputs=self.outputs, guard=self.guard,
            dead_letters=letters, stats=self.stats)
        self.claims = ClaimsAgent(core=self.core, source_topic="cx.touchpoints",
                                  table=self.tables["claims"],
                                  journey_events=self.journey_events, dead_letters=letters,
                                  guard=self.guard)

    def run(self, agent: StageAgent, batches: list[list[Event]],
            after_each: Callable[[], None] = lambda: None, stage: str = "journeys",
            record: str = "event") -> Stream:
        """Every batch through the agent's loop; `after_each` runs after each batch. What it
        applied is counted under `peakend_stage_records_applied_total{stage, record}`."""
        stream = Stream([])
        loop = AgentLoop(agent, self.guard, deliver_outputs=self.outputs.flush_and_deliver,
                         flush_faust_producer=lambda: asyncio.sleep(0), release=lambda batch: None,
                         take=4, within_seconds=0.1,
                         count_applied=AppliedCounter(self.stats, stage, record))

        async def main() -> None:
            for batch in batches:
                for event in await loop.settle(batch):
                    await stream.ack(event)
                after_each()

        asyncio.run(main())
        return stream

    def applied(self, stage: str, record: str) -> float | None:
        return self.stats.registry.get_sample_value(
            "peakend_stage_records_applied_total", {"stage": stage, "record": record})

    def latest(self, topic: str) -> dict[bytes | None, dict[str, Any]]:
        """The last value sent with each key to `topic`."""
        return {key: json.loads(value) for sent_to, _, items in self.sent if sent_to == topic
                for key, value in items}

    def buckets(self) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        """Each bucket's metric record as ClickHouse keeps it (ReplacingMergeTree(version):
        the highest version, of equal ones the last sent). A metric record's Kafka key names
        its series, not its bucket, so the last record per key depends on when flushes
        happen; this does not."""
        kept: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for sent_to, _, items in self.sent:
            if sent_to != "cx.metrics":
                continue
            for _, value in items:
                record = json.loads(value)
                bucket = (record["metric"], record["segment_dim"], record["segment_value"],
                          record["window_start"])
                held = kept.get(bucket)
                if held is None or record["version"] >= held["version"]:
                    kept[bucket] = record
        return kept


def generated(events: int = 900, seed: int = 11) -> list[bytes]:
    config = GeneratorConfig(events=events, seed=seed, span_ms=6 * 3600_000,
                             late_fraction=0.03, invalid_fraction=0.0)
    return [r if isinstance(r, bytes) else json.dumps(r).encode()
            for r in generate_records(config)]


def batch_records(lines: list[bytes], per_read: int = 60, handoff: Handoff | None = None,
                  offsets: Offsets | None = None) -> list[Event]:
    """The entry stage's batch records for `lines`, read `per_read` at a time, as the journeys
    agent receives them (at the next offsets of `offsets`, when given)."""
    router = Router(topic="cx.touchpoints", partitions=PARTITIONS, max_event_bytes=65536,
                    privacy=PersonalData(keep_comments=True), handoff=handoff)
    offsets = offsets or Offsets("app-journey-events")
    events = []
    for start in range(0, len(lines), per_read):
        read = [type("R", (), {"partition": 0, "offset": start + i, "value": line,
                               "timestamp": 0, "timestamp_type": 0})()
                for i, line in enumerate(lines[start:start + per_read])]
        for partition, records in router.route(read, 1_900_000_000_000).batches.items():
            events += [offsets.event(record, partition) for record in records]
    return events


def in_fours(events: list[Event]) -> list[list[Event]]:
    return [events[i:i + 4] for i in range(0, len(events), 4)]


def reference(records: list[Event]) -> tuple[dict[bytes | None, dict[str, Any]],
                                            dict[int, dict[str, Any]]]:
    """Each journey's latest record from the processors alone, event by event, and the state
    each partition ends with (key: state, for every key it still holds)."""
    core = CoreConfig()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    procs: dict[int, PartitionProcessor] = {}
    latest: dict[bytes | None, dict[str, Any]] = {}
    for record in records:
        partition = record.message.partition
        proc = procs.setdefault(partition, PartitionProcessor(partition, core, rules))
        for routed in decode_batch(record.value):
            for journey in proc.process(routed.event, routed.arrival_ms).journeys:
                latest[journey.journey_id.encode()] = json.loads(orjson.dumps(journey.to_dict()))
    states = {partition: {key: state for key, state in proc.dirty_state()
                          if state is not None and key != WATERMARK_KEY}
              for partition, proc in procs.items()}
    return latest, states


def test_journeys_agent_writes_each_key_once_per_batch_and_equals_the_processors() -> None:
    records = batch_records(generated())
    parts = Parts()
    table = parts.tables["journeys"]
    per_batch: list[Counter[tuple[int, str]]] = []

    def check() -> None:
        per_batch.append(Counter(table.writes))
        table.writes.clear()

    stream = parts.run(parts.journeys, in_fours(records), after_each=check)
    assert stream.acked == records
    assert all(max(writes.values(), default=1) == 1 for writes in per_batch)
    assert sum(len(writes) for writes in per_batch) > len(per_batch)  # batches did write
    assert table.dbs and all(value["p"] == partition for partition, db in table.dbs.items()
                             for value in db.values())
    journeys, states = reference(records)
    assert parts.latest("cx.journeys") == journeys
    # every generated event (all valid) counted once as applied, none as a withdrawal
    assert parts.applied("journeys", "event") == len(generated())
    assert parts.applied("journeys", "withdrawal") is None
    assert {partition: {key: value["s"] for key, value in db.items() if key != WATERMARK_KEY}
            for partition, db in table.dbs.items()} == states
    assert parts.stats.journeys_open._value.get() == sum(
        len(p.tracker) for p in parts.journeys.processors.values())


def test_the_handoff_gives_the_outputs_and_state_of_decoding() -> None:
    """The journeys agent of the worker whose entry stage wrote the batch records takes their
    events from the handoff (no decode) and sends and stores byte for byte what an agent that
    decodes them does (the claims carry each event's raw record)."""
    lines = generated(seed=13)
    handoff = Handoff()
    taking = Parts(handoff=handoff)
    decoding = Parts()
    records = batch_records(lines, handoff=handoff)
    assert len(handoff) == len(lines)
    taking.run(taking.journeys, in_fours(records))
    assert len(handoff) == 0  # every record's events were taken, none decoded
    decoding.run(decoding.journeys, in_fours(batch_records(lines)))
    assert taking.sent == decoding.sent and taking.sent
    assert taking.dead_letter_topic.sent == decoding.dead_letter_topic.sent
    assert taking.tables["journeys"].dbs == decoding.tables["journeys"].dbs


def test_an_agent_rebuilt_from_the_table_continues_as_one_that_never_stopped() -> None:
    records = batch_records(generated(seed=12))
    half = len(records) // 8 * 4  # at a batch boundary of the uninterrupted run
    first = Parts()
    first.run(first.journeys, in_fours(records[:half]))
    first.run(first.segments, contribution_events(first.sent))
    # a new worker with the same tables: every partition rebuilt from them
    second = Parts(tables=first.tables)
    second.run(second.journeys, in_fours(records[half:]))
    second.run(second.segments, contribution_events(second.sent))
    whole = Parts()
    whole.run(whole.journeys, in_fours(records))
    whole.run(whole.segments, contribution_events(whole.sent))
    assert {**first.latest("cx.journeys"), **second.latest("cx.journeys")} == \
        whole.latest("cx.journeys")
    assert {**first.buckets(), **second.buckets()} == whole.buckets()
    assert whole.buckets(), "the generated data has survey answers"
    # and the journey table holds what the uninterrupted agent holds, key for key (the segment
    # tables may differ in what was flushed when: their inputs were batched differently)
    assert second.tables["journeys"].dbs == whole.tables["journeys"].dbs


def letters(parts: Parts) -> Counter[tuple[str, int]]:
    """The dead letters `parts` sent, as (reason, source offset)."""
    return Counter((letter["reason"], letter["source_offset"])
                   for letter in (json.loads(sent["value"])
                                  for sent in parts.dead_letter_topic.sent))


def test_records_read_again_after_a_restart_are_passed_over_not_judged_again() -> None:
    """A crash leaves the committed offset behind the state (state is written before the acks
    a commit covers): the records in between are read again by the restarted agent. Their
    events are in the restored state and their outputs left before it was written, so they
    are passed over. Judged again, they met a stream time up to a commit interval ahead: over
    three days of events read again across more than a day, events applied the first time got
    a `late` letter (docs/streaming.md, twentieth round)."""
    config = GeneratorConfig(events=900, seed=14, span_ms=3 * 86_400_000,
                             late_fraction=0.03, invalid_fraction=0.0)
    lines = [json.dumps(r).encode() if not isinstance(r, bytes) else r
             for r in generate_records(config)]
    records = batch_records(lines)
    cut = len(records) * 3 // 16 * 4  # at a batch boundary, three quarters in
    back = cut - 4 * 5  # the committed offsets: 5 batches of records behind the state
    first = Parts()
    first.run(first.journeys, in_fours(records[:cut]))
    day_ms = 86_400_000
    read_again = [routed.event.occurred_ms for record in records[back:cut]
                  for routed in decode_batch(record.value)]
    assert max(read_again) - min(read_again) > day_ms  # more than the allowed lateness
    second = Parts(tables=first.tables)
    second.run(second.journeys, in_fours(records[back:]))
    whole = Parts()
    whole.run(whole.journeys, in_fours(records))
    assert letters(first) + letters(second) == letters(whole)
    assert {**first.latest("cx.journeys"), **second.latest("cx.journeys")} == \
        whole.latest("cx.journeys")
    assert second.tables["journeys"].dbs == whole.tables["journeys"].dbs
    assert second.stats.registry.get_sample_value(
        "peakend_stage_records_read_again_total", {"stage": "journeys"}) == cut - back
    assert second.applied("journeys", "event") == sum(
        len(decode_batch(record.value)) for record in records[cut:])



def test_claims_read_again_after_a_restart_are_passed_over_not_judged_again() -> None:
    """The claims agent keeps the offset after its last claims record with its state, as the
    journeys agent does: records the committed offset lags behind are passed over. Judged
    again, every losing copy's withdrawal and `conflict` letter left a second time, and the
    withdrawal, finding its copy gone, counted as too late (`not_held`)."""
    lines = [event_line(f"x{i}", f"{who}{i}", i % 50) for i in range(16) for who in ("c", "d")]
    lines = [line.replace(b'"valence": -0.5', b'"valence": 0.5') if n % 2 else line
             for n, line in enumerate(lines)]  # the two copies of an id differ
    journeys = Parts()
    journeys.run(journeys.journeys, [[r] for r in batch_records(lines, per_read=2)])
    offsets = Offsets("app-claims")
    claims = [offsets.event(value, partition) for topic, partition, items in journeys.sent
              if topic == "app-claims" for _, value in items]
    cut = len(claims) * 3 // 4
    back = cut // 2  # the committed offsets: behind the state by the records in between
    assert len({c.message.partition for c in claims[back:cut]}) > 1

    def run(parts: Parts, records: list[Event]) -> None:
        parts.run(parts.claims, [[r] for r in records], stage="claims", record="claim")

    first, whole = Parts(), Parts()
    run(first, claims[:cut])
    second = Parts(tables=first.tables)
    run(second, claims[back:])
    run(whole, claims)
    assert letters(first) + letters(second) == letters(whole)
    assert sum(letters(whole).values()) == 16  # one conflict per event id

    def withdrawals(parts: Parts) -> Counter[bytes]:
        return Counter(sent["value"] for sent in parts.journey_events.sent)

    assert withdrawals(first) + withdrawals(second) == withdrawals(whole)
    assert second.stats.registry.get_sample_value(
        "peakend_stage_records_read_again_total", {"stage": "claims"}) == cut - back
    assert second.tables["claims"].dbs == whole.tables["claims"].dbs

def contribution_events(sent: SENT) -> list[list[Event]]:
    """The contributions records that left, as the segments agent receives them, in batches."""
    offsets = Offsets("app-contributions")
    events = [offsets.event(value, partition) for topic, partition, items in sent
              if topic == "app-contributions" for _, value in items]
    return [events[i:i + 25] for i in range(0, len(events), 25)]


def event_line(event_id: str, customer: str, minute: int, day: int = 2) -> bytes:
    return json.dumps({
        "schema_version": 1, "event_id": event_id, "producer": "test", "customer_id": customer,
        "occurred_at": f"2026-11-0{day}T10:{minute:02d}:00Z", "type": "interaction",
        "touchpoint": "cart", "channel": "web", "stage": "purchase", "valence": -0.5,
    }).encode()


def test_late_events_become_dead_letters_through_fausts_producer() -> None:
    lines = [event_line("e1", "c1", 0, day=4), event_line("e2", "c1", 5, day=1)]
    for line in lines:
        parse_event(line)  # both valid: lateness is stage one's verdict
    parts = Parts()
    parts.run(parts.journeys, [batch_records(lines, per_read=1)])
    [sent] = parts.dead_letter_topic.sent
    letter = json.loads(sent["value"])
    assert (letter["reason"], letter["event_id"]) == ("late", "e2")
    assert parts.stats.dead_letters.labels("late")._value.get() == 1


def test_one_event_id_in_two_journeys_is_withdrawn_from_the_losing_one() -> None:
    lines = [event_line("same", "c1", 0), event_line("same", "c2", 1)]
    parts = Parts()
    journey_events = Offsets("app-journey-events")
    parts.run(parts.journeys, [batch_records(lines, per_read=2, offsets=journey_events)])
    offsets = Offsets("app-claims")
    claims = [offsets.event(value, partition) for topic, partition, items in parts.sent
              if topic == "app-claims" for _, value in items]
    assert len([c for record in claims for c in decode_claims(record.value)]) == 2
    parts.run(parts.claims, [claims], stage="claims", record="claim")
    assert parts.applied("claims", "claim") == 2  # both claims, from one claims record
    [withdrawal] = parts.journey_events.sent
    [letter] = parts.dead_letter_topic.sent
    assert json.loads(letter["value"])["reason"] == "conflict"
    assert parts.tables["claims"].dbs[claims[0].message.partition]["same"]["p"] == \
        claims[0].message.partition
    # the withdrawal, read back by the journeys agent, takes the copy out of its journey
    back = journey_events.event(withdrawal["value"], withdrawal["partition"])
    journeys_before = parts.latest("cx.journeys")
    applied_before = parts.applied("journeys", "event")
    parts.run(parts.journeys, [[back]])
    assert parts.applied("journeys", "withdrawal") == 1
    assert parts.applied("journeys", "event") == applied_before == len(lines)
    for why in ("not_held", "final_bucket"):  # on time: undone whole
        assert parts.stats.registry.get_sample_value(
            "peakend_withdrawals_too_late_total", {"why": why}) is None
    changed = {k: v for k, v in parts.latest("cx.journeys").items()
               if journeys_before.get(k) != v}
    assert len(changed) == 1
    assert next(iter(changed.values()))["status"] == "superseded"  # its one event withdrawn



def test_a_withdrawal_too_late_to_undo_its_copy_is_counted_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """The claims stage's verdict on `s1` comes after the customer's partition moved on four
    days: its session is evicted, nothing can be withdrawn, and the difference from replay is
    counted (`peakend_withdrawals_too_late_total{why}`) and logged, not silent."""
    lines = [event_line("s1", "c1", 0, day=1), event_line("s2", "c1", 5, day=5)]
    parts = Parts()
    journey_events = Offsets("app-journey-events")
    parts.run(parts.journeys, [batch_records(lines, per_read=2, offsets=journey_events)])
    [claim] = [c for topic, _, items in parts.sent if topic == "app-claims"
               for _, value in items for c in decode_claims(value) if c[0] == "s1"]
    _, key, digest, partition = claim[:4]
    back = journey_events.event(encode_withdrawals([[key, "s1", digest]]), partition)
    with caplog.at_level("WARNING", logger="pipeline.stream.agents"):
        parts.run(parts.journeys, [[back]])
    assert parts.applied("journeys", "withdrawal") == 1
    assert parts.stats.registry.get_sample_value(
        "peakend_withdrawals_too_late_total", {"why": "not_held"}) == 1
    assert [r.getMessage() for r in caplog.records
            if "came too late (not_held)" in r.getMessage() and "'s1'" in r.getMessage()]

def test_a_record_stage_one_cannot_read_is_a_dead_letter_and_the_rest_is_applied() -> None:
    """A record on journey-events that is neither a batch record nor a withdrawal of a format
    this version reads (another producer on the topic, a newer worker's format): a dead letter
    `unreadable` with the record, and the records around it give the outputs and state of a
    run without it (the agent failed on it at every restart before)."""
    lines = generated(events=300, seed=5)
    offsets = Offsets("app-journey-events")
    good = batch_records(lines[:150], offsets=offsets)
    junk = [offsets.event(b'{"f":99,"e":[]}', 1), offsets.event(b"\x00not a batch", 2),
            offsets.event(b'{"f":"w","w":7}', 0),
            # found by `python -m bench.fuzz_internal`: the core failed on these at every
            # restart (a float event time; one it cannot write as text)
            offsets.event(with_entry(good[0].value, OCCURRED_MS_AT, 1.7882e12), 0),
            offsets.event(with_entry(good[1].value, OCCURRED_MS_AT, 10 ** 17), 1)]
    rest = batch_records(lines[150:], offsets=offsets)
    parts = Parts()
    parts.run(parts.journeys, in_fours(good + junk + rest))
    clean = Parts()
    clean.run(clean.journeys, in_fours(batch_records(lines)))
    assert parts.latest("cx.journeys") == clean.latest("cx.journeys")
    assert parts.tables["journeys"].dbs.keys() == clean.tables["journeys"].dbs.keys()
    sent = [json.loads(s["value"]) for s in parts.dead_letter_topic.sent]
    unreadable = [(d["source_topic"], d["source_partition"], d["source_offset"])
                  for d in sent if d["reason"] == "unreadable"]
    assert unreadable == [(e.message.topic, e.message.partition, e.message.offset)
                          for e in junk]
    assert all("stage one cannot read this record of app-journey-events" in d["error"]
               for d in sent if d["reason"] == "unreadable")
    assert parts.stats.dead_letters.labels("unreadable")._value.get() == len(junk)


def with_entry(value: bytes, at: int, new: Any) -> bytes:
    """Batch record `value` with item `at` of its first entry made `new`."""
    entries = decode_entries(value)
    raws = [entry[RAW_AT] for entry in entries]
    rows = [[*entry[:RAW_AT], len(entry[RAW_AT]), *entry[RAW_AT + 1:]] for entry in entries]
    rows[0][at] = new
    return join_rows(encode_rows(rows), raws)


# Records each stage-two agent cannot read: another writer on its internal topic, another
# version's format, a value of the wrong kind in the right layout.
UNREADABLE = {
    "app-contributions": [
        b"not json", b"[1,2]", b'{"t":"x"}',
        b'{"t":"a","d":"all","s":"all","m":"nps","b":"0","e":"e1","v":9}',
        b'{"t":"b","items":[{"t":"a","d":1,"s":"all","m":"nps","b":0,"e":"e1","v":9}]}',
        b'{"t":"b","items":[{"t":"a","d":"all","s":"all","m":"wow","b":0,"e":"e1","v":9}]}',
        b'{"t":"b","items":[{"t":"e","d":"all","s":"all","j":"j1","c":[1]}]}',
        b'{"t":"b","items":[{"t":"w","p":0,"w":1}]}',
        b'{"t":"w","p":0,"w":"soon"}',
        # found by `python -m bench.fuzz_internal`: each made the stage fail at every restart
        b'{"t":"b","items":[{"t":"e","d":"all","s":"all","j":"j1","c":[10000000000000000,false]}]}',
        b'{"t":"b","items":[{"t":"a","d":"all","s":"all","m":"nps","b":0,"e":"e1","v":9.5}]}',
        b'{"t":"b","items":[{"t":"a","d":"all","s":"all","m":"nps","b":-10000000000000000,'
        b'"e":"e1","v":9}]}',
        b'{"t":[],"items":[]}', b'{"t":"b","items":[{"t":[]}]}',
        b'{"t":"w","p":0,"w":100000000000000000}'],
    "app-followup-inputs": [
        b"\xff", b'{"b":{}}', b'{"x":1}', b'{"b":[{"j":[1,2]}]}',
        b'{"b":[{"e":["e1","c1",null,"5","web",0,null,null,null,null,""]}]}',
        b'{"b":[{"e":["e1","c1",null,5,"web",true,null,null,null,null,""]}]}',
        b'{"b":[{"e":["e1","c1",null,10000000000000000,"web",0,null,null,null,null,""]}]}'],
    "app-claims": [
        b'{"c":[["e1"]]}', b'{"c":[["e1","j","7",0,5,5,1,9,"{}"]]}', b'{"f":2,"c":[[1]]}',
        b'{"c":{}}'],
}


def stage_two_inputs(lines: list[bytes]) -> dict[str, list[tuple[int, bytes]]]:
    """What stage one sends each stage-two topic for `lines`: (partition, value) in order."""
    parts = Parts(followups=True)
    parts.run(parts.journeys, in_fours(batch_records(lines)))
    return {topic: [(partition, value) for sent_to, partition, items in parts.sent
                    if sent_to == topic for _, value in items] for topic in UNREADABLE}


def without_offsets(dbs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """State tables with the input offset stored beside each key (`"o"`) left out."""
    return {partition: {key: {k: v for k, v in value.items() if k != "o"}
                        for key, value in db.items()} for partition, db in dbs.items()}


def test_a_record_a_stage_two_agent_cannot_read_is_a_dead_letter_and_the_rest_is_applied(
        ) -> None:
    """Each stage-two agent (segments, follow-ups, claims) given its topic's records with
    unreadable ones in the middle: each of those is an `unreadable` dead letter naming the
    record and the stage, none of it applied, and the outputs and state are those of a run
    without them (the agents failed on them, or took a value of the wrong kind into their
    state, before)."""
    inputs = stage_two_inputs(generated(events=600, seed=7))
    stages = {"app-contributions": ("segments", "contribution", "cx.metrics", "segment"),
              "app-followup-inputs": ("followups", "input", "cx.followups", "follow-up"),
              "app-claims": ("claims", "claim", "", "claims")}
    for topic, (agent, record, output, stage) in stages.items():
        records = inputs[topic]
        assert len(records) >= 3, topic
        half = len(records) // 2

        def batches(with_junk: bool, topic: str = topic,
                    records: list[tuple[int, bytes]] = records, half: int = half
                    ) -> tuple[list[list[Any]], list[Any]]:
            """The records in fours, the junk (if any) a batch of its own in the middle: the
            state written with each batch depends on where batches end."""
            offsets = Offsets(topic)
            first = [offsets.event(value, partition) for partition, value in records[:half]]
            junk = [offsets.event(value, i % PARTITIONS)
                    for i, value in enumerate(UNREADABLE[topic])] if with_junk else []
            then = [offsets.event(value, partition) for partition, value in records[half:]]
            return in_fours(first) + ([junk] if junk else []) + in_fours(then), junk

        clean, dirty = Parts(), Parts()
        clean.run(getattr(clean, agent), batches(False)[0], stage=agent, record=record)
        dirty_batches, junk = batches(True)
        dirty.run(getattr(dirty, agent), dirty_batches, stage=agent, record=record)
        if output:
            assert dirty.latest(output) == clean.latest(output), topic
            assert dirty.latest(output), topic  # the stage did give outputs
        # the same state, but for the offsets stored with it ("o": the junk shifted them)
        assert without_offsets(dirty.tables[agent].dbs) == \
            without_offsets(clean.tables[agent].dbs), topic
        letters = [json.loads(s["value"]) for s in dirty.dead_letter_topic.sent]
        unreadable = [d for d in letters if d["reason"] == "unreadable"]
        assert [(d["source_topic"], d["source_partition"], d["source_offset"])
                for d in unreadable] == [(e.message.topic, e.message.partition,
                                          e.message.offset) for e in junk], topic
        assert all(f"the {stage} stage cannot read this record of {topic}" in d["error"]
                   for d in unreadable), [d["error"] for d in unreadable]
        assert [d for d in letters if d["reason"] != "unreadable"] == [
            json.loads(s["value"]) for s in clean.dead_letter_topic.sent], topic
        assert dirty.stats.dead_letters.labels("unreadable")._value.get() == len(junk)
        # nothing but unreadable records, on partitions the agent has not met yet: each
        # partition's state is restored and written, and every record acknowledged
        fresh = Parts()
        offsets = Offsets(topic)
        only_junk = [offsets.event(value, i % PARTITIONS)
                     for i, value in enumerate(UNREADABLE[topic])]
        stream = fresh.run(getattr(fresh, agent), [only_junk], stage=agent, record=record)
        assert stream.acked == only_junk and len(fresh.dead_letter_topic.sent) == len(junk)
