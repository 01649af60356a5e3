"""All configuration, read from environment variables with documented defaults.

Every knob of peakend is a `PEAKEND_*` variable listed in `VARIABLES` below; `peakend settings`
prints the effective values (secrets masked). The pure core takes plain config objects
(`pipeline.core.config`), built here from the environment; it reads the environment only for
the two variables that choose its compiled build, once, when it is first imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    doc: str
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    # Kafka
    Variable(
        "PEAKEND_KAFKA_BOOTSTRAP", "localhost:9092", "Kafka bootstrap servers, comma separated."
    ),
    Variable(
        "PEAKEND_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; passed to every Kafka client.",
    ),
    Variable(
        "PEAKEND_KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)."
    ),
    Variable("PEAKEND_KAFKA_SASL_USERNAME", "", "SASL user name."),
    Variable("PEAKEND_KAFKA_SASL_PASSWORD", "", "SASL password.", secret=True),
    Variable("PEAKEND_KAFKA_SSL_CAFILE", "", "CA bundle for TLS to the brokers."),
    Variable("PEAKEND_TOPIC_TOUCHPOINTS", "cx.touchpoints", "Input topic of touchpoint events."),
    Variable("PEAKEND_TOPIC_DEAD_LETTERS", "cx.dead-letters", "Rejected input with its reason."),
    Variable("PEAKEND_TOPIC_JOURNEYS", "cx.journeys", "Journey moments (peak-end) updates."),
    Variable("PEAKEND_TOPIC_METRICS", "cx.metrics", "NPS/CES/CSAT bucket updates."),
    Variable("PEAKEND_TOPIC_ALERTS", "cx.alerts", "Experience-drop alerts."),
    Variable("PEAKEND_PARTITIONS", "12", "Partitions of the input topic; bounds the worker count."),
    Variable(
        "PEAKEND_MAX_EVENT_BYTES", "65536", "Larger input records go to dead letters (too_large)."
    ),
    # ClickHouse
    Variable(
        "PEAKEND_CLICKHOUSE_URL",
        "",
        "clickhouse://user:password@host:9000/db of the writer; empty: embedded chdb.",
    ),
    Variable(
        "PEAKEND_CLICKHOUSE_READER_URL",
        "",
        "URL of the read-only user (analysts, Grafana, `peakend demo` reports).",
    ),
    Variable("PEAKEND_CHDB_PATH", ".stack/chdb", "Data directory of the embedded chdb engine."),
    Variable("PEAKEND_CLICKHOUSE_DATABASE", "peakend", "Database holding the peakend tables."),
    Variable(
        "PEAKEND_CLICKHOUSE_CLUSTER",
        "",
        "Cluster name: when set, DDL creates Replicated tables behind Distributed ones.",
    ),
    Variable("PEAKEND_SINK_BATCH_ROWS", "10000", "ClickHouse sink: flush after this many rows."),
    Variable("PEAKEND_SINK_BATCH_SECONDS", "1.0", "ClickHouse sink: flush at least this often."),
    Variable(
        "PEAKEND_SINK_PROCESS",
        "true",
        "Run the worker's ClickHouse sink as a child process (`peakend sink`: its own core and "
        "event loop); false, or embedded chdb: inside the worker process.",
    ),
    # Journeys
    Variable(
        "PEAKEND_IDLE_GAP_SECONDS", "1800", "Customer-keyed journeys split after this idle gap."
    ),
    Variable("PEAKEND_MAX_JOURNEY_SECONDS", "2592000", "A journey closes at this length (30 d)."),
    Variable(
        "PEAKEND_ALLOWED_LATENESS_SECONDS",
        "86400",
        "Events this far behind stream time still update results; later ones are dead letters.",
    ),
    Variable(
        "PEAKEND_END_WINDOW_SECONDS",
        "0",
        "end = mean of the moments in the last N seconds; 0: last moment.",
    ),
    # Survey windows
    Variable("PEAKEND_BUCKET_SECONDS", "60", "Width of the fixed metric buckets."),
    Variable(
        "PEAKEND_SEGMENT_ATTRIBUTES",
        "region,tier",
        "Attribute keys that become segments beside all/touchpoint/channel/stage.",
    ),
    # Drop detection
    Variable("PEAKEND_ALERT_WINDOW_SECONDS", "3600", "Current window of drop detection."),
    Variable("PEAKEND_ALERT_BASELINE_SECONDS", "604800", "Baseline window before it (7 d)."),
    Variable("PEAKEND_ALERT_MIN_N", "100", "Answers the current window needs before it can alert."),
    Variable("PEAKEND_ALERT_P_VALUE", "0.01", "Significance level of the two-sample test."),
    Variable("PEAKEND_ALERT_MIN_NPS_DROP", "10", "Minimum NPS drop in points."),
    Variable("PEAKEND_ALERT_MIN_CES_DROP", "0.5", "Minimum CES drop on the 1-7 scale."),
    Variable("PEAKEND_ALERT_MIN_CSAT_DROP", "0.10", "Minimum drop of the CSAT satisfied share."),
    Variable(
        "PEAKEND_ALERT_MIN_NEGATIVE_END_RISE", "0.10", "Minimum rise of the negative-end share."
    ),
    Variable(
        "PEAKEND_ALERT_HOLD_SECONDS", "1800", "A firing alert resolves after clearing this long."
    ),
    # Personal data
    Variable(
        "PEAKEND_PSEUDONYMISE_KEY",
        "",
        "HMAC-SHA256 key; when set, customer_id is replaced by its keyed hash everywhere.",
        secret=True,
    ),
    Variable("PEAKEND_KEEP_COMMENTS", "false", "Keep free-text survey comments (personal data)."),
    # Worker
    Variable(
        "PEAKEND_APP_ID", "peakend", "Faust application id (consumer group, changelog prefix)."
    ),
    Variable("PEAKEND_DATA_DIR", ".stack/worker", "Worker state (RocksDB tables)."),
    Variable("PEAKEND_METRICS_PORT", "9108", "Port of the worker's Prometheus /metrics."),
    Variable("PEAKEND_WEB_PORT", "6066", "Port of Faust's web server."),
    Variable(
        "PEAKEND_STREAM_BATCH_EVENTS",
        "1000",
        "Events the worker's agents take per batch (their outputs are coalesced per batch).",
    ),
    Variable(
        "PEAKEND_STREAM_BATCH_SECONDS",
        "0.2",
        "An agent processes a batch once it is full or has waited this long for more events.",
    ),
    # The core's build (read by pipeline/core/__init__.py when the core is first imported)
    Variable(
        "PEAKEND_PURE_CORE",
        "false",
        "true: run the interpreted core even when its mypyc build (scripts/compile_core.py, run "
        "by make setup) is current. Same results, slower; `make setup` then skips compiling.",
    ),
    Variable(
        "PEAKEND_CORE_BUILD",
        "",
        "Directory of the compiled core (empty: build/core-compiled in the source tree). A build "
        "whose manifest does not match the sources is never used.",
    ),
)

_BY_NAME = {v.name: v for v in VARIABLES}


def mask_url_password(text: str) -> str:
    """A URL with its password replaced, for printing.

    >>> mask_url_password("clickhouse://peakend_writer:s3cret@127.0.0.1:9000/peakend")
    'clickhouse://peakend_writer:***@127.0.0.1:9000/peakend'
    >>> mask_url_password("localhost:9092")
    'localhost:9092'
    """
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*@", r"\1***@", text)


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, _BY_NAME[name].default)


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "localhost:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    topic_touchpoints: str = "cx.touchpoints"
    topic_dead_letters: str = "cx.dead-letters"
    topic_journeys: str = "cx.journeys"
    topic_metrics: str = "cx.metrics"
    topic_alerts: str = "cx.alerts"
    partitions: int = 12
    max_event_bytes: int = 65536
    clickhouse_url: str = field(default="", repr=False)
    clickhouse_reader_url: str = field(default="", repr=False)
    chdb_path: str = ".stack/chdb"
    clickhouse_database: str = "peakend"
    clickhouse_cluster: str = ""
    sink_batch_rows: int = 10000
    sink_batch_seconds: float = 1.0
    sink_process: bool = True
    idle_gap_seconds: float = 1800.0
    max_journey_seconds: float = 2592000.0
    allowed_lateness_seconds: float = 86400.0
    end_window_seconds: float = 0.0
    bucket_seconds: int = 60
    segment_attributes: tuple[str, ...] = ("region", "tier")
    alert_window_seconds: int = 3600
    alert_baseline_seconds: int = 604800
    alert_min_n: int = 100
    alert_p_value: float = 0.01
    alert_min_nps_drop: float = 10.0
    alert_min_ces_drop: float = 0.5
    alert_min_csat_drop: float = 0.10
    alert_min_negative_end_rise: float = 0.10
    alert_hold_seconds: int = 1800
    pseudonymise_key: str = field(default="", repr=False)
    keep_comments: bool = False
    app_id: str = "peakend"
    data_dir: str = ".stack/worker"
    metrics_port: int = 9108
    web_port: int = 6066
    stream_batch_events: int = 1000
    stream_batch_seconds: float = 0.2
    pure_core: bool = False
    core_build: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `PEAKEND_*` variable; unset ones take their documented default.

        >>> Settings.from_env({"PEAKEND_PARTITIONS": "4"}).partitions
        4
        >>> Settings.from_env({}).segment_attributes
        ('region', 'tier')
        """
        source: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = _get(source, "PEAKEND_" + f.name.upper())
            kind: Any = type(f.default)
            try:
                if kind is bool:
                    values[f.name] = _bool(raw)
                elif kind is tuple:
                    values[f.name] = _list(raw)
                else:
                    values[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"PEAKEND_{f.name.upper()}={raw!r}: {exc}") from None
        return cls(**values)

    def kafka_client_options(self) -> dict[str, str]:
        """Security options shared by every Kafka client (kafka-python / aiokafka spelling)."""
        options: dict[str, str] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        return options

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, effective value with secrets masked, doc) for `peakend settings`."""
        rows = []
        for f in fields(self):
            var = _BY_NAME["PEAKEND_" + f.name.upper()]
            value = getattr(self, f.name)
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            if var.secret and shown:
                shown = "***"
            shown = mask_url_password(shown)
            rows.append((var.name, shown, var.doc))
        return rows

    def core_config(self) -> CoreConfig:
        """The pure core's configuration (pipeline.core.config) from these settings.

        >>> Settings.from_env({"PEAKEND_ALERT_MIN_N": "50"}).core_config().drops.min_n
        50
        """
        lateness_ms = round(self.allowed_lateness_seconds * 1000)
        idle_gap_ms = round(self.idle_gap_seconds * 1000)
        return CoreConfig(
            journeys=JourneyConfig(
                idle_gap_ms=idle_gap_ms,
                max_length_ms=round(self.max_journey_seconds * 1000),
                allowed_lateness_ms=lateness_ms,
                end_window_ms=round(self.end_window_seconds * 1000),
                segment_attributes=self.segment_attributes,
            ),
            windows=WindowConfig(
                bucket_ms=self.bucket_seconds * 1000,
                segment_attributes=self.segment_attributes,
                allowed_lateness_ms=lateness_ms,
            ),
            drops=DropConfig(
                window_ms=self.alert_window_seconds * 1000,
                baseline_ms=self.alert_baseline_seconds * 1000,
                min_n=self.alert_min_n,
                min_baseline_n=self.alert_min_n,
                p_value=self.alert_p_value,
                min_nps_drop=self.alert_min_nps_drop,
                min_ces_drop=self.alert_min_ces_drop,
                min_csat_drop=self.alert_min_csat_drop,
                min_negative_end_rise=self.alert_min_negative_end_rise,
                hold_ms=self.alert_hold_seconds * 1000,
                negative_end_delay_ms=idle_gap_ms,
                evaluate_every_ms=self.alert_window_seconds * 1000,
            ),
        )


# Imported last (and only here) so the settings module's own imports stay as they are; the core
# never imports settings, so there is no cycle.
from pipeline.core.config import (  # noqa: E402
    CoreConfig,
    DropConfig,
    JourneyConfig,
    WindowConfig,
)
