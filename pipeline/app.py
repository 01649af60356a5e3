"""The Faust worker: thin agents around the core (pipeline.stream) and the ClickHouse sink.

    cx.touchpoints --touchpoints agent--> cx.journeys, cx.dead-letters, <app>-contributions
    <app>-contributions --segments agent--> cx.metrics, cx.alerts
    output topics --ClickHouse sink--> tables

Each agent keeps its core state in a plain Faust table (RocksDB, changelog topic) holding JSON
dicts, never in Faust's windowed tables (DESIGN.md 2). Processing is at least once: Faust flushes
the producer (changelog writes and outputs) before it commits offsets, so state is never behind
the committed offsets, and the stage processors make every re-read harmless (see
pipeline/stream/partition.py). Faust's own exactly_once mode is not used: its transactional path
loses or duplicates table updates after SIGKILL (faust-streaming #323, #517; robinhood #340);
the kill -9 tests in tests/integration prove this mechanism instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.scoring import ScoringRules
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink
from pipeline.storage.warehouse import Warehouse, connect
from pipeline.stream import messages
from pipeline.stream.partition import PartitionProcessor, StageOneOutput, coalesce
from pipeline.stream.segments import SegmentStage
from pipeline.stream.topics import contributions_topic

log = logging.getLogger(__name__)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def faust_credentials(settings: Settings) -> Any:
    if not settings.kafka_sasl_mechanism:
        return None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=None,
    )


def create_app(
    settings: Settings | None = None,
    *,
    warehouse: Callable[[], Warehouse] | None = None,
    metrics: WorkerMetrics | None = None,
) -> faust.App:
    s = settings or Settings.from_env()
    core = s.core_config()
    rules = ScoringRules.load(core.journeys.scoring_rules_path)
    privacy = PersonalData.from_settings(s)
    stats = metrics or WorkerMetrics.create()
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{host}" for host in s.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(s),
        store="rocksdb://",
        datadir=s.data_dir,
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=s.web_port,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
    )
    # Faust's stubs are loose: wire it through an Any-typed handle.
    fapp: Any = app

    def raw_topic(name: str, partitions: int) -> Any:
        return fapp.topic(
            name, partitions=partitions, key_serializer="raw", value_serializer="raw"
        )

    touchpoints = raw_topic(s.topic_touchpoints, s.partitions)
    dead_letters = raw_topic(s.topic_dead_letters, s.partitions)
    journeys = raw_topic(s.topic_journeys, s.partitions)
    metric_topic = raw_topic(s.topic_metrics, s.partitions)
    alerts = raw_topic(s.topic_alerts, 1)
    contributions = raw_topic(contributions_topic(s), s.partitions)
    journey_state = fapp.Table("journey-state", partitions=s.partitions)
    segment_state = fapp.Table("segment-state", partitions=s.partitions)

    stage_one: dict[int, PartitionProcessor] = {}
    stage_two: dict[int, SegmentStage] = {}

    async def forget_revoked(_app: Any, revoked: Any, **kwargs: Any) -> None:
        # A partition that moves away (and perhaps comes back) is rebuilt from its table.
        for tp in revoked:
            if tp.topic == s.topic_touchpoints:
                stage_one.pop(tp.partition, None)
            elif tp.topic == contributions.get_topic_name():
                stage_two.pop(tp.partition, None)

    fapp.on_partitions_revoked.connect(forget_revoked)

    async def send_stage_one(out: StageOneOutput, partition: int) -> None:
        for record in out.journeys:
            await journeys.send(key=record.journey_id.encode(), value=_json(record.to_dict()))
            if record.status == "closed":
                stats.journeys_closed.labels(record.close_reason).inc()
        stats.records_out.labels(s.topic_journeys).inc(len(out.journeys))
        by_segment: dict[str, list[dict[str, Any]]] = {}
        for key, message in out.contributions:
            by_segment.setdefault(key, []).append(message)
        for key, items in by_segment.items():
            await contributions.send(key=key.encode(), value=_json(messages.batch(items)))
        if out.watermark is not None:
            for target in range(s.partitions):
                await contributions.send(
                    value=_json(messages.watermark(partition, out.watermark)), partition=target
                )

    async def processor(partition: int) -> PartitionProcessor:
        proc = stage_one.get(partition)
        if proc is None:
            # First event of a partition since start or since it moved here: restore its state
            # and re-send every journey's current output (it may have died with a crash).
            proc = stage_one[partition] = PartitionProcessor(partition, core, rules)
            restored = proc.load(
                (k, v["s"]) for k, v in journey_state.items() if v.get("p") == partition
            )
            await send_stage_one(restored, partition)
        return proc

    async def touchpoint_agent(stream: Any) -> None:
        # Batches: Faust acks the events of a batch only after this body has handled it (state
        # written, outputs sent), so a commit never covers an event whose state is not written.
        async for batch in stream.take_events(s.stream_batch_events, within=0.05):
            by_partition: dict[int, list[StageOneOutput]] = {}
            last_event: dict[int, Any] = {}
            for event in batch:
                last_event[event.message.partition] = event
                message = event.message
                partition, offset, value = message.partition, message.offset, event.value or b""
                proc = await processor(partition)
                try:
                    parsed = privacy.scrub(parse_event(value, max_bytes=s.max_event_bytes))
                except Rejected as rejected:
                    letter = DeadLetter.from_rejection(
                        rejected, original=value, source_topic=s.topic_touchpoints,
                        source_partition=partition, source_offset=offset,
                    )
                    await dead_letters.send(key=None, value=letter.to_json())
                    stats.dead_letters.labels(rejected.reason).inc()
                    continue
                out = proc.process(parsed)
                if out.reject is not None:
                    letter = proc.late_letter(parsed, value, s.topic_touchpoints, offset)
                    await dead_letters.send(key=None, value=letter.to_json())
                    stats.dead_letters.labels(out.reject).inc()
                by_partition.setdefault(partition, []).append(out)
            stats.events_in.labels(s.topic_touchpoints).inc(len(batch))
            stats.last_event_time.set(time.time())
            for partition, outputs in by_partition.items():
                # State first: it must reach the changelog before the offsets are committed.
                # Faust files a table write under the partition of the "current event".
                stream._set_current_event(last_event[partition])
                for key, state in stage_one[partition].dirty_state():
                    if state is None:
                        journey_state.pop(key, None)
                    else:
                        journey_state[key] = {"p": partition, "s": state}
                await send_stage_one(coalesce(outputs), partition)
            last = batch[-1].message
            stats.journeys_open.set(sum(len(p.tracker) for p in stage_one.values()))
            stats.consumer_lag.labels(last.tp.topic, str(last.tp.partition)).set(
                max(0, app.consumer.highwater(last.tp) - last.offset - 1)
            )

    async def segment_agent(stream: Any) -> None:
        async for batch in stream.take_events(s.stream_batch_events, within=0.05):
            by_partition: dict[int, list[dict[str, Any]]] = {}
            last_event: dict[int, Any] = {}
            for event in batch:
                last_event[event.message.partition] = event
                by_partition.setdefault(event.message.partition, []).append(
                    json.loads(event.value)
                )
            for partition, items in by_partition.items():
                stream._set_current_event(last_event[partition])
                stage = stage_two.get(partition)
                if stage is None:
                    stage = stage_two[partition] = SegmentStage(core)
                    stage.load(
                        (k, v["s"]) for k, v in segment_state.items() if v.get("p") == partition
                    )
                out = stage.process_batch(items)
                for key, state in stage.dirty_state():
                    if state is None:
                        segment_state.pop(key, None)
                    else:
                        segment_state[key] = {"p": partition, "s": state}
                for record in out.metrics:
                    key = f"{record.metric}|{record.segment_dim}|{record.segment_value}"
                    await metric_topic.send(key=key.encode(), value=_json(record.to_dict()))
                for alert in out.alerts:
                    await alerts.send(key=alert.alert_id.encode(), value=_json(alert.to_dict()))
            firing: dict[str, int] = {}
            for stage in stage_two.values():
                for a in stage.detector.firing():
                    firing[a.metric] = firing.get(a.metric, 0) + 1
            for metric in ("nps", "ces", "csat", "negative_end"):
                stats.alerts_firing.labels(metric).set(firing.get(metric, 0))

    sink = ClickHouseSink(
        s, warehouse or (lambda: connect(s.clickhouse_url, chdb_path=s.chdb_path,
                                         database=s.clickhouse_database)),
        stats,
    )

    async def run_sink() -> None:
        await sink.run()

    async def serve_metrics() -> None:
        if s.metrics_port:
            stats.serve(s.metrics_port)

    fapp.agent(touchpoints, name="touchpoints")(touchpoint_agent)
    fapp.agent(contributions, name="segments")(segment_agent)
    fapp.task(run_sink)
    fapp.task(serve_metrics)

    fapp.peakend_sink = sink
    fapp.peakend_metrics = stats
    return app
