"""SegmentStage life cycle between flushes: the worker writes state after every message and
flushes outputs later, so state writes must never lose a bucket waiting to be flushed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipeline.core.config import CoreConfig
from pipeline.core.records import MetricRecord
from pipeline.stream import messages
from pipeline.stream.segments import SegmentStage


def _end(journey: str, contribution: tuple[int, bool] | None) -> dict[str, object]:
    return messages.end("channel", "phone", journey, contribution)[1]


def test_emptied_bucket_is_flushed_after_a_state_write_and_versions_keep_growing() -> None:
    stage = SegmentStage(CoreConfig())
    stage.apply(_end("j1", (0, True)))
    stage.dirty_state()
    first = stage.flush().metrics
    stage.apply(_end("j1", None))  # the journey reopened: it counts nowhere now
    stage.dirty_state()  # the worker writes state before the outbox flush
    emptied = stage.flush().metrics
    assert [(r.n, r.version) for r in emptied] == [(0, 2)]
    stage.dirty_state()
    stage.apply(_end("j1", (0, False)))  # closed again, same bucket
    stage.dirty_state()
    again = stage.flush().metrics
    assert [(r.n, r.positives) for r in first] == [(1, 1)]
    assert [(r.n, r.positives, r.version) for r in again] == [(1, 0, 3)]


def test_state_written_between_apply_and_flush_restores_the_pending_flush() -> None:
    stage = SegmentStage(CoreConfig())
    stage.apply(messages.answer("all", "all", "nps", 0, "e1", 10)[1])
    state = dict(stage.dirty_state())
    restored = SegmentStage(CoreConfig())
    restored.restore_keys(state.items())
    records = restored.flush().metrics
    assert [(r.metric, r.n, r.promoters) for r in records] == [("nps", 1, 1)]


def _table_bytes(pairs: list[tuple[str, object]]) -> list[int]:
    """Bytes of each (key, value) as the worker's state table writes them (key + value)."""
    from pipeline.stream.state_writer import encode

    return [len(encode(k)) + (0 if v is None else len(encode({"p": 0, "s": v})))
            for k, v in pairs]


def _restore(state: dict[str, object]) -> SegmentStage:
    restored = SegmentStage(CoreConfig())
    restored.restore_keys(list(state.items()))
    return restored


def _apply_state(state: dict[str, object], pairs: list[tuple[str, object]]) -> None:
    """What the table holds after a write (None deletes the key)."""
    for key, value in pairs:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


def test_a_live_minute_bucket_is_written_member_by_member_and_restores_whole() -> None:
    """At 10,000 events/s a minute bucket of segment `all` holds ~100,000 closed journeys.
    Written whole it passed the broker's 1 MiB record limit from about 25,000 members; each
    state record now holds one member, and a restore gives back the same bucket."""
    stage = SegmentStage(CoreConfig())
    state: dict[str, object] = {}
    biggest = 0
    for batch in range(10):
        for i in range(batch * 6_000, (batch + 1) * 6_000):
            stage.apply(messages.end("all", "all", f"c-{i:07d}@2026-11-22T17:10:00.000Z",
                                     (60_000, i % 3 == 0))[1])
        pairs = stage.dirty_state()
        biggest = max(biggest, *_table_bytes(pairs))
        _apply_state(state, pairs)
        live = stage.flush().metrics
    assert biggest < 1024, biggest
    assert [(r.n, r.positives) for r in live] == [(60_000, 20_000)]
    restored = _restore(state)
    assert [(r.metric, r.n, r.positives, r.version) for r in restored.totals["all=all"].records()] \
        == [("negative_end", 60_000, 20_000, 60_000)]


def test_whole_bucket_keys_of_an_older_worker_are_read_and_rewritten_as_members() -> None:
    old = {"bucket:channel=phone|negative_end|0": {"v": 3, "m": {"j1": True, "j|2": False},
                                                   "d": False},
           "bucket:all=all|nps|0": {"v": 2, "m": {"e1\x1fj1": 10}, "d": True}}
    stage = _restore(dict(old))
    pairs = stage.dirty_state()
    assert [k for k, v in pairs if v is None] == sorted(old, key=list(old).index)
    state: dict[str, object] = dict(old)
    _apply_state(state, pairs)
    assert not any(k.startswith("bucket:") for k in state)
    again = _restore(state)
    for seg in ("channel=phone", "all=all"):
        want = [(r.metric, r.n, r.positives, r.promoters, r.version)
                for r in stage.totals[seg].records()]
        assert [(r.metric, r.n, r.positives, r.promoters, r.version)
                for r in again.totals[seg].records()] == want
    assert [(r.metric, r.n) for r in again.flush().metrics] == [("nps", 1)]  # "d": re-flushed


