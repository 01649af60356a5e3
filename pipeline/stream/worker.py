"""What the worker runs beside its agents, and the typed handle on a built worker.

- `Revocations`: on a rebalance, outputs delivered before partitions are given up, and the
  processors of the partitions that left forgotten (rebuilt from their table if they return);
- `FlushBeforeCommit`: a Faust sensor that queues the waiting outputs before every commit;
- `WorkerTasks`: the entry stage, the ClickHouse sink (a child process, or in this one), stage
  two's child process when it runs apart (pipeline/stream/stage_two.py), the
  metrics endpoint, the 0.2 s output flush, the heap trim every 30 s, the bus topics' purge
  (pipeline/stream/bus_purge.py) and the delivery before shutdown (which also closes the
  purge's admin client);
- `EntryStats`: the entry stage's counts in the worker's metrics;
- `Worker`: what `pipeline.app.build_worker` built (the Faust app, the agents, the sink...),
  for the CLI and tests to read instead of attributes set on the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust

from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink, SinkProcess
from pipeline.stream.agent_loop import StageAgent
from pipeline.stream.agents import ClaimsAgent, FollowupsAgent, JourneysAgent, SegmentsAgent
from pipeline.stream.bus_purge import BusPurger
from pipeline.stream.entry import EntryStage, Routed
from pipeline.stream.entry_process import EntryProcess
from pipeline.stream.flush import OutputFlusher
from pipeline.stream.heap import HeapTrimmer
from pipeline.stream.stage_two import StageTwoProcess
from pipeline.stream.state_writer import StateDelivery

log = logging.getLogger(__name__)


class EntryStats:
    """The entry stage's counts in the worker's metrics."""

    def __init__(self, stats: WorkerMetrics, topic: str) -> None:
        self.stats = stats
        self.topic = topic

    def entry_read(self, routed: Routed) -> None:
        self.add(routed.records, Counter(reason for reason, _ in routed.dead_letters),
                 time.time())

    def add(self, records: int, dead_letters: Mapping[str, int], at: float) -> None:
        """`records` read, of which `dead_letters` by reason, the last read at `at` (unix
        seconds): from this process's entry stage or its child's report."""
        self.stats.events_in.labels(self.topic).inc(records)
        for reason, count in dead_letters.items():
            self.stats.dead_letters.labels(reason).inc(count)
        self.stats.last_event_time.set(at)

    def entry_lag(self, partition: int, lag: int) -> None:
        self.stats.consumer_lag.labels(self.topic, str(partition)).set(lag)

    def entry_expired(self, partition: int, records: int) -> None:
        self.stats.input_expired.labels(self.topic).inc(records)


class Revocations:
    """Partitions that move away (and perhaps come back) are rebuilt from their table; their
    outputs are delivered first. Connected to Faust's `on_partitions_revoked`."""

    def __init__(self, outputs: OutputFlusher, agent_of_topic: dict[str, StageAgent]) -> None:
        self.outputs = outputs
        self.agent_of_topic = agent_of_topic  # input topic name -> the agent reading it

    async def on_revoked(self, _app: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
        await self.outputs.flush_and_deliver()
        for tp in revoked:
            agent = self.agent_of_topic.get(tp.topic)
            if agent is not None:
                agent.forget(tp.partition)


class FlushBeforeCommit(faust.Sensor):
    """Queues the waiting outputs before every commit (Faust flushes its producer, then
    commits; the agents' own deliveries cover every acked event)."""

    def __init__(self, outputs: OutputFlusher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outputs = outputs

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.outputs.flush()


class WorkerTasks:
    """The worker's side tasks, each registered with Faust by `build_worker`."""

    def __init__(self, settings: Settings, *, outputs: OutputFlusher,
                 entry: EntryStage | EntryProcess | None, sink: ClickHouseSink | None,
                 sink_child: SinkProcess | None, stats: WorkerMetrics,
                 state: StateDelivery | None = None,
                 bus_purger: BusPurger | None = None,
                 stage_two: StageTwoProcess | None = None) -> None:
        self.settings = settings
        self.outputs = outputs
        self.state = state  # the state tables' changelog delivery (their markers at shutdown)
        # The entry stage runs in its own process (`EntryProcess`) unless told not to or with
        # embedded chdb: then in this one (`EntryStage`), and this worker's stage one takes its
        # events back without a decode (the Handoff). Only the one that runs is built.
        self.entry = entry
        self.sink = sink
        # The sink runs in its own process (core, event loop) when it talks to a ClickHouse
        # server; embedded chdb can be opened by one process only, so then it stays in this one.
        self.sink_child = sink_child
        self.stats = stats
        self.heap = HeapTrimmer()
        self.bus_purger = bus_purger
        # Stage two's agents in a child process of their own (stage_two.py), or in this one.
        # A stage-two process itself has no entry stage, sink or child (all None).
        self.stage_two = stage_two
        self._metrics_served = False

    async def run_entry(self) -> None:
        if self.entry is not None:
            await self.entry.run()

    async def run_sink(self) -> None:
        if self.sink_child is not None:
            await self.sink_child.run()
        elif self.sink is not None:
            await self.sink.run()

    async def run_stage_two(self) -> None:
        if self.stage_two is not None:
            await self.stage_two.run()

    def serve_metrics(self) -> None:
        """/metrics on PEAKEND_METRICS_PORT (once). The commands call it before Faust starts,
        so that a port that cannot be bound is one line (`SettingsError`), not a crash with a
        traceback inside Faust; the app's own task (`serve_metrics_task`) covers apps started
        otherwise."""
        s = self.settings
        if s.metrics_port and not self._metrics_served:
            self.stats.serve(s.metrics_port, certfile=s.metrics_tls_certfile,
                             keyfile=s.metrics_tls_keyfile)
            self._metrics_served = True

    async def serve_metrics_task(self) -> None:
        self.serve_metrics()

    async def flush_idle(self) -> None:
        """Every 0.2 s: outputs never wait for the next batch of an idle agent."""
        await self.outputs.flush_and_deliver()

    async def trim_heap(self) -> None:
        """Every `heap.TRIM_SECONDS`: RSS follows what the worker holds, not its last burst."""
        released = await asyncio.get_running_loop().run_in_executor(None, self.heap.trim)
        self.stats.heap_trims.inc()
        self.stats.heap_released_bytes.inc(released)

    async def purge_bus(self) -> None:
        """Every `PEAKEND_BUS_PURGE_SECONDS`, on the group's leader: the bus topics' records
        below the committed offsets deleted (a failure is counted and logged, and tried again
        at the next tick)."""
        if self.bus_purger is None:
            return
        try:
            deleted = await asyncio.get_running_loop().run_in_executor(
                None, self.bus_purger.purge)
        except Exception as exc:  # the broker away: the next tick tries again
            self.stats.bus_purges.labels("failed").inc()
            log.warning("bus topics not purged: %s: %s", type(exc).__name__, exc)
            return
        self.stats.bus_purges.labels("ok").inc()
        self.stats.bus_records_purged.inc(deleted)

    async def deliver_before_shutdown(self, _app: Any, **kwargs: Any) -> None:
        await self.outputs.stop()
        if self.state is not None:
            self.state.confirm_all()
        if self.bus_purger is not None:
            self.bus_purger.stop()


@dataclass(frozen=True, slots=True)
class Worker:
    """A built worker: the Faust app to run and the parts wired into it."""

    app: faust.App
    journeys: JourneysAgent | None  # None: an app that does not run that agent (stage_two.py)
    segments: SegmentsAgent | None
    followups: FollowupsAgent | None
    claims: ClaimsAgent | None
    outputs: OutputFlusher
    tasks: WorkerTasks
    sink: ClickHouseSink | None  # None in a stage-two process
    metrics: WorkerMetrics
