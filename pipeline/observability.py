"""The worker's Prometheus metrics: names here are the contract with dashboards/prometheus rules.

All live in one registry so a test can build a fresh one; the worker serves it on
`PEAKEND_METRICS_PORT` (/metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.settings import SettingsError


@dataclass(frozen=True)
class WorkerMetrics:
    registry: CollectorRegistry
    events_in: Counter
    dead_letters: Counter
    journeys_open: Gauge
    journeys_closed: Counter
    records_out: Counter
    sink_batch_rows: Histogram
    sink_insert_seconds: Histogram
    sink_rows: Counter
    sink_insert_failures: Counter
    sink_rejected_rows: Counter
    sink_insert_in_flight: Gauge
    sink_oldest_pending: Gauge
    sink_lag_records: Gauge
    clickhouse_up: Gauge
    kafka_up: Gauge
    consumer_lag: Gauge
    input_expired: Counter
    sink_expired: Counter
    alerts_firing: Gauge
    last_event_time: Gauge
    followup_cases: Counter
    stage_records_applied: Counter
    stage_records_read_again: Counter
    withdrawals_too_late: Counter
    heap_trims: Counter
    heap_released_bytes: Counter
    bus_purges: Counter
    bus_records_purged: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> WorkerMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=reg,
            events_in=Counter(
                "peakend_events_in",
                "Input records read from the touchpoint topic.",
                ["topic"],
                registry=reg,
            ),
            dead_letters=Counter(
                "peakend_dead_letters",
                "Input records sent to dead letters, by reason.",
                ["reason"],
                registry=reg,
            ),
            journeys_open=Gauge(
                "peakend_journeys_open",
                "Journeys held open in this worker's state.",
                registry=reg,
            ),
            journeys_closed=Counter(
                "peakend_journeys_closed",
                "Journeys closed, by close reason.",
                ["reason"],
                registry=reg,
            ),
            records_out=Counter(
                "peakend_records_out",
                "Records emitted to the output topics.",
                ["topic"],
                registry=reg,
            ),
            sink_batch_rows=Histogram(
                "peakend_sink_batch_rows",
                "Rows per ClickHouse insert batch.",
                buckets=(1, 10, 100, 1000, 5000, 10000, 50000),
                registry=reg,
            ),
            sink_insert_seconds=Histogram(
                "peakend_sink_insert_seconds",
                "Latency of one ClickHouse insert batch.",
                ["table"],
                registry=reg,
            ),
            sink_rows=Counter(
                "peakend_sink_rows",
                "Rows inserted into ClickHouse.",
                ["table"],
                registry=reg,
            ),
            sink_insert_failures=Counter(
                "peakend_sink_insert_failures",
                "Failed ClickHouse insert attempts that are retried (ClickHouse unreachable, "
                "timed out, or refusing for a reason of its own).",
                ["table"],
                registry=reg,
            ),
            sink_rejected_rows=Counter(
                "peakend_sink_rejected_rows",
                "Rows ClickHouse refused for their content (isolated from their batch and sent "
                "to dead letters with reason clickhouse_rejected), and records the sink could "
                "not read into rows (reason unreadable).",
                ["table"],
                registry=reg,
            ),
            sink_insert_in_flight=Gauge(
                "peakend_sink_insert_in_flight_seconds",
                "Age of the ClickHouse insert running now (0 when none): a hung insert grows.",
                registry=reg,
            ),
            sink_oldest_pending=Gauge(
                "peakend_sink_oldest_pending_seconds",
                "Age (since it was written to Kafka) of the oldest record the sink read and has "
                "not yet stored and committed (0 when none): the sink's own lag.",
                registry=reg,
            ),
            sink_lag_records=Gauge(
                "peakend_sink_lag_records",
                "Records behind the end of the output topic (partitions assigned to the sink).",
                ["topic"],
                registry=reg,
            ),
            clickhouse_up=Gauge(
                "peakend_clickhouse_up",
                "0 after a connection failure or timeout talking to ClickHouse, 1 once it "
                "answers (an error answer counts as up).",
                registry=reg,
            ),
            kafka_up=Gauge(
                "peakend_kafka_up",
                "1 when the sink fetched the Kafka cluster's metadata within 5 s at its last "
                "probe (every 5 s), else 0.",
                registry=reg,
            ),
            consumer_lag=Gauge(
                "peakend_consumer_lag",
                "Records behind the end of the input partition.",
                ["topic", "partition"],
                registry=reg,
            ),
            input_expired=Counter(
                "peakend_input_records_expired",
                "Input records the topic's retention deleted (or a truncated log lost) before "
                "the entry stage read them: never processed, in no table and no dead letter.",
                ["topic"],
                registry=reg,
            ),
            sink_expired=Counter(
                "peakend_sink_records_expired",
                "Records of an output topic (journeys, metrics, alerts, dead letters) its "
                "retention deleted before the ClickHouse sink read them: in no table.",
                ["topic"],
                registry=reg,
            ),
            alerts_firing=Gauge(
                "peakend_alerts_firing",
                "Experience-drop alerts currently firing.",
                ["metric"],
                registry=reg,
            ),
            last_event_time=Gauge(
                "peakend_last_event_timestamp_seconds",
                "Wall-clock time the worker last read an input record.",
                registry=reg,
            ),
            followup_cases=Counter(
                "peakend_followup_cases",
                "Follow-up case changes (docs/followups.md): opened, closed, withdrawn.",
                ["change", "priority"],
                registry=reg,
            ),
            stage_records_applied=Counter(
                "peakend_stage_records_applied",
                "Records an agent applied whose state it then wrote (counted after the batch's "
                "state write, never for a batch a rebalance dropped), by stage and record: "
                "journeys/event (touchpoint events in batch records), journeys/withdrawal, "
                "segments/contribution, followups/input, claims/claim (each claim of a claims "
                "record).",
                ["stage", "record"],
                registry=reg,
            ),
            stage_records_read_again=Counter(
                "peakend_stage_records_read_again",
                "Input records read again after a crash or a partition move whose state was "
                "already written (the committed offset lags the state): passed over, not judged "
                "again (docs/streaming.md, Exact results). By stage: journeys (batch records), "
                "claims (claims records).",
                ["stage"],
                registry=reg,
            ),
            withdrawals_too_late=Counter(
                "peakend_withdrawals_too_late",
                "Withdrawals of a copy that lost its claim (an event_id sent under two journey "
                "keys with other content) that could not undo all of it, by why: not_held (no "
                "journey of its key holds it any more: evicted), final_bucket (an answer or "
                "negative end of it stays counted in a final bucket). Replay withdraws at once, "
                "so where these count the stream can differ from replay (docs/streaming.md, "
                "Known limits).",
                ["why"],
                registry=reg,
            ),
            heap_trims=Counter(
                "peakend_heap_trims",
                "Times the worker handed glibc's free heap pages back to the system "
                "(pipeline/stream/heap.py, every 30 s).",
                registry=reg,
            ),
            heap_released_bytes=Counter(
                "peakend_heap_released_bytes",
                "Resident memory those trims gave back.",
                registry=reg,
            ),
            bus_purges=Counter(
                "peakend_bus_purges",
                "Deletions of the bus topics' records below the worker group's committed "
                "offsets (pipeline/stream/bus_purge.py), by outcome (ok, failed): failing, the "
                "bus topics grow without limit (they have no retention time).",
                ["outcome"],
                registry=reg,
            ),
            bus_records_purged=Counter(
                "peakend_bus_records_purged",
                "Records of the bus topics those deletions removed (the first after a start "
                "counts from each partition's offset 0).",
                registry=reg,
            ),
        )

    def serve(self, port: int, addr: str = "127.0.0.1", *, certfile: str = "",
              keyfile: str = "") -> None:
        """Expose /metrics on `addr:port` from a background thread; over HTTPS when a
        certificate and its key are given (PEAKEND_METRICS_TLS_CERTFILE/_KEYFILE). A port that
        cannot be bound is a `SettingsError` naming PEAKEND_METRICS_PORT (one line, no
        traceback)."""
        try:
            start_http_server(port, addr=addr, registry=self.registry,
                              certfile=certfile or None, keyfile=keyfile or None)
        except OSError as exc:
            raise SettingsError([f"PEAKEND_METRICS_PORT={port}: cannot serve /metrics on "
                                 f"{addr}:{port}: {exc.strerror or exc}"]) from None