def test_restores_at_any_point_give_the_records_of_an_uninterrupted_stage() -> None:
    """Random contributions (answers, retractions, journeys closing, moving, reopening, moving
    out of a final bucket that keeps them), state written after every message and the stage
    restored from it at random points: the metric records equal those of a stage that never
    restarted, and eviction deletes every key a bucket had."""
    import random

    rng = random.Random(7)
    segs = [("all", "all"), ("channel", "phone"), ("tier", "a|b")]
    msgs: list[dict[str, object]] = []
    for _ in range(3_000):
        dim, value = rng.choice(segs)
        bucket = rng.randrange(4) * 60_000
        u = rng.random()
        if u < 0.3:
            msgs.append(messages.answer(dim, value, "nps", bucket, f"e{rng.randrange(400)}",
                                        rng.randrange(11))[1])
        elif u < 0.35:
            msgs.append(messages.retract(dim, value, "nps", bucket,
                                         f"e{rng.randrange(400)}")[1])
        else:
            contribution = None if rng.random() < 0.1 else (bucket, rng.random() < 0.4)
            # keep: stage one found the journey's previous bucket final (it stays counted there)
            msgs.append(messages.end(dim, value, f"j{rng.randrange(300)}", contribution,
                                     keep_previous=rng.random() < 0.15)[1])
    plain = SegmentStage(CoreConfig())
    stage = SegmentStage(CoreConfig())
    state: dict[str, object] = {}
    want: list[tuple[object, ...]] = []
    got: list[tuple[object, ...]] = []

    def rows(records: list[MetricRecord]) -> list[tuple[object, ...]]:
        return [(r.metric, r.segment_value, r.window_start, r.n, r.positives, r.promoters,
                 r.detractors, r.version) for r in records]

    for i, message in enumerate(msgs):
        plain.apply(message)
        stage.apply(message)
        _apply_state(state, stage.dirty_state())
        if i % 50 == 49:
            want += rows(plain.flush().metrics)
            got += rows(stage.flush().metrics)
            _apply_state(state, stage.dirty_state())
        if rng.random() < 0.02:
            stage = _restore(dict(state))
            got += rows(stage.flush().metrics)  # a restore re-flushes what was pending
            _apply_state(state, stage.dirty_state())
    want += rows(plain.flush().metrics)
    got += rows(stage.flush().metrics)
    # the last record of each bucket is what an upsert by version keeps
    def last(records: list[tuple[object, ...]]) -> dict[tuple[object, ...], tuple[object, ...]]:
        out: dict[tuple[object, ...], tuple[object, ...]] = {}
        for r in records:
            if r[:3] not in out or r[-1] >= out[r[:3]][-1]:  # type: ignore[operator]
                out[r[:3]] = r
        return out
    assert last(got) == last(want)
    # every bucket final and evicted: every key of every bucket forgotten (a table that is
    # not a journal deletes them: `write_state`), and a restore of what a journal would still
    # hold (the members without their removals) holds no bucket
    stage.apply(messages.watermark(0, 10**9))
    held = dict(state)
    _apply_state(held, stage.dirty_state())
    forgotten = stage.drain_forgotten()
    assert forgotten and stage.drain_forgotten() == []
    assert set(forgotten) == {k for k in held if k.startswith("member:")}
    assert not _restore(held).totals
    for key in forgotten:
        held.pop(key)
    assert not [k for k in held if k.startswith(("member:", "bucket:"))]


