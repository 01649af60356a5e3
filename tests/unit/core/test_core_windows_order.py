"""`windows_in_key_order` (replay's windows.jsonl, one series held at a time) gives the rows of a
plain sum over every window at once, the definition the ClickHouse views follow
(tests/unit/storage/test_windows_offline.py checks `hourly_and_daily` against them)."""

from __future__ import annotations

import random

import pytest

from pipeline.core.config import DAY_MS, HOUR_MS
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import WINDOW_TYPES
from pipeline.core.vectors import SIZE, vector_of
from pipeline.core.windows import WINDOWS, WindowRecord, hourly_and_daily, windows_in_key_order


def partials(seed: int) -> list[MetricRecord]:
    """Partials of three metrics, a few segments, several partitions, over three days."""
    rng = random.Random(seed)
    out = []
    keys = set()
    for _ in range(400):
        metric = rng.choice(("nps", "ces", "csat"))
        dim, value = rng.choice((("all", "all"), ("channel", "web"), ("channel", "app"),
                                 ("stage", "use")))
        start = rng.randrange(3 * DAY_MS // 60_000) * 60_000
        partition = rng.randrange(3)
        if (metric, dim, value, start, partition) in keys:
            continue
        keys.add((metric, dim, value, start, partition))
        a, b, c = rng.randrange(5), rng.randrange(5), rng.randrange(5)
        total = float(rng.randrange(1, 8) * (a + b + c))
        out.append(MetricRecord(metric, dim, value, start, start + 60_000, partition, a + b + c,
                                None, None, None, a, b, c, total, total * 3, a, b, c, 1))
    return out


def reference(records: list[MetricRecord]) -> list[tuple[object, ...]]:
    """Every window summed in one dict, sorted at the end: (series, window, start, vector, n)."""
    sums: dict[tuple[str, str, str, int, int], list[float]] = {}
    counts: dict[tuple[str, str, str, int, int], int] = {}
    order = list(WINDOWS)
    for r in records:
        for window, length in WINDOWS.items():
            key = (r.metric, r.segment_dim, r.segment_value, order.index(window),
                   r.window_start - r.window_start % length)
            vector = sums.setdefault(key, [0.0] * SIZE[r.metric])
            for i, x in enumerate(vector_of(r)):
                vector[i] += x
            counts[key] = counts.get(key, 0) + 1
    return [(*key[:3], order[key[3]], key[4],
             WINDOW_TYPES[key[0]].from_vector(sums[key]).result(), counts[key])
            for key in sorted(sums)]


def rows(windows: list[WindowRecord]) -> list[tuple[object, ...]]:
    return [(w.sums.metric, w.sums.segment_dim, w.sums.segment_value, w.window,
             w.sums.window_start, WINDOW_TYPES[w.sums.metric].from_vector(
                 vector_of(w.sums)).result(), w.partials)
            for w in windows]


@pytest.mark.parametrize("seed", range(5))
def test_rows_in_key_order_equal_one_sum_of_every_window(seed: int) -> None:
    records = partials(seed)
    in_order = sorted(records, key=lambda r: (r.metric, r.segment_dim, r.segment_value,
                                              r.window_start, r.source_partition))
    streamed = list(windows_in_key_order(in_order))
    assert rows(streamed) == reference(records)
    assert streamed == hourly_and_daily(random.Random(seed).sample(records, len(records)))
    assert {w.sums.window_end - w.sums.window_start for w in streamed} == {HOUR_MS, DAY_MS}


def test_a_series_out_of_key_order_is_an_error_not_a_second_row() -> None:
    records = sorted(partials(1), key=lambda r: (r.metric, r.segment_dim, r.segment_value,
                                                 r.window_start))
    with pytest.raises(ValueError, match="out of key order"):
        list(windows_in_key_order(records[::-1]))
