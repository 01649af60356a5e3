"""Records another writer leaves on the worker's internal topics (`<app>-contributions`,
`-followup-inputs`, `-claims`), sent with Kafka's own console producer before and after a
generated file: each is a dead letter `unreadable` in ClickHouse, naming its topic and offset,
and the journeys, metrics, follow-up cases and other dead letters equal `peakend replay`'s (the
stage-two agents failed on such a record at every restart before: pipeline/stream/layout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.stream.topics import (
    claims_topic,
    contributions_topic,
    ensure_topics,
    followup_inputs_topic,
)
from tests.integration.test_followups_stream import _diff as cases_diff
from tests.integration.test_followups_stream import cases_in_clickhouse, cases_of_replay
from tests.integration.test_stream_end_to_end import generate, wait_for_results
from tests.integration.test_unkeyed_input import console_produce
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    dead_letter_counts,
    metrics_of_replay,
    produce_lines,
    replay_records,
    stream_setup,
    wait_for_metrics,
    wait_until,
)
from tests.unit.stream.test_agents import UNREADABLE

pytestmark = pytest.mark.integration


def test_foreign_records_on_internal_topics_are_dead_letters_and_the_rest_equals_replay(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    settings = setup.settings()
    topics = {"app-contributions": contributions_topic(settings),
              "app-followup-inputs": followup_inputs_topic(settings),
              "app-claims": claims_topic(settings)}
    # one record per line for the console producer: the records without a line break
    junk = {topics[name]: [value for value in values if b"\n" not in value]
            for name, values in UNREADABLE.items()}
    lines = generate(tmp_path, 2000, seed=23)
    replay = replay_records(lines, setup.partitions, settings)
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        ensure_topics(settings)
        for topic, values in junk.items():
            console_produce(kafka_bootstrap, topic, values[:len(values) // 2], None)
        produce_lines(kafka_bootstrap, setup.topic, lines)
        for topic, values in junk.items():
            console_produce(kafka_bootstrap, topic, values[len(values) // 2:], None)
        sent = sum(len(values) for values in junk.values())

        want_letters: dict[str, int] = {"unreadable": sent}
        for letter in replay.dead_letters:
            want_letters[letter.reason] = want_letters.get(letter.reason, 0) + 1
        wait_until(lambda: dead_letter_counts(setup) == want_letters, 240,
                   f"dead letters {want_letters}",
                   lambda: f"{dead_letter_counts(setup)}\n{worker.log_tail()}")
        wh = setup.warehouse()
        try:
            where = wh.query("SELECT source_topic, count() FROM dead_letters FINAL "
                             "WHERE reason = 'unreadable' GROUP BY source_topic")
            errors = [r[0] for r in wh.query(
                "SELECT error FROM dead_letters FINAL WHERE reason = 'unreadable'")]
        finally:
            wh.close()
        assert dict(where) == {topic: len(values) for topic, values in junk.items()}
        assert all("cannot read this record of" in e and "none of it is applied" in e
                   for e in errors), errors
        # the rest: what a run without the foreign records gives
        wait_for_results(setup, [worker], lines, extra_letters=sent)
        wait_for_metrics(setup, metrics_of_replay(replay), 120)
        want_cases = cases_of_replay(lines, setup)
        wait_until(lambda: cases_in_clickhouse(setup) == want_cases, 120,
                   "follow-up cases in ClickHouse to equal replay",
                   lambda: cases_diff(cases_in_clickhouse(setup), want_cases)
                   + worker.log_tail())
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
