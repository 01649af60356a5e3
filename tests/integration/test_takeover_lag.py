"""Offsets after a takeover: a worker is killed with SIGKILL, the other one takes its partitions
once the broker expires its session, and the group's committed offsets must catch up promptly.

Issue 14: after such a takeover one partition's committed offset advanced one offset per second
for ~105 s (group lag ~1,500 for two minutes, data exact). Cause: Faust fills its `_gap` of
skipped offsets into the acked list without looking at what is already there; a seek to the
committed offset while records fetched before it still arrive opens a gap over offsets that are
acked as well, and each duplicate cut Faust's run of consecutive offsets, so each commit (every
second) moved the offset by one. `pipeline.stream.faust_private.PeakendConsumer` takes the acked
offsets as a set.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from intervaltree import IntervalTree
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from pipeline.stream.faust_private import PeakendConsumer
from pipeline.stream.topics import ensure_topics, journey_events_topic
from tests.integration.test_stream_end_to_end import generate
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    StreamSetup,
    Worker,
    crawl_seconds,
    produce_lines,
    stream_setup,
    wait_until,
)

pytestmark = pytest.mark.integration

# Bounds from measurements on the 2-core test machine shared with other work (docs/reliability.md,
# "Takeovers"): with ~1,500-2,000 records of backlog at the takeover, group lag reached 0 6 s
# (Faust's own bookkeeping, in a run where no gap opened), 32 s and 17 s (PeakendConsumer; the
# 32 s run had slow stretches while the survivor restored the taken partitions) after the
# takeover or the last record; a restore stall looked like a 4.5 s "crawl". The crawl of issue 14
# lasted ~105 s.
LAG_ZERO_WITHIN_S = 60.0
CRAWL_AT_MOST_S = 15.0


class GroupOffsets:
    """The Faust group's committed offsets on the topic it reads events from (the internal
    journey-events topic) and that topic's end offsets, read as an outsider (a consumer with
    the group id that never joins the group, so it triggers no rebalance)."""

    def __init__(self, setup: StreamSetup) -> None:
        topic = journey_events_topic(setup.settings())
        self.tps = [TopicPartition(topic, p) for p in range(setup.partitions)]
        bootstrap = setup.env["PEAKEND_KAFKA_BOOTSTRAP"]
        self.group = setup.env["PEAKEND_APP_ID"]
        self.reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def members(self) -> int:
        """Members of the group once it is stable (0 while it rebalances)."""
        group = self.admin.describe_groups([self.group])[self.group]
        return len(group["members"]) if group["group_state"] == "Stable" else 0

    def sample(self) -> tuple[dict[int, int], dict[int, int]]:
        ends = self.reader.end_offsets(self.tps)
        committed = {tp.partition: self.reader.committed(tp) or 0 for tp in self.tps}
        return committed, {tp.partition: ends[tp] for tp in self.tps}

    def caught_up(self) -> bool:
        committed, ends = self.sample()
        return sum(ends.values()) > 0 and committed == ends

    def entry_committed(self) -> int:
        """Touchpoint records the entry stage has forwarded and committed."""
        group = f"{self.group}-entry"
        offsets = self.admin.list_group_offsets(group).get(group, {})
        return sum(max(0, meta.offset) for meta in offsets.values())

    def close(self) -> None:
        self.reader.close()
        self.admin.close()


def test_sigkill_takeover_commits_promptly(tmp_path: Path, kafka_bootstrap: str,
                                          clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    ensure_topics(setup.settings())  # before the workers: neither races the other to create
    lines = generate(tmp_path, 6000, seed=31)
    first_half, second_half = lines[:2000], lines[2000:]
    offsets = GroupOffsets(setup)
    survivor = Worker(setup, tmp_path, "survivor")
    victim: Worker | None = None
    try:
        # the survivor owns every partition, then the victim joins and takes half of them
        produce_lines(kafka_bootstrap, setup.topic, first_half)
        wait_until(lambda: offsets.entry_committed() == len(first_half) and offsets.caught_up(),
                   120, "the first worker to commit the first records", survivor.log_tail)
        victim = Worker(setup, tmp_path, "victim")
        wait_until(lambda: offsets.members() == 2, 120, "the second worker to join",
                   lambda: victim.log_tail() if victim else "")
        before = offsets.sample()[0]
        produce_lines(kafka_bootstrap, setup.topic, second_half[:1000])
        # both commit: every partition moves, so the victim owns some and has committed there
        wait_until(lambda: all(c > before[p] for p, c in offsets.sample()[0].items())
                   and offsets.entry_committed() == len(first_half) + 1000
                   and offsets.caught_up(), 120,
                   "both workers to commit", lambda: victim.log_tail() if victim else "")
        killed_at_committed = offsets.sample()[0]
        victim.kill9()
        killed = time.monotonic()
        # records keep arriving while the broker still waits for the dead member (its session
        # timeout, 20 s: pipeline/app.py): its partitions build a backlog, as in issue 14
        rest = second_half[1000:]

        def send_rest() -> None:
            for i in range(0, len(rest), 100):
                produce_lines(kafka_bootstrap, setup.topic, rest[i:i + 100])
                time.sleep(2.0)

        sender = threading.Thread(target=send_rest)
        sender.start()
        samples: list[tuple[float, dict[int, int], dict[int, int]]] = []
        produced_all: float | None = None
        while (sender.is_alive() or not samples or samples[-1][1] != samples[-1][2]
               or offsets.entry_committed() < len(lines)):
            if produced_all is None and not sender.is_alive():
                produced_all = time.monotonic() - killed
            committed, ends = offsets.sample()
            samples.append((time.monotonic() - killed, committed, ends))
            assert samples[-1][0] < 400, (samples[-1], survivor.log_tail())
            time.sleep(0.5)
        sender.join()
        if produced_all is None:  # it ended during the last sample
            produced_all = samples[-1][0]
        # the dead member's partitions: those that did not move in the first 20 s after the kill
        frozen = [p for p in killed_at_committed
                  if all(c[p] == killed_at_committed[p] for t, c, _ in samples if t < 20)]
        moved_again = min(t for t, c, _ in samples
                          if any(c[p] != killed_at_committed[p] for p in frozen))
        lag_zero = samples[-1][0]
        longest_crawl = crawl_seconds(samples)
        print(f"\ntakeover: partitions {frozen} of the killed worker resumed at {moved_again:.1f} s"
              f" after the kill; last record produced at {produced_all:.1f} s; group lag 0 at "
              f"{lag_zero:.1f} s, {lag_zero - max(moved_again, produced_all):.1f} s after the "
              f"takeover or the last record (whichever later); longest crawl (a partition "
              f"with lag > 3 batch records moving by at most 1 per second): "
              f"{longest_crawl:.1f} s")
        for t, c, e in samples[::4]:
            print(f"  {t:6.1f} s lag {sum(e.values()) - sum(c.values()):5d} committed "
                  f"{[c[p] for p in sorted(c)]}")
        assert frozen, "no partition waited for the killed worker: it owned none"
        assert survivor.alive(), survivor.log_tail()
        assert longest_crawl < CRAWL_AT_MOST_S, longest_crawl
        assert lag_zero - max(moved_again, produced_all) < LAG_ZERO_WITHIN_S
    finally:
        offsets.close()
        survivor.stop()
        if victim is not None:
            victim.stop()


def test_duplicate_acks_do_not_hold_the_commit_back() -> None:
    """The mechanism, on Faust's own consumer state: a gap that overlaps acked offsets (what a
    seek followed by a record fetched before it leaves) is committed in one step."""
    tp = TopicPartition("t", 0)

    def state() -> Any:
        consumer = PeakendConsumer.__new__(PeakendConsumer)  # only the bookkeeping is used
        consumer._acked = defaultdict(list)
        consumer._acked_index = defaultdict(set)
        consumer._gap = defaultdict(IntervalTree)
        consumer._committed_offset = defaultdict(lambda: None)
        consumer._committed_offset[tp] = 332
        acked = list(range(332, 500))
        consumer._acked[tp].extend(acked)
        consumer._acked_index[tp].update(acked)
        consumer._gap[tp].addi(333, 438)  # 333..437: all of them acked too
        return consumer

    # Faust's own method: one offset per commit (per second) until the duplicates are gone
    faust_consumer = state()
    steps = []
    while (offset := FaustConsumer._new_offset(faust_consumer, tp)) is not None:
        steps.append(offset)
        faust_consumer._committed_offset[tp] = offset
    assert steps == [*range(334, 439), 500]  # 106 commits
    ours = state()
    assert ours._new_offset(tp) == 500
    assert ours._acked[tp] == [] and not ours._acked_index[tp] and not ours._gap[tp]
