"""bench/bench_journey_state.py: the two shapes it compares write what they say."""

from __future__ import annotations

from bench.bench_journey_state import compressed_batches, events, live_batches, run


def test_a_batch_per_event_writes_every_event_s_key_and_more_than_large_batches() -> None:
    evs = events(3000)
    per_event = run(evs, lambda _index, _ms: True, partitions=4)
    large = run(evs, compressed_batches(1000), partitions=4)
    assert (per_event.events, large.events) == (len(evs), len(evs))
    assert (per_event.batches, large.batches) == (len(evs), 3)
    # every batch changed the key of its one event (late or duplicate events aside, which the
    # generator's default mix holds few of), and large batches write each key once for all
    # of its events in the batch
    assert per_event.pairs >= 0.9 * len(evs)
    assert large.pairs < 0.8 * per_event.pairs
    assert large.bytes < per_event.bytes
    # a key's every write holds its open journey's entries so far: more entries than events
    assert per_event.entries > max(len(evs), large.entries)
    for written in (per_event, large):
        assert 0 < written.closed_bytes < written.bytes


def test_a_live_batch_is_a_slot_of_event_time_in_arrival_order() -> None:
    new_batch = live_batches(0.2)
    # event times (ms) in arrival order: a late one (100) never starts a batch of its own
    starts = [new_batch(i, ms) for i, ms in enumerate([0, 150, 199, 200, 100, 450, 401, 1000])]
    assert starts == [True, False, False, True, False, True, False, True]
