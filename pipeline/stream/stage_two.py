"""Stage two (the segments, follow-ups and claims agents) in a process of its own.

Why: one Python process ran every agent, and it bounds the worker's rate. While a backlog
drains, the entry stage and the sink are done early and the worker alone holds a core, the
other mostly idle; and the one process holds every stage's state, a heap that every stage reads
out of cache (docs/streaming.md, thirtieth round: a prototype ran three days of event time 1.36
times as fast, with less CPU per event). So by default (`PEAKEND_STAGE_TWO_PROCESS=true`)
stage two runs as a child of the worker (`peakend stage-two`, started, restarted and stopped as
the entry stage and the sink are: `pipeline.child_process`), a second Faust app built by the same
`pipeline.app.build_worker` with `StageRole.TWO`:

- its own consumer group, `<app id>-stage-two` (the Faust app's id), which reads and commits
  the stage-two bus topics, purges them (`BusPurger`) and is what the lag reader asks about them
  (`pipeline.stream.lag.consumer_groups`);
- the same changelog topics as the one app (`<app id>-<table>-changelog`, `changelog_prefix`
  in `faust_private.StoreHookTable`), so switching keeps the state; its own state directory
  (`<PEAKEND_DATA_DIR>/stage-two`), rebuilt from them;
- its metrics served on a loopback port and merged into the worker's `/metrics`
  (`MergedChildMetrics`): the families both processes have are summed sample by sample, so
  dashboards and alert rules read one worker, as they do with one process.

The worker's own app (`StageRole.ONE`) runs the journeys agent, the entry stage and the sink.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pipeline.child_process import ChildProcess, child_metric_families
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings

# How long an orphaned stage-two process may take to stop (as `ChildProcess.stop` waits): Faust's
# shutdown delivers, writes and commits what it holds (`exit_when_orphaned`).
ORPHAN_GRACE_SECONDS = 20.0

# The WorkerMetrics families a stage-two process may change (its agents, outputs, heap trim and
# bus purge); the worker's /metrics shows them summed over both processes.
STAGE_TWO_METRIC_ATTRIBUTES = (
    "dead_letters", "records_out", "alerts_firing", "followup_cases", "consumer_lag",
    "stage_records_applied", "stage_records_read_again", "heap_trims", "heap_released_bytes",
    "bus_purges", "bus_records_purged",
)


class StageRole(enum.Enum):
    """Which agents one Faust app of the worker runs."""

    ALL = "all"  # every agent in one app (PEAKEND_STAGE_TWO_PROCESS=false, or embedded chdb)
    ONE = "one"  # the worker's app by default: the journeys agent (+ entry, sink, the child below)
    TWO = "two"  # the child's app: segments, follow-ups, claims

    @property
    def runs_one(self) -> bool:
        return self is not StageRole.TWO

    @property
    def runs_two(self) -> bool:
        return self is not StageRole.ONE

    def app_id(self, settings: Settings) -> str:
        """The Faust app's id, which is also its consumer group."""
        return stage_two_group(settings) if self is StageRole.TWO else settings.app_id

    @classmethod
    def of(cls, settings: Settings, *, embedded: bool) -> StageRole:
        """The worker's own role: ONE when stage two runs as a child (not with embedded chdb,
        which one process alone may open)."""
        return cls.ONE if settings.stage_two_process and not embedded else cls.ALL


def stage_two_group(settings: Settings) -> str:
    return f"{settings.app_id}-stage-two"


def _merge(own: Any, child: Any | None) -> Any:
    """`own` (a family of this process) with the same family of the child added: samples of
    the same name and labels summed, except the `_created` times (this process's kept)."""
    if child is None:
        return own
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for sample in own.samples:
        totals[(sample.name, tuple(sorted(sample.labels.items())))] = sample
    for sample in child.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        held = totals.get(key)
        if held is None:
            totals[key] = sample
        elif not sample.name.endswith("_created"):
            totals[key] = held._replace(value=held.value + sample.value)
    own.samples = list(totals.values())
    return own


class MergedChildMetrics:
    """A collector for the worker's registry in place of `families`: each collected here and
    summed with the same family read from the child's /metrics at every scrape (this process's
    alone while the child is not up)."""

    def __init__(self, families: Iterable[Any], port: Callable[[], int]) -> None:
        self.families = list(families)
        self.port = port  # the child's port at the time of a scrape

    def describe(self) -> list[Any]:
        return []

    def child_families(self) -> dict[str, Any]:
        return child_metric_families(self.port())

    def collect(self) -> Iterator[Any]:
        child = self.child_families()
        for collector in self.families:
            for family in collector.collect():
                yield _merge(family, child.get(family.name))


class StageTwoProcess(ChildProcess):
    """Runs `peakend stage-two` as a child of the worker; the worker's /metrics merges the
    child's (`MergedChildMetrics`)."""

    def __init__(self, metrics: WorkerMetrics, data_dir: str) -> None:
        # A state directory of its own (RocksDB locks each partition's database for one process).
        super().__init__("stage-two", env={"PEAKEND_DATA_DIR": f"{data_dir}/stage-two"},
                         serves_metrics=True)
        registry = metrics.registry
        families = [getattr(metrics, name) for name in STAGE_TWO_METRIC_ATTRIBUTES]
        for family in families:
            with contextlib.suppress(KeyError):
                registry.unregister(family)
        registry.register(MergedChildMetrics(families, lambda: self.metrics_port))
