"""The worker's outbox without Faust: what leaves per flush, coalesced, and nothing twice."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.partitioner import partition_for
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream import messages
from pipeline.stream.outbox import ALERTS, CONTRIBUTIONS, JOURNEYS, METRICS, Outbox, Record
from pipeline.stream.partition import PartitionProcessor
from pipeline.stream.segments import SegmentStage

SCORING_RULES = load_scoring_rules()

ROOT = Path(__file__).resolve().parents[3]


def loaded(record: Record) -> Any:
    """A record's JSON value (not a tombstone's)."""
    assert record.value is not None
    return json.loads(record.value)


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
    sent_contributions: dict[int, list[tuple[str, dict[str, Any]]]] = {}  # by source, in order
    for event in parsed:
        p = partition_for(event.journey_key, 3)
        out = procs[p].process(event)
        outbox.add_journey_output(p, out)
        sent_contributions.setdefault(p, []).extend(out.contributions)
        for record in out.journeys:
            if record.version >= latest.get(record.journey_id, -1):
                latest[record.journey_id] = record.version
    drained = outbox.drain()
    assert not outbox and not outbox.drain().records  # drained once
    journeys = [loaded(r) for r in drained.records if r.role == JOURNEYS]
    ids = [j["journey_id"] for j in journeys]
    assert len(ids) == len(set(ids)) == len(latest)  # one per journey, each the latest
    assert {j["journey_id"]: j["version"] for j in journeys} == latest
    closed = sum(j["status"] == "closed" for j in journeys)
    assert sum(drained.closed.values()) == closed
    assert drained.counts[JOURNEYS] == len(journeys)
    # contributions: one batch per source and contributions partition, each segment's items
    # on the partition a record keyed by the segment would reach, together and in order
    contributions = [r for r in drained.records if r.role == CONTRIBUTIONS]
    assert all(r.key is None and r.partition is not None for r in contributions)
    # each source's watermark reaches every contributions partition once: at the end of its
    # batch there, or in a watermark record of its own
    marks = [(r.partition, loaded(r)["p"], loaded(r)["w"]) for r in contributions
             if "w" in loaded(r)]
    assert marks and any(loaded(r)["t"] == messages.BATCH for r in contributions
                         if "w" in loaded(r))
    sources = {(p, w) for _, p, w in marks}
    assert sorted(marks) == sorted((t, p, w) for t in range(3) for p, w in sources)
    keyed = [(r.partition, loaded(r)) for r in contributions
             if loaded(r)["t"] == messages.BATCH]
    assert len(keyed) <= len(procs) * 3  # not one a segment: 27 segments on this mix
    expected: dict[str, list[dict[str, Any]]] = {}  # each segment's items, sources in order
    for outs in sent_contributions.values():
        for key, item in outs:
            expected.setdefault(key, []).append(item)
    got: dict[str, list[dict[str, Any]]] = {}
    for target, message in keyed:
        assert message["items"]
        runs = [messages.segment_key(i["d"], i["s"]) for i in message["items"]]
        assert {partition_for(seg, 3) for seg in runs} == {target}
        segs_in_order = [seg for n, seg in enumerate(runs) if n == 0 or runs[n - 1] != seg]
        assert len(segs_in_order) == len(set(segs_in_order))  # a segment's items together
        for item, seg in zip(message["items"], runs, strict=True):
            got.setdefault(seg, []).append(item)
    assert got == expected
    # the segment stage's metric records leave once per bucket
    for _, message in keyed:
        outbox.add_segment_output(segments.apply(message))
    outbox.add_segment_output(segments.flush())
    second = outbox.drain()
    metric_keys = [(loaded(r)["metric"], loaded(r)["segment_dim"],
                    loaded(r)["segment_value"], loaded(r)["window_start"])
                   for r in second.records if r.role == METRICS]
    assert metric_keys and len(metric_keys) == len(set(metric_keys))
    assert second.counts[METRICS] == len(metric_keys)
    assert all(r.role in (METRICS, ALERTS) for r in second.records)


def test_gathered_records_are_split_below_the_record_limit_in_order() -> None:
    """A flush of large events with one partition: the claims (each carries its raw event) and
    a segment's contributions leave as several records under MAX_GATHERED_BYTES, every item
    once and in order."""
    import orjson

    from pipeline.stream.claims import claim_item, decode_claims
    from pipeline.stream.outbox import CLAIMS
    from pipeline.stream.split import MAX_GATHERED_BYTES

    outbox = Outbox(1)
    raws = [b'"%s"' % (b"x" * (30_000 + 997 * i)) for i in range(80)]
    for i, raw in enumerate(raws):  # 3.5 MB of claims for partition 0, of growing sizes
        outbox.add_claim(0, claim_item(f"e{i}", "j", i, 0, i, i, 0, i, raw))
    drained = outbox.drain().records
    claims = [r for r in drained if r.role == CLAIMS]
    assert len(claims) >= 14
    assert all(len(r.value or b"") <= MAX_GATHERED_BYTES for r in claims)
    assert [(c[0], c[-1]) for r in claims for c in decode_claims(r.value or b"")] == [
        (f"e{i}", raw) for i, raw in enumerate(raws)]
    # one segment's contributions: in order, under the limit, each a batch message
    from pipeline.stream.partition import StageOneOutput

    out = StageOneOutput()
    items = [messages.answer("all", "all", "nps", 0, f"e{i}-{'y' * 3000}", i % 11)
             for i in range(400)]
    out.contributions.extend(items)
    outbox.add_journey_output(0, out)
    records = [r for r in outbox.drain().records if r.role == CONTRIBUTIONS]
    assert len(records) >= 4 and all(len(r.value or b"") <= MAX_GATHERED_BYTES
                                     for r in records)
    got = [orjson.loads(r.value or b"") for r in records]
    assert all(g["t"] == messages.BATCH for g in got)
    assert [m for g in got for m in g["items"]] == [m for _, m in items]


_JSON_ITEMS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(_JSON_ITEMS, min_size=1, max_size=80), st.integers(8, 400), st.integers(-3, 3),
       st.booleans(), st.sampled_from([b'{"c":[', b'{"t":"b","items":[']),
       st.integers(1, 8))
def test_gathered_records_hold_every_item_in_order_under_the_limit(
        items: list[Any], limit: int, near: int, at_the_edge: bool, head: bytes, sample: int
        ) -> None:
    """`gathered` gives records that read back as `items`, in order, each under `limit` unless
    it holds a single item; a list of at most `sample` items whose one record fits is that
    one record, byte for byte `packed`'s (limits within 3 bytes of its length included: fails
    if the test for one record is off by a byte). Small samples make `split.encoded_groups`
    size its groups by few items, and items of mixed sizes make it halve groups."""
    import orjson

    from pipeline.stream import split
    from pipeline.stream.outbox import gathered, packed, to_json
    encoded = [to_json(i) for i in items]
    whole = packed(head, encoded, 1 << 30)[0]
    if at_the_edge:
        limit = max(1, len(whole) + near)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(split, "SAMPLE_ITEMS", sample)
        records = gathered(head, items, limit)
    held = [orjson.loads(record)["c" if head == b'{"c":[' else "items"] for record in records]
    assert [item for group in held for item in group] == items
    assert all(len(record) < limit for record, group in zip(records, held, strict=True)
               if len(group) > 1)
    if len(whole) < limit and len(items) <= sample:
        assert records == [whole]


def test_a_buckets_record_that_leaves_is_the_one_clickhouse_keeps_of_the_flush() -> None:
    """Of one bucket's records in a flush, the highest version leaves (of equal ones the
    last), as ReplacingMergeTree(version) keeps them. The last alone let a bucket made anew
    after its eviction (version 1, one member) replace its whole record (version 2, two)."""
    from pipeline.stream.segments import StageTwoOutput

    stage = SegmentStage(CoreConfig())
    stage.apply(messages.end("all", "all", "j1", (0, True))[1])
    stage.apply(messages.end("all", "all", "j2", (0, False))[1])
    whole = stage.flush().metrics
    anew = SegmentStage(CoreConfig())
    anew.apply(messages.end("all", "all", "j2", (0, False))[1])
    partial = anew.flush().metrics
    assert [(r.version, r.n) for r in whole] == [(2, 2)]
    assert [(r.version, r.n) for r in partial] == [(1, 1)]
    outbox = Outbox(1)
    outbox.add_segment_output(StageTwoOutput(metrics=whole))
    outbox.add_segment_output(StageTwoOutput(metrics=partial))
    sent = [loaded(r) for r in outbox.drain().records if r.role == METRICS]
    assert [(m["version"], m["n"]) for m in sent] == [(2, 2)]
    # of equal versions the last: a bucket's later state at the same version (a restore)
    again = SegmentStage(CoreConfig())
    again.apply(messages.end("all", "all", "j3", (0, True))[1])
    later = again.flush().metrics
    outbox.add_segment_output(StageTwoOutput(metrics=partial))
    outbox.add_segment_output(StageTwoOutput(metrics=later))
    sent = [loaded(r) for r in outbox.drain().records if r.role == METRICS]
    assert [(m["version"], m["positives"]) for m in sent] == [(1, 1)]
