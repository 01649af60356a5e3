"""Stage two in a process of its own (pipeline/stream/stage_two.py), without a broker: what each
app runs, the names it keeps, and the worker's /metrics over both processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app import build_worker
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.bus_purge import BusPurger
from pipeline.stream.lag import consumer_groups
from pipeline.stream.stage_two import (
    STAGE_TWO_METRIC_ATTRIBUTES,
    MergedChildMetrics,
    StageRole,
    StageTwoProcess,
    stage_two_group,
)
from pipeline.stream.topics import (
    bus_topics,
    changelog_topics,
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    journey_events_topic,
)
from pipeline.stream.worker import Worker
from tests.support.stream import free_port


def settings(tmp_path: Path, apart: bool) -> Settings:
    return Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path), "PEAKEND_APP_ID": "split",
                              "PEAKEND_STAGE_TWO_PROCESS": "true" if apart else "false"})


def reads(worker: Any) -> set[str]:
    return {topic for agent in worker.app.agents.values() for topic in agent.channel.topics}


def purger_of(worker: Worker) -> BusPurger:
    purger = worker.tasks.bus_purger
    assert purger is not None
    return purger


def purged(worker: Worker) -> tuple[str, set[str]]:
    """The group whose committed offsets the app's bus purge deletes below, and its topics."""
    purger = purger_of(worker)
    return purger.group_id, set(purger.topics)


def changelogs(worker: Any) -> set[str]:
    return {table.changelog_topic.get_topic_name() for table in worker.app.tables.values()}


def test_the_two_apps_split_the_agents_and_keep_the_one_apps_names(tmp_path: Path) -> None:
    s = settings(tmp_path, apart=True)
    one = build_worker(s, migrate=False)  # the worker's own: stage two goes to a child
    two = build_worker(s, migrate=False, role=StageRole.TWO)
    together = build_worker(settings(tmp_path / "all", apart=False), migrate=False)
    assert isinstance(one.tasks.stage_two, StageTwoProcess)
    assert two.tasks.stage_two is None and together.tasks.stage_two is None
    stage_two_topics = {contributions_topic(s), followup_inputs_topic(s), claims_topic(s)}
    assert reads(one) == {journey_events_topic(s)}
    assert reads(two) == stage_two_topics
    assert reads(together) == reads(one) | reads(two)
    # the Faust app's id is its consumer group: the lag reader asks each group about its topics
    assert (one.app.conf.id, two.app.conf.id) == ("split", stage_two_group(s))
    groups = consumer_groups(s)
    assert set(groups[one.app.conf.id]) == reads(one)
    assert set(groups[two.app.conf.id]) == reads(two)
    # each app declares its own tables only, with the changelog topics the one app writes
    assert changelogs(one) | changelogs(two) == changelogs(together) == changelog_topics(s)
    assert not changelogs(one) & changelogs(two)
    assert changelogs(one) == {"split-journey-state-changelog"}
    # each purges the bus topics its own group reads and commits, the journey events below
    # the sink's offsets too (it reads them for touchpoint_events)
    assert purged(one) == ("split", {journey_events_topic(s)})
    assert purged(two) == (stage_two_group(s), stage_two_topics)
    assert purged(together) == ("split", set(bus_topics(s)))
    events_read_by_the_sink = {"split-clickhouse-sink": frozenset({journey_events_topic(s)})}
    assert purger_of(one).other_readers == events_read_by_the_sink
    assert purger_of(together).other_readers == events_read_by_the_sink
    assert purger_of(two).other_readers == {}
    # the child app has no entry stage, sink or child of its own; the worker's has both
    assert two.tasks.entry is None and two.tasks.sink is None and two.sink is None
    assert one.tasks.entry is not None and one.sink is not None
    assert (one.segments, two.journeys) == (None, None)
    # the child's state directory is its own: RocksDB locks a database for one process
    assert one.tasks.stage_two.env["PEAKEND_DATA_DIR"] == f"{tmp_path}/stage-two"


def test_stage_two_runs_apart_by_default_and_inside_when_asked(tmp_path: Path) -> None:
    default = Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path)})
    assert StageRole.of(default, embedded=False) is StageRole.ONE
    assert StageRole.of(settings(tmp_path, apart=False), embedded=False) is StageRole.ALL


def test_embedded_chdb_keeps_every_agent_in_one_process(tmp_path: Path) -> None:
    s = settings(tmp_path, apart=True)
    assert StageRole.of(s, embedded=True) is StageRole.ALL
    assert StageRole.of(s, embedded=False) is StageRole.ONE
    assert StageRole.of(settings(tmp_path, apart=False), embedded=False) is StageRole.ALL


def scrape(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    names = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # one family per name: Prometheus refuses two
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_workers_metrics_sum_both_processes_families(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    child = WorkerMetrics.create()
    port = free_port()
    child.serve(port)
    worker = WorkerMetrics.create()
    families = [getattr(worker, name) for name in STAGE_TWO_METRIC_ATTRIBUTES]
    for family in families:
        worker.registry.unregister(family)
    worker.registry.register(MergedChildMetrics(families, lambda: port))

    worker.dead_letters.labels("late").inc(2)
    child.dead_letters.labels("late").inc(3)
    child.dead_letters.labels("foreign").inc(1)
    worker.stage_records_applied.labels("journeys", "event").inc(10)
    child.stage_records_applied.labels("segments", "contribution").inc(4)
    child.alerts_firing.labels("nps").set(2)
    worker.heap_trims.inc()
    child.heap_trims.inc(2)
    worker.journeys_open.set(7)  # a stage-one family: this process's alone
    child.journeys_open.set(99)
    seen = scrape(worker)
    assert seen[("peakend_dead_letters_total", (("reason", "late"),))] == 5
    assert seen[("peakend_dead_letters_total", (("reason", "foreign"),))] == 1
    assert seen[("peakend_stage_records_applied_total",
                 (("record", "event"), ("stage", "journeys")))] == 10
    assert seen[("peakend_stage_records_applied_total",
                 (("record", "contribution"), ("stage", "segments")))] == 4
    assert seen[("peakend_alerts_firing", (("metric", "nps"),))] == 2
    assert seen[("peakend_heap_trims_total", ())] == 3
    assert seen[("peakend_journeys_open", ())] == 7
    # a created time is a time, not a count: this process's is kept
    created = worker.registry.get_sample_value("peakend_heap_trims_created")
    assert created is not None and seen[("peakend_heap_trims_created", ())] == created

    # the child away (restarting): this process's own counts, nothing lost from the page
    away = free_port()
    worker_alone = MergedChildMetrics(families, lambda: away)
    assert worker_alone.child_families() == {}
    assert {f.name for f in worker_alone.collect()} == {f.name for c in families
                                                        for f in c.collect()}