def _week_of_answers(stage: SegmentStage, state: dict[str, object], clock: list[float],
                     days: int, saves: list[list[tuple[str, object]]]) -> None:
    """An NPS answer a minute into segment `all` for `days` days, the watermark following;
    the state written every hour of event time, 31 s of the clock apart (a series save each)."""
    minute = 60_000
    for i in range(days * 1440):
        stage.apply(messages.answer("all", "all", "nps", i * minute, f"e{i}", i % 11)[1])
        stage.apply(messages.watermark(0, (i + 1) * minute))
        if i % 60 == 59:
            stage.flush()
            clock[0] += 31.0
            pairs = stage.dirty_state()
            saves.append([(k, v) for k, v in pairs if k.startswith(("series", "member"))])
            _apply_state(state, pairs)


def _series_snapshots(stage: SegmentStage) -> dict[object, object]:
    return {key: stage.detector.snapshot_key(key) for key in stage.detector.series_keys()}


def test_a_week_old_series_is_written_by_its_changed_parts_and_restores_whole() -> None:
    """A drop series holds a week of minute buckets (632 KiB written whole at every save, the
    layout before): each save now writes its head and the parts that changed (the current
    hour, the hour whose buckets are forgotten), and a restore gives back the same series."""
    clock = [0.0]
    stage = SegmentStage(CoreConfig(), clock=lambda: clock[0])
    state: dict[str, object] = {}
    saves: list[list[tuple[str, object]]] = []
    _week_of_answers(stage, state, clock, 9, saves)
    series = [(k, v) for save in saves[-24:] for k, v in save if k.startswith("series")]
    sizes = _table_bytes(series)
    held = stage.detector._series[("nps", "all", "all")]
    assert len(held.held_buckets()) > 7 * 1440  # a week and the window: 10,140 minute buckets
    # per save: the head and at most three parts (the hour just filled, the next one begun,
    # the oldest one forgetting), each a few KiB
    assert max(sizes) < 8_000, max(sizes)
    assert sum(sizes) / 24 < 16_000, sum(sizes)
    assert not [k for k in state if k.startswith("series:")]
    restored = _restore(dict(state))
    assert _series_snapshots(restored) == _series_snapshots(stage)
    # parts of forgotten hours were deleted: what is held is about a week and an hour of parts
    assert len([k for k in state if k.startswith("series-part:")]) <= 7 * 24 + 3


def test_a_series_written_whole_by_an_older_worker_is_rewritten_as_head_and_parts() -> None:
    clock = [0.0]
    old = SegmentStage(CoreConfig(), clock=lambda: clock[0])
    old_state: dict[str, object] = {}
    _week_of_answers(old, old_state, clock, 2, [])
    key = ("nps", "all", "all")
    whole = old.detector.snapshot_key(key)
    assert whole is not None
    # the layout before: the same members, the series whole under `series:`
    legacy = {k: v for k, v in old_state.items() if k.startswith("member:")}
    legacy["series:nps|all|all"] = whole
    stage = SegmentStage(CoreConfig(), clock=lambda: clock[0])
    stage.restore_keys(list(legacy.items()))
    assert stage.detector.snapshot_key(key) == whole
    clock[0] += 31.0
    pairs = stage.dirty_state()
    keys = [k for k, _ in pairs]
    # every part written, then the whole key deleted after them
    assert keys[-1] == "series:nps|all|all" and dict(pairs)["series:nps|all|all"] is None
    parts = [k for k in keys if k.startswith("series-part:")]
    assert len(parts) == 2 * 24  # two days of minute buckets, none forgotten yet
    state = dict(legacy)
    _apply_state(state, pairs)
    assert _series_snapshots(_restore(state)) == {key: whole}
    # a changelog holding both (a crash before the whole key's deletion): the parts win
    both = {**state, "series:nps|all|all": {**whole, "cursor": 0}}
    again = SegmentStage(CoreConfig(), clock=lambda: clock[0])
    again.restore_keys(list(both.items()))
    assert _series_snapshots(again) == {key: whole}
    clock[0] += 31.0
    assert ("series:nps|all|all", None) in again.dirty_state()



