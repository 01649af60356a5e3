"""Exact on a realistic span: several days of event time through the real broker and server.

Journeys with producer ids span days (hotel stays, complaints, investment cases), survey answers
are redelivered unchanged and with changed content, records arrive out of order, some are invalid,
one producer clock runs two days ahead, one event carries a 400-digit integer, and a record that
ClickHouse refuses reaches the sink: the tables the worker writes equal `peakend replay` of the
same records, and each of those records gets the
verdict the contract documents (issues: exact on real streams; every event gets a verdict)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.contract import Rejected, parse_event
from pipeline.core.timefmt import format_ms
from tests.integration.test_stream_end_to_end import _diff
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    count,
    dead_letter_counts,
    journeys_in_clickhouse,
    journeys_of_replay,
    metrics_of_replay,
    produce_lines,
    read_lines,
    replay_records,
    stream_setup,
    wait_for_metrics,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def valid(line: bytes) -> bool:
    try:
        parse_event(line)
    except Rejected:
        return False
    return True


def days_of_events(tmp_path: Path) -> list[bytes]:
    path = tmp_path / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--events", "12000", "--seed", "5",
         "--span", "5d", "--late-fraction", "0.03", "--invalid-fraction", "0.01",
         "--output", str(path), "--quiet"],
        cwd=ROOT, check=True,
    )
    lines = read_lines(path)
    rnd = random.Random(5)
    surveys = [i for i, line in enumerate(lines) if b'"survey":{' in line and valid(line)]
    # redeliveries a few hundred records after their original: 60 unchanged, 60 changed
    copies: dict[int, list[bytes]] = {}
    for n, i in enumerate(rnd.sample(surveys, 120)):
        line = lines[i]
        if n >= 60:
            event = json.loads(line)
            event["survey"] = ({"nps": (event["survey"]["nps"] + 3) % 11}
                               if "nps" in event["survey"] else {"csat": 1})
            line = json.dumps(event).encode()
        copies.setdefault(min(len(lines) - 1, i + rnd.randint(1, 300)), []).append(line)
    ahead = json.loads(lines[0])
    ahead.update(event_id="clock-ahead", customer_id="clock-ahead-c",
                 occurred_at=format_ms(time.time_ns() // 1_000_000 + 2 * 86_400_000))
    ahead.pop("journey_id", None)
    huge = lines[1].replace(b'"schema_version":1', b'"schema_version":1,"valence":' +
                            b"9" * 400)
    out = [lines[0], json.dumps(ahead).encode(), huge]  # the bad clock early
    for i, line in enumerate(lines[1:], start=1):
        out.append(line)
        out.extend(copies.get(i, []))
    return out


def test_days_of_events_with_redeliveries_and_bad_clocks_equal_replay(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    lines = days_of_events(tmp_path)
    replay = replay_records(lines, setup.partitions, setup.settings())
    reasons: dict[str, int] = {}
    for letter in replay.dead_letters:
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
    # every record has a verdict: applied, a duplicate or a dead letter with its reason
    assert replay.counts["lines"] == len(lines) == (
        replay.counts["events"] + replay.counts["duplicates"] + len(replay.dead_letters))
    assert reasons.get("future") == 1 and reasons.get("conflict", 0) == 60
    assert replay.counts["duplicates"] == 60 and "late" not in reasons
    spanning = [r for r in replay.journeys.values()
                if r.keyed_by == "journey_id" and r.ended_at - r.started_at > 86_400_000]
    assert len(spanning) > 20  # journeys with ids that span more than a day stay one journey
    ids = {parse_event(line).event_id for line in lines if valid(line)}
    # a record ClickHouse refuses for its content, straight on the journeys topic (no event can
    # make one any more: the contract bounds every value): the sink dead-letters it, the rest lands
    sample = next(iter(replay.journeys.values())).to_dict()
    poison = json.dumps(sample | {"journey_id": "poison-1960",
                                  "started_at": "1960-01-01T00:00:00.000Z"}).encode()
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        produce_lines(kafka_bootstrap, setup.settings().topic_journeys, [poison])
        letters = len(replay.dead_letters) + 1
        wait_until(
            lambda: count(setup, "SELECT count() FROM touchpoint_events FINAL") == len(ids)
            and count(setup, "SELECT count() FROM dead_letters FINAL") == letters,
            300, f"{len(ids)} events and {letters} dead letters in ClickHouse",
            worker.log_tail)
        want = journeys_of_replay(replay)
        wait_until(lambda: journeys_in_clickhouse(setup) == want, 120,
                   "journeys in ClickHouse to equal replay",
                   lambda: _diff(setup, want) + worker.log_tail())
        assert journeys_in_clickhouse(setup) == want  # the poison journey is not there
        wait_for_metrics(setup, metrics_of_replay(replay), 180)
        assert dead_letter_counts(setup) == reasons | {"clickhouse_rejected": 1}
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
