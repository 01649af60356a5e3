"""Long histories: the same results as the old detector and bucket eviction, bounded state.

`DropDetector` used to forget old buckets by scanning every bucket it held at each step (a week
of minute buckets per series) and to sum a CUSUM reference by looking up every minute of the
week; it now keeps the bucket starts in order. These tests feed long generated streams of
partials (several series and partitions, late and re-sent partials, stale versions, emptied
buckets, drops that fire and resolve both rules, gaps longer than window + baseline, state
dumped and restored midway) to it and to the old detector kept verbatim in drops_reference.py,
and require equal alerts at every call, equal rolling windows and equal state.
`SurveyBuckets.evict` likewise used to scan every partial held (a day of them) and now pops
the final bucket starts from a heap: it must forget exactly the partials the scan forgot.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from drops_reference import DropDetector as ReferenceDetector
from scenarios import DAY, HOUR, MIN, T0, event

from pipeline.core.buckets import _EVICT_EVERY_BUCKETS, SurveyBuckets, record_key
from pipeline.core.config import DropConfig, WindowConfig
from pipeline.core.drops import (
    _COMPACT_AFTER,
    PART_BUCKETS,
    DropDetector,
    _bisect_left,
    _find,
    assemble,
)
from pipeline.core.event import Survey
from pipeline.core.journeys import EndDelta
from pipeline.core.records import AlertRecord, MetricRecord

START = T0 - T0 % DAY
PARTITIONS = 3
# (metric, dim, value) -> chance that a partition sends this bucket; csat is sparse, so its
# CUSUM reference waits (n < min_baseline_n) and sums its baseline every hour.
SERIES: dict[tuple[str, str, str], float] = {
    ("nps", "all", "all"): 0.9,
    ("nps", "channel", "phone"): 0.5,
    ("ces", "channel", "web"): 0.4,
    ("csat", "tier", "gold"): 0.03,
    ("negative_end", "all", "all"): 0.6,
}


def _record(rng: random.Random, key: tuple[str, str, str], start: int, width: int,
            partition: int, version: int, bad: float) -> MetricRecord:
    """A partial with random answers; `bad` in [0, 1] shifts them towards the bad end."""
    metric, dim, value = key
    n = 0 if rng.random() < 0.03 else rng.randint(1, 12)  # some partials emptied again
    promoters = passives = detractors = easy = hard = positives = 0
    total = total_sq = 0.0
    for _ in range(n):
        u = rng.random()
        if metric == "nps":
            if u < 0.45 - 0.3 * bad:
                promoters += 1
            elif u < 0.8 - 0.2 * bad:
                passives += 1
            else:
                detractors += 1
        elif metric == "ces":
            answer = rng.choice((1.0, 2.5, 4.0, 5.5, 7.0) if bad < 0.5 else (1.0, 2.5, 4.0))
            total += answer
            total_sq += answer * answer
            easy += answer >= 5
            hard += answer <= 3
        elif metric == "csat":
            positives += u < 0.8 - 0.5 * bad
        else:
            positives += u < 0.2 + 0.4 * bad
    if metric == "nps":
        n = promoters + passives + detractors
    return MetricRecord(
        metric=metric, segment_dim=dim, segment_value=value, window_start=start,
        window_end=start + width, source_partition=partition, n=n, value=None, ci_low=None,
        ci_high=None, promoters=promoters, passives=passives, detractors=detractors,
        total=total, total_sq=total_sq, easy=easy, hard=hard, positives=positives,
        version=version)


def _badness(key: tuple[str, str, str], t: int, scale: float) -> float:
    """Sudden drops (window test) and a slow decline (CUSUM), then recovery; the days are
    those of a 20-day stream, `scale` = days / 20."""
    day: float = (t - START) / DAY / scale
    if key[0] == "nps" and key[1] == "channel" and 9.0 <= day < 9.5:
        return 1.0
    if key[0] == "nps" and key[1] == "all" and 11.0 <= day < 16.0:
        return min(1.0, (day - 11.0) / 3.0)  # slow, then recovers at day 16
    if key[0] == "ces" and 8.2 <= day < 8.4:
        return 1.0
    if key[0] == "negative_end" and 12.0 <= day < 12.3:
        return 1.0
    return 0.0


def _silent(key: tuple[str, str, str], t: int, scale: float) -> bool:
    """Gaps longer than window + baseline: idle jumps and forgetting a whole history."""
    day: float = (t - START) / DAY / scale
    return key[1] == "channel" and key[2] == "web" and 10.0 <= day < 18.5


def _stream(seed: int, days: int, width: int, lateness: int
            ) -> list[tuple[list[MetricRecord], int]]:
    """Batches of partials, each followed by the merged watermark to advance to."""
    rng = random.Random(seed)
    versions: dict[tuple[tuple[str, str, str], int, int], int] = {}
    sent: list[MetricRecord] = []
    out: list[tuple[list[MetricRecord], int]] = []
    batch: list[MetricRecord] = []
    for i in range(days * DAY // width):
        t = START + i * width
        for key, chance in SERIES.items():
            if _silent(key, t, days / 20):
                continue
            for partition in range(PARTITIONS):
                if rng.random() >= chance:
                    continue
                start = t
                if rng.random() < 0.05:  # late: a bucket within the allowed lateness
                    start = t - width * rng.randrange(1, lateness // width + 1)
                slot = (key, start, partition)
                version = versions[slot] = versions.get(slot, 0) + 1
                bad = _badness(key, t, days / 20)
                record = _record(rng, key, start, width, partition, version, bad)
                batch.append(record)
                sent.append(record)
        if sent and rng.random() < 0.02:
            batch.append(rng.choice(sent[-500:]))  # redelivery: a stale or repeated version
        # The merged watermark: usually each bucket end, sometimes several buckets at once,
        # sometimes inside a bucket.
        if rng.random() < 0.15:
            continue
        watermark = t + width + (rng.randrange(width) if rng.random() < 0.2 else 0)
        out.append((batch, watermark))
        batch = []
    return out


def _run(config: DropConfig, width: int, stream: list[tuple[list[MetricRecord], int]],
         restore_every: int, parts: bool = False
         ) -> tuple[list[list[AlertRecord]], list[list[AlertRecord]]]:
    """`parts`: save the series changed as the stream does (a head and the changed parts,
    now and then) and restore from what was saved."""
    new = DropDetector(config, width, keep_parts=parts)
    old = ReferenceDetector(config, width)
    new_alerts: list[list[AlertRecord]] = []
    old_alerts: list[list[AlertRecord]] = []
    store: dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, dict[str, Any]]]] = {}
    rng = random.Random(restore_every)
    for step, (batch, watermark) in enumerate(stream):
        for record in batch:
            new.apply_partial(record)
            old.apply_partial(record)
        new_alerts.append(new.advance(watermark))
        old_alerts.append(old.advance(watermark))
        restoring = step % restore_every == restore_every // 2
        if parts and (restoring or rng.random() < 0.1):
            _save_parts(new, store)
        if restoring:
            _check_held(new)
            assert _dumps(new) == _dumps(old)
            assert new.firing() == old.firing()
            for key in new.series_keys():
                for end in (watermark, watermark - 3 * HOUR, watermark - 2 * DAY):
                    assert new.rolling(*key, end) == old.rolling(*key, end)
            # the stream restores series from their dumps: continue on a restored detector
            restored = DropDetector(config, width, keep_parts=parts)
            for key in new.series_keys():
                if parts:
                    head, held = store[key]
                    assert assemble(head, (held[f] for f in sorted(held))) == new.snapshot_key(
                        key)
                    restored.restore_key(key, assemble(head, (held[f] for f in sorted(held))))
                else:
                    restored.restore_key(key, new.snapshot_key(key))
            new = restored
    _check_held(new)
    assert _dumps(new) == _dumps(old)
    return new_alerts, old_alerts


def _save_parts(detector: DropDetector,
                store: dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, Any]]]
                ) -> None:
    """What the segment stage writes: for each series changed, its head and changed parts
    (None: a part emptied, deleted). Every series saved must read back as its snapshot."""
    for key in sorted(detector.drain_dirty()):
        head = detector.snapshot_head(key)
        assert head is not None
        held = store.setdefault(key, (head, {}))[1]
        for first, part in detector.drain_parts(key):
            assert part is None or all(first <= b[0] < first + PART_BUCKETS * detector.bucket_ms
                                       for b in part["buckets"] + part["partials"])
            if part is None:
                held.pop(first, None)
            else:
                held[first] = part
        store[key] = (head, held)
        assert assemble(head, (held[f] for f in sorted(held))) == detector.snapshot_key(key)


def _check_held(detector: DropDetector) -> None:
    """Every series' live starts are ascending, each once, with `held` and `parts` beside them
    (a start held holds a bucket or partials); forgotten entries hold None; a start is found
    where it is held, and one not held is not found."""
    for key in detector.series_keys():
        series = detector._series[key]
        live = series.order[series.head:]
        assert len(series.held) == len(series.order)
        assert live == sorted(set(live))
        assert len(series.parts) == len(series.order)
        for v, at in zip(series.held[series.head:], series.parts[series.head:], strict=True):
            assert v is not None or at is not None  # a start held holds something
        assert all(v is None for v in series.held[:series.head])
        assert all(at is None for at in series.parts[:series.head])
        for i, start in enumerate(live, series.head):
            assert series.index_of(start) == i
            assert series.vector_at(start) is series.held[i]
            assert series.index_of(start + 1) == -1 and series.vector_at(start - 1) is None
        for at in series.held_partials().values():
            # one partition's partial is held as a tuple, never as a dict of one
            assert isinstance(at, tuple) or len(at) >= 2


def _dumps(detector: DropDetector | ReferenceDetector) -> dict[Any, Any]:
    return {key: detector.snapshot_key(key) for key in detector.series_keys()}


def _check(alerts: tuple[list[list[AlertRecord]], list[list[AlertRecord]]],
           rules: set[str]) -> None:
    new, old = alerts
    assert new == old
    flat = [a for call in new for a in call]
    # the stream exercises what it should: both rules fire and resolve
    assert {(a.rule, a.state) for a in flat} >= {(r, s) for r in rules
                                                 for s in ("firing", "resolved")}


def test_default_config_long_history_equals_reference() -> None:
    # 7-day baseline, 20 days of 15-minute buckets: forgetting and idle jumps over whole weeks
    width = 15 * MIN
    config = DropConfig(min_n=30, min_baseline_n=30, cusum_min_hour_n=10)
    stream = _stream(1, 20, width, 6 * HOUR)
    _check(_run(config, width, stream, restore_every=400), {"window_drop", "cusum_drift"})


def test_minute_buckets_short_baseline_equals_reference() -> None:
    # minute buckets, a 6 h baseline and 30-minute windows over 5 days: nearly every step
    # forgets a bucket (and the ordered starts are compacted)
    config = DropConfig(window_ms=30 * MIN, baseline_ms=6 * HOUR, evaluate_every_ms=30 * MIN,
                        min_n=20, min_baseline_n=20, cusum_min_hour_n=5,
                        negative_end_delay_ms=10 * MIN)
    stream = _stream(2, 5, MIN, 2 * HOUR)
    _check(_run(config, MIN, stream, restore_every=2000), {"window_drop"})


def test_series_saved_as_head_and_parts_restore_as_their_snapshots() -> None:
    # the stream's layout (pipeline/stream/segments.py): now and then each changed series'
    # head and changed parts; minute buckets and a 6 h baseline, so parts empty as buckets
    # are forgotten, and restores from what was saved continue as the reference does
    config = DropConfig(window_ms=30 * MIN, baseline_ms=6 * HOUR, evaluate_every_ms=30 * MIN,
                        min_n=20, min_baseline_n=20, cusum_min_hour_n=5,
                        negative_end_delay_ms=10 * MIN)
    stream = _stream(8, 3, MIN, 2 * HOUR)
    _check(_run(config, MIN, stream, restore_every=700, parts=True), {"window_drop"})


def test_parts_are_refused_without_keep_parts_and_every_part_drains_on_request() -> None:
    detector = DropDetector(DropConfig(), MIN)
    detector.apply_partial(_record(random.Random(1), ("nps", "all", "all"), START, MIN, 0, 1, 0))
    with pytest.raises(ValueError, match="parts are not kept"):
        detector.drain_parts(("nps", "all", "all"))
    keeping = DropDetector(DropConfig(), MIN, keep_parts=True)
    key = ("nps", "all", "all")
    for i in range(130):
        keeping.apply_partial(_record(random.Random(i), key, START + i * MIN, MIN, 0, 1, 0))
    assert [f for f, _ in keeping.drain_parts(key)] == [START, START + HOUR, START + 2 * HOUR]
    assert keeping.drain_parts(key) == []
    restored = DropDetector(DropConfig(), MIN, keep_parts=True)
    restored.restore_key(key, keeping.snapshot_key(key))
    assert restored.drain_parts(key) == []
    every = restored.drain_parts(key, every=True)
    head = restored.snapshot_head(key)
    assert head is not None
    assert assemble(head, (p for _, p in every if p is not None)) == keeping.snapshot_key(key)


def test_state_held_is_bounded_by_window_and_baseline() -> None:
    width = MIN
    config = DropConfig()
    detector = DropDetector(config, width)
    key = ("nps", "all", "all")
    held = (config.window_ms + config.baseline_ms) // width
    rng = random.Random(3)
    for i in range(10 * DAY // width):
        start = START + i * width
        detector.apply_partial(_record(rng, key, start, width, i % 2, 1, 0.0))
        detector.advance(start + width)
    series = detector._series[key]
    assert len(series.held_buckets()) <= held + 1
    assert len(series.held_partials()) <= held + 1
    live = len(series.order) - series.head
    assert live == len(series.held_buckets())
    assert len(series.order) <= 2 * live + _COMPACT_AFTER
    assert series.order[series.head:] == sorted(series.held_buckets())
    _check_held(detector)


def test_find_is_bisect_left() -> None:
    # `_find` gallops from the ends of the ordered starts; it must give bisect_left's index
    # for every probe and lower bound (duplicates too, though starts are unique)
    rng = random.Random(6)
    for _ in range(300):
        order = sorted(rng.choice((rng.randrange(50), rng.randrange(10 ** 6)))
                       for _ in range(rng.randrange(40)))
        for _ in range(30):
            x = rng.randrange(-5, 10 ** 6 + 5) if rng.random() < 0.5 else (
                rng.choice(order) if order else 0) + rng.choice((-1, 0, 0, 1))
            lo = rng.randrange(len(order) + 1)
            assert _find(order, x, lo) == _bisect_left(order, x, lo), (order, x, lo)


def test_late_starts_are_held_in_order() -> None:
    # partials for buckets before the last one held (a negative_end count when its journey
    # closes, a late answer) go into the ordered starts at their place, the vector beside them
    width = MIN
    detector = DropDetector(DropConfig(), width)
    key = ("nps", "all", "all")
    rng = random.Random(7)
    for i in range(3 * DAY // width):
        start = START + i * width
        detector.apply_partial(_record(rng, key, start, width, 0, 1, 0.0))
        if i > 200 and rng.random() < 0.3:
            late = start - width * rng.randrange(1, 200)
            detector.apply_partial(_record(rng, key, late, width, 1 + i % 2, i, 0.0))
        detector.advance(start + width)
    _check_held(detector)


def test_one_partition_held_as_a_tuple_until_a_second_comes() -> None:
    # a bucket's partials: (partition, version, vector) while one partition has sent one, a
    # dict once a second does; versions are still per partition, and the sums and snapshots
    # are the reference's in every form
    width = MIN
    key = ("nps", "all", "all")
    new, old = DropDetector(DropConfig(), width), ReferenceDetector(DropConfig(), width)
    rng = random.Random(11)
    forms = []
    steps = [(1, 1), (1, 3), (1, 2), (0, 1), (1, 4), (0, 1), (2, 7), (0, 2)]
    for partition, version in steps:
        record = _record(rng, key, START, width, partition, version, 0.0)
        new.apply_partial(record)
        old.apply_partial(record)
        at = new._series[key].held_partials()[START]
        forms.append(at if isinstance(at, tuple) else sorted(at))
        assert _dumps(new) == _dumps(old)
        assert new.rolling(*key, START + width) == old.rolling(*key, START + width)
    assert [f[:2] if isinstance(f, tuple) else f for f in forms] == [
        (1, 1), (1, 3), (1, 3), [0, 1], [0, 1], [0, 1], [0, 1, 2], [0, 1, 2]]
    restored = DropDetector(DropConfig(), width, resume=new.snapshot())
    assert _dumps(restored) == _dumps(new)
    one = DropDetector(DropConfig(), width)
    one.apply_partial(_record(rng, key, START, width, 3, 1, 0.0))
    again = DropDetector(DropConfig(), width, resume=one.snapshot())
    assert isinstance(again._series[key].held_partials()[START], tuple)
    _check_held(new)


def test_bucket_eviction_forgets_exactly_what_the_scan_forgot() -> None:
    # the old rule, checked at every call: at a scan, every partial whose bucket ends at or
    # before the horizon and that is flushed goes; dirty ones stay until a later scan
    width = MIN
    rng = random.Random(4)
    buckets = SurveyBuckets(WindowConfig(bucket_ms=width), partition=0)
    restored = 0
    evicted = 0
    watermark = START
    ends: list[tuple[int, bool]] = []
    for i in range(2 * DAY // (30 * 1000)):  # an event every 30 s for 2 days
        watermark += 30_000
        # late ones, some beyond the horizon (not flushed when evict runs: they must stay)
        ms = watermark - (rng.randrange(DAY + HOUR) if rng.random() < 0.1 else 0)
        buckets.add_event(event(
            f"e{i}", ms, touchpoint=rng.choice(("web", "hotline", "store")),
            attributes={"tier": rng.choice(("basic", "gold"))},
            survey=Survey(nps=rng.randint(0, 10), csat=rng.randint(1, 5))))
        if rng.random() < 0.2:  # a journey closes, or one counted earlier is retracted
            if ends and rng.random() < 0.3:
                at, negative = ends.pop(rng.randrange(len(ends)))
                buckets.apply_end(EndDelta(at, negative, -1, (("all", "all"),)))
            else:
                ends.append((ms, rng.random() < 0.3))
                buckets.apply_end(EndDelta(ms, ends[-1][1], 1, (("all", "all"),)))
        if rng.random() < 0.3:
            records = buckets.flush()
            if records and rng.random() < 0.01:  # a restart: rebuilt from the records emitted
                fresh = SurveyBuckets(WindowConfig(bucket_ms=width), partition=0)
                for record in buckets.records():  # as emitted: flushed
                    fresh.restore_key(record_key(record), {"record": record.to_dict()})
                fresh.final_before_ms = buckets.final_before_ms
                buckets = fresh
                restored += 1
        horizon = watermark - DAY - width
        if horizon - buckets._scanned_before_ms < _EVICT_EVERY_BUCKETS * width:
            held = len(buckets)
            assert buckets.evict(horizon) == 0 and len(buckets) == held
            continue
        before = dict(buckets._partials)
        gone = buckets.evict(horizon)
        expected = {k: p for k, p in before.items() if k[3] + width > horizon or p.dirty}
        assert buckets._partials == expected
        assert gone == len(before) - len(expected)
        evicted += gone
    assert restored and evicted > len(buckets) // 2  # about one day of two is held


@pytest.mark.parametrize("parts", [False, True])
def test_unusual_partials_equal_reference(parts: bool) -> None:
    # Stage one never sends them, but the detector takes any record: partials that start off
    # a bucket boundary, and negative counts (a retraction where nothing was counted). Then
    # the window sums are not the sums of the buckets held, and the evaluation must sum the
    # buckets as the reference does instead of reading the running sums. (`parts`: saved and
    # restored as a head and parts, whose head carries such sums: the parts need not give them.)
    width = 15 * MIN
    config = DropConfig(min_n=30, min_baseline_n=30, cusum_min_hour_n=10)
    rng = random.Random(5)
    stream = []
    for batch, watermark in _stream(3, 20, width, 6 * HOUR):
        odd = []
        for record in batch:
            u = rng.random()
            if u < 0.01:
                record = record._replace(window_start=record.window_start + 7 * MIN)
            elif u < 0.02 and record.metric in ("csat", "negative_end"):
                record = record._replace(positives=-record.positives, n=-record.n)
            odd.append(record)
        stream.append((odd, watermark))
    new, old = _run(config, width, stream, restore_every=400, parts=parts)
    assert new == old