def test_a_journey_id_is_one_string_in_every_segment_before_and_after_a_restore() -> None:
    """Each segment's message is decoded apart, and a journey's members are held for the
    journey idle time past final: the stage keeps one string per id (docs/streaming.md,
    Known limits), also for answers' keys."""
    import orjson

    stage = SegmentStage(CoreConfig(), sources=1)
    journey = "c1@2026-11-22T17:10:00.000Z"
    decoded = [orjson.loads(orjson.dumps(messages.end(dim, value, journey, (0, True))[1]))
               for dim, value in (("all", "all"), ("channel", "web"))]
    decoded += [orjson.loads(orjson.dumps(messages.answer(dim, value, "nps", 0, "e1", 9)[1]))
                for dim, value in (("all", "all"), ("channel", "web"))]
    assert decoded[0]["j"] is not decoded[1]["j"]
    stage.process_batch(decoded)

    def ids(stage: SegmentStage) -> list[str]:
        return [member for seg in ("all=all", "channel=web")
                for member in [*stage.totals[seg].end_buckets[0],
                               *stage.totals[seg].answers["nps"][0]]]

    held = ids(stage)
    assert held[0] is held[2] and held[1] is held[3], held
    state = [(key, orjson.loads(orjson.dumps(value))) for key, value in stage.dirty_state()]
    again = SegmentStage(CoreConfig(), sources=1)
    again.restore_keys(state)
    restored = ids(again)
    assert restored == held and restored[0] is restored[2] and restored[1] is restored[3]


def _written(table: dict[str, object], stage: SegmentStage) -> None:
    """The state table as the worker keeps it: writes applied, keys forgotten by time dropped
    (a changelog replay may still hold those: see the next test)."""
    for key, value in stage.dirty_state():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    for key in stage.drain_forgotten():
        table.pop(key, None)


