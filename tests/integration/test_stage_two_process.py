"""Stage two in a process of its own (`PEAKEND_STAGE_TWO_PROCESS=true`,
pipeline/stream/stage_two.py) on the real broker and ClickHouse server: the tables equal
`peakend replay` and the worker's /metrics counts both processes; switching it on keeps the
state the one app wrote; a SIGKILL of the worker takes the child with it and loses nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    assert_worker_metrics,
    generate,
    wait_for_results,
)
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    StreamSetup,
    Worker,
    count,
    produce_lines,
    stream_setup,
    wait_until,
)

pytestmark = pytest.mark.integration

APART = {"PEAKEND_STAGE_TWO_PROCESS": "true"}


def children(pid: int) -> dict[int, str]:
    """The worker's child processes: pid -> the `peakend` command each runs."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            found[int(child)] = next((a.decode() for a in args
                                      if a in (b"entry", b"sink", b"stage-two")), "?")
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"  # exited, not yet reaped by its new parent


def started_apart(setup: StreamSetup, tmp_path: Path) -> tuple[Worker, int]:
    """A worker with stage two apart, once its stage-two child runs: the worker and its pid."""
    worker = Worker(setup, tmp_path, "a")
    wait_until(lambda: "stage-two" in children(worker.proc.pid).values(), 60,
               "the stage-two child", worker.log_tail)
    return worker, next(pid for pid, what in children(worker.proc.pid).items()
                        if what == "stage-two")


def test_stage_two_apart_equals_replay_with_one_metrics_page(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4, **APART)
    lines = generate(tmp_path, 3000, seed=21)
    worker, _ = started_apart(setup, tmp_path)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        wait_for_results(setup, [worker], lines)
        assert_same_as_replay(setup, lines)
        assert worker.alive(), worker.log_tail()
        # the follow-up cases are counted by the child: the worker's page shows them
        assert_worker_metrics(worker, setup, lines)
        applied = {dict(labels)["stage"] for (name, labels), value
                   in worker.metric_samples().items()
                   if name == "peakend_stage_records_applied_total" and value > 0}
        assert {"journeys", "segments", "followups"} <= applied
    finally:
        worker.stop()


def test_switching_stage_two_apart_keeps_the_state_of_the_one_app(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    lines = generate(tmp_path, 4000, seed=22)
    # every other line first: the buckets and cases of the first run get events again in the
    # second, which counts them right only from the state the first run wrote
    first, second = lines[::2], lines[1::2]
    worker = Worker(setup, tmp_path, "a")
    try:
        produce_lines(kafka_bootstrap, setup.topic, first)
        wait_for_results(setup, [worker], first)
    finally:
        worker.stop()
    # the same deployment with stage two apart: its own app and state directory, rebuilt from
    # the changelogs the one app wrote (the buckets and cases of the first half)
    setup.env.update(APART)
    worker = Worker(setup, tmp_path, "a")
    try:
        produce_lines(kafka_bootstrap, setup.topic, second)
        wait_for_results(setup, [worker], first + second, timeout=180)
        assert_same_as_replay(setup, first + second)
    finally:
        worker.stop()
    # stage two's app wrote to the one app's changelogs, and made none of its own (the
    # re-sent contributions of stage one's restore rebuild a day of buckets either way; the
    # follow-up cases and drop series of the weeks before live only in these changelogs)
    app = setup.env["PEAKEND_APP_ID"]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert {t for t in topics if t.startswith(app) and t.endswith("-changelog")} == {
        f"{app}-{table}-changelog" for table in
        ("journey-state", "segment-state", "followup-state", "claim-state")}


def test_a_sigkill_of_the_worker_takes_stage_two_with_it_and_loses_nothing(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4, **APART)
    lines = generate(tmp_path, 6000, seed=23)
    worker, stage_two = started_apart(setup, tmp_path)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        wait_until(lambda: count(setup, "SELECT count() FROM touchpoint_events") > 500, 90,
                   "the worker to be mid-run", worker.log_tail)
        worker.kill9()
        wait_until(lambda: gone(stage_two), 60, "the stage-two child to exit", worker.log_tail)
        time.sleep(1)
        worker = Worker(setup, tmp_path, "a")  # same state directories, like a restart
        wait_for_results(setup, [worker], lines, timeout=180)
        assert_same_as_replay(setup, lines)
    finally:
        worker.stop()