def test_a_final_negative_end_bucket_is_written_sealed_and_restored_so(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Past final, a bucket's member keys go and it is written as its counts and journey ids
    in pieces (SEALED_PREFIX); a restore gives back the sealed bucket, whatever stale member
    keys a changelog replay still holds, and a journey sent again still counts once."""
    import orjson

    from pipeline.stream import segments

    monkeypatch.setattr(segments, "SEALED_PIECE_BYTES", 4096)  # ids of 9 bytes: several pieces
    config = CoreConfig()
    width, lateness = config.windows.bucket_ms, config.windows.allowed_lateness_ms
    journeys = 1005
    stage = SegmentStage(config, sources=1)
    table: dict[str, object] = {}
    stage.process_batch([_end(f"j{i:05d}", (0, i % 2 == 0)) for i in range(journeys)])
    _written(table, stage)
    everything = dict(table)  # what a changelog replay still reads: the member keys too
    stage.process_batch([messages.watermark(0, width + lateness + width)])
    _written(table, stage)
    everything.update(table)
    assert not any(key.startswith(segments.MEMBER_PREFIX) for key in table)
    head = table[segments.sealed_key("channel=phone", 0)]
    assert isinstance(head, dict) and head["p"] > 1
    assert head == {"v": journeys, "d": False, "n": journeys, "x": (journeys + 1) // 2,
                    "late": {}, "p": head["p"]}
    pieces = [table[segments.sealed_ids_key("channel=phone", 0, i)] for i in range(head["p"])]
    assert [j for piece in pieces for j in piece] == [f"j{i:05d}" for i in range(journeys)]  # type: ignore[attr-defined]
    assert all(len(orjson.dumps(piece)) <= 4096 for piece in pieces)
    for state in (table, everything):
        again = SegmentStage(config, sources=1)
        again.restore_keys(orjson.loads(orjson.dumps(state)).items())
        totals = again.totals["channel=phone"]
        assert totals.is_sealed(0) and totals.end_buckets == {}
        again.process_batch([_end("j00003", (0, False)), _end("late", (0, True))])
        assert [(r.n, r.positives, r.version) for r in again.flush().metrics] == []
        record = totals.record("negative_end", 0)
        assert (record.n, record.positives, record.version) == (
            journeys + 1, (journeys + 1) // 2 + 1, journeys + 1)
    broken = {k: v for k, v in table.items() if k != segments.sealed_ids_key("channel=phone", 0, 1)}
    damaged = SegmentStage(config, sources=1)
    with caplog.at_level(logging.ERROR, logger=segments.__name__):
        damaged.restore_keys(broken.items())
    assert [r.getMessage() for r in caplog.records] == [
        "segments state: sealed bucket channel=phone at 0 lacks pieces [1] of its journey ids "
        "(a damaged state); its counts are restored, but a journey of those pieces sent again "
        "would count twice"]
    record = damaged.totals["channel=phone"].record("negative_end", 0)
    assert (record.n, record.positives) == (journeys, (journeys + 1) // 2)
    damaged.process_batch([_end("j00003", (0, False))])  # in piece 0: still counted once
    assert damaged.totals["channel=phone"].record("negative_end", 0).n == journeys
    # the hold ends: every key of the sealed bucket is forgotten
    stage.process_batch([messages.watermark(0, 2 * width + lateness + config.windows.end_hold_ms)])
    _written(table, stage)
    assert not any(key.startswith((segments.SEALED_PREFIX, segments.SEALED_IDS_PREFIX))
                   for key in table), sorted(table)


def test_only_a_watermark_that_moves_the_merged_stream_time_flushes() -> None:
    """Records leave at a watermark only when the merged stream time (the slowest of the
    stage-one partitions) moves and the detector evaluates: the others change nothing it
    sees, and a bucket's version counts changes, not flushes, so the end of the batch sends
    the same latest records."""
    stage = SegmentStage(CoreConfig(), sources=2)
    minute = 60_000
    stage.apply(messages.watermark(0, 10 * minute))
    stage.apply(messages.watermark(1, 10 * minute))
    stage.apply(messages.answer("all", "all", "nps", 0, "e1", 10)[1])
    held = stage.apply(messages.watermark(0, 11 * minute))  # partition 1 still at 10
    assert held.metrics == []
    stage.apply(messages.answer("all", "all", "nps", 0, "e2", 0)[1])
    moved = stage.apply(messages.watermark(1, 12 * minute))  # merged: 11 minutes
    assert [(r.n, r.promoters, r.detractors, r.version) for r in moved.metrics] == [(2, 1, 1, 2)]
    stage.apply(messages.answer("all", "all", "nps", 0, "e3", 10)[1])
    behind = stage.apply(messages.watermark(1, 13 * minute))  # partition 0 still at 11
    assert behind.metrics == []
    assert [(r.n, r.version) for r in stage.flush().metrics] == [(3, 3)]


def test_a_watermark_at_the_end_of_a_batch_equals_one_sent_after_it() -> None:
    """The outbox puts a source partition's watermark at the end of its batch record for a
    contributions partition (`messages.batch(..., watermark_ms=...)`): read and applied, it
    gives the records, alerts and state of the batch followed by a watermark record."""
    import orjson

    minute = 60_000
    answers = [messages.answer("all", "all", "nps", i * minute, f"e{i}", i % 11)[1]
               for i in range(30)]
    ends = [messages.end("tier", "gold", f"j{i}", (i * minute, i % 2 == 0))[1]
            for i in range(30)]
    apart, together = SegmentStage(CoreConfig(), sources=2), SegmentStage(CoreConfig(), sources=2)
    got: list[list[tuple[list[MetricRecord], list[Any]]]] = [[], []]
    for step in range(3):
        items = answers[step * 10:(step + 1) * 10] + ends[step * 10:(step + 1) * 10]
        for source in (0, 1):
            watermark = (step * 10 + 9) * minute + 30 * 60_000 * 60 * source
            first = apart.process_batch([messages.batch(items), messages.watermark(source,
                                                                                   watermark)])
            record = orjson.dumps(messages.batch(items, source, watermark))
            second = together.process_batch([messages.read(record)])
            got[0].append((first.metrics, first.alerts))
            got[1].append((second.metrics, second.alerts))
    assert got[0] == got[1] and any(metrics for metrics, _ in got[0])
    assert apart.watermarks == together.watermarks and apart.merged == together.merged > 0
    assert apart.dirty_state() == together.dirty_state()


@pytest.mark.parametrize("extra", [{"p": 0}, {"w": 60_000}, {"p": 0, "w": "x"}])
def test_a_batch_with_half_a_watermark_does_not_read(extra: dict[str, object]) -> None:
    import orjson

    record = orjson.dumps({**messages.batch([]), **extra})
    with pytest.raises(ValueError, match=r'"[pw]"'):
        messages.read(record)
