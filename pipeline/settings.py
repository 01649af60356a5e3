"""All configuration, read from environment variables with documented defaults, checked at start.

Every knob of peakend is a `PEAKEND_*` variable, declared once below as a field of `Settings`
(type, default, constraints, doc, secret flag). Everything else is derived from that declaration:
`VARIABLES`, `Settings.describe()`, `peakend settings [--docs|--markdown]` and the table in
docs/configuration.md (a test keeps it equal). `Settings.from_env()` reads the variables through a
pydantic-settings source and raises `SettingsError`, one line per bad variable naming it, the
value given and what is accepted; every `peakend` command reports it and exits 2.

The pure core takes plain config objects (`pipeline.core.config`), built here by `core_config()`;
it reads the environment only for the two variables that choose its compiled build, once, when it
is first imported.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.urls import WAREHOUSE_URLS, check_warehouse_url, mask_url_password

__all__ = ["VARIABLES", "Settings", "SettingsError", "Variable", "mask_url_password"]

PREFIX = "PEAKEND_"
HOUR_SECONDS = 3600
# Durations stop at ten years: larger values are typing mistakes, and the core adds them to
# epoch milliseconds.
MAX_SECONDS = 10 * 365 * 86400
# The attribute key pattern of schemas/touchpoint-event.v1.json (attributes.propertyNames).
ATTRIBUTE_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Segment dimensions the core always has; an attribute of the same name would be counted twice.
BUILT_IN_DIMENSIONS = ("all", "touchpoint", "channel", "stage")
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # pasted into SQL: plain identifiers only
BOOTSTRAP_SERVER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SettingsError(ValueError):
    """Configuration that cannot work; its text is one line per bad variable, no traceback
    needed: `PEAKEND_X='value': what is accepted`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    secret: bool = False,
    url: bool = False,
    accepts: str = "",
) -> Any:
    """One setting's declaration: default, doc, range, secret flag and, for strings checked by a
    validator of their own, the words that say what they accept (ranges describe themselves)."""
    return Field(
        default,
        description=doc,
        ge=ge,
        gt=gt,
        le=le,
        repr=not (secret or url),  # a URL may hold a password
        allow_inf_nan=False if isinstance(default, float) else None,
        json_schema_extra={"secret": secret, "accepts": accepts},
    )


def seconds(default: float, doc: str, *, zero: bool = False) -> Any:
    """A duration in seconds (a finite number; zero only where it means something)."""
    if zero:
        return setting(float(default), doc, ge=0, le=MAX_SECONDS)
    return setting(float(default), doc, gt=0, le=MAX_SECONDS)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_value(value: Any) -> str:
    """A value as the environment variable would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return _number(value)
    return str(value)


def accepted(info: FieldInfo) -> str:
    """What a setting accepts, from its declaration (used by errors and the docs)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("accepts"):
        return str(extra["accepts"])
    kind = info.annotation
    if kind is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    if get_origin(kind) is Literal:
        choices = [c for c in get_args(kind) if c]
        text = "one of " + ", ".join(choices)
        return text + " or empty" if "" in get_args(kind) else text
    limits: dict[str, str] = {}
    for item in info.metadata:
        for op, attr in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt")):
            if isinstance(item, Ge | Gt | Le | Lt) and hasattr(item, attr):
                limits[op] = _number(float(getattr(item, attr)))
    noun = "an integer" if kind is int else "a number" if kind is float else "text"
    if ">=" in limits and "<=" in limits:
        return f"{noun} from {limits['>=']} to {limits['<=']}"
    return " ".join([noun, " and ".join(f"{op} {v}" for op, v in limits.items())]).strip()


class _Environment(PydanticBaseSettingsSource):
    """The `PEAKEND_*` variables of a mapping (the process environment by default), as raw
    strings: the field validators below parse them, so every variable is read one way."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.env.get(variable_name(field_name)), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            raw, key, _ = self.get_field_value(info, name)
            if raw is not None:
                values[key] = raw
        return values


def variable_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _parse_text(info: FieldInfo, value: str) -> Any:
    """A variable's text as its declared type; ValueError when it is not one."""
    kind = info.annotation
    text = value.strip()
    if kind is bool:
        word = text.lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError
    if kind is int:
        # int() alone would take '1_000' and pydantic '1.0'; a count is digits and nothing else.
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
            raise ValueError
        return int(text)
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError from None  # the error then says what is accepted, not float's words
        if not math.isfinite(number):
            raise ValueError
        return number
    if get_origin(kind) is Literal:
        return text.upper()  # Kafka clients want upper case; accept any
    if get_origin(kind) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """The effective configuration. `Settings(...)` takes values as given (tests); only
    `Settings.from_env()` reads variables."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap: str = setting(
        "localhost:9092", "Kafka bootstrap servers, comma separated.",
        accepts="host:port[,host:port...] with ports from 1 to 65535")
    kafka_security_protocol: SecurityProtocol = setting(
        "PLAINTEXT", "Security protocol of every Kafka client.")
    kafka_sasl_mechanism: SaslMechanism = setting(
        "", "SASL mechanism; required with the SASL_* protocols, empty otherwise.")
    kafka_sasl_username: str = setting("", "SASL user name (required with a SASL mechanism).")
    kafka_sasl_password: str = setting("", "SASL password.", secret=True)
    kafka_ssl_cafile: str = setting("", "CA bundle for TLS to the brokers.")
    topic_touchpoints: str = setting(
        "cx.touchpoints", "Input topic of touchpoint events.", accepts="a Kafka topic name")
    topic_dead_letters: str = setting(
        "cx.dead-letters", "Rejected input with its reason.", accepts="a Kafka topic name")
    topic_journeys: str = setting(
        "cx.journeys", "Journey moments (peak-end) updates.", accepts="a Kafka topic name")
    topic_metrics: str = setting(
        "cx.metrics", "NPS/CES/CSAT bucket updates.", accepts="a Kafka topic name")
    topic_alerts: str = setting(
        "cx.alerts", "Experience-drop alerts.", accepts="a Kafka topic name")
    partitions: int = setting(
        12, "Partitions of the topics the worker creates; bounds the worker count. Fixed once "
        "its internal topics exist (docs/streaming.md, Partition count).", ge=1, le=10000)
    kafka_replication_factor: int = setting(
        1, "Replicas of every topic the worker creates (3 on a cluster, with the brokers' "
        "min.insync.replicas at 2).", ge=1, le=32)
    max_event_bytes: int = setting(
        65536, "Larger input records go to dead letters (too_large).", ge=1, le=2**31 - 1)
    # ClickHouse
    clickhouse_url: str = setting(
        "",
        "clickhouse://user:password@host:9000/db of the writer (password percent-encoded or "
        "raw); empty: embedded chdb.",
        accepts=WAREHOUSE_URLS,
        url=True,
    )
    clickhouse_reader_url: str = setting(
        "",
        "URL of the read-only user (analysts, Grafana, `peakend demo` reports).",
        accepts=WAREHOUSE_URLS,
        url=True,
    )
    clickhouse_ssl_cafile: str = setting(
        "", "CA bundle that verifies the server of clickhouses:// URLs (empty: the system's CAs).",
        accepts="empty or a path")
    chdb_path: str = setting(
        ".stack/chdb", "Data directory of the embedded chdb engine.", accepts="a path")
    clickhouse_database: str = setting(
        "peakend", "Database holding the peakend tables.",
        accepts="a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    clickhouse_cluster: str = setting(
        "", "Cluster name: when set, DDL creates Replicated tables behind Distributed ones.",
        accepts="empty or a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    sink_batch_rows: int = setting(
        10000, "ClickHouse sink: flush after this many rows.", ge=1, le=10_000_000)
    sink_batch_seconds: float = setting(
        1.0, "ClickHouse sink: flush at least this often.", gt=0, le=3600)
    entry_process: bool = setting(
        True,
        "Run the worker's entry stage (touchpoints -> journey batches) as a child process "
        "(`peakend entry`: its own core and event loop); false, or embedded chdb: inside the "
        "worker process.",
    )
    sink_process: bool = setting(
        True,
        "Run the worker's ClickHouse sink as a child process (`peakend sink`: its own core and "
        "event loop); false, or embedded chdb: inside the worker process.",
    )
    stage_two_process: bool = setting(
        True,
        "Run the worker's stage two (the segments, follow-ups and claims agents) as a child "
        "process (`peakend stage-two`: a second Faust app, its own consumer group "
        "`<app id>-stage-two`, core, event loop and state directory, the same changelog "
        "topics); false, or embedded chdb: inside the worker process.",
    )
    # Journeys
    idle_gap_seconds: float = seconds(
        1800, "Customer-keyed journeys (events without a journey_id) split after this idle gap; "
              "journeys with a producer journey_id never split on it.")
    journey_idle_seconds: float = seconds(
        604800, "A journey with a producer journey_id closes after this idle time (7 d), "
                "besides journey_end and the maximum length; >= the idle gap. Negative_end "
                "buckets are held this long past final, for such journeys to close into.")
    max_journey_seconds: float = seconds(2592000, "A journey closes at this length (30 d).")
    allowed_lateness_seconds: float = seconds(
        86400, "Events this far behind stream time still update results; later ones are dead "
               "letters.", zero=True)
    end_window_seconds: float = seconds(
        0, "end = mean of the moments in the last N seconds; 0: last moment.", zero=True)
    max_clock_skew_seconds: float = seconds(
        300, "An event dated further ahead than this of the time it reached us is a dead letter "
             "`future` and does not move stream time.", zero=True)
    # Survey windows
    bucket_seconds: int = setting(
        60, "Width of the fixed metric buckets.", ge=1, le=HOUR_SECONDS,
        accepts="an integer from 1 to 3600 that divides 3600 (an hour)")
    segment_attributes: tuple[str, ...] = setting(
        ("region", "tier"),
        "Attribute keys that become segments beside all/touchpoint/channel/stage.",
        accepts="comma-separated attribute keys ([a-z][a-z0-9_]{0,63}), no repeats, none of "
                + "/".join(BUILT_IN_DIMENSIONS))
    # Drop detection
    alert_window_seconds: int = setting(
        3600, "Current window of drop detection; a multiple of the bucket width.",
        ge=1, le=MAX_SECONDS)
    alert_baseline_seconds: int = setting(
        604800, "Baseline window before it (7 d); a multiple of the bucket width.",
        ge=1, le=MAX_SECONDS)
    alert_min_n: int = setting(
        100, "Answers the current window needs before it can alert.", ge=1, le=10**9)
    alert_p_value: float = setting(
        0.01, "Ceiling of the window test's one-sided significance level (the budget below "
        "usually sets a lower one).", gt=0, le=0.5)
    alert_min_nps_drop: float = setting(10.0, "Minimum NPS drop in points.", ge=0, le=200)
    alert_min_ces_drop: float = setting(0.5, "Minimum CES drop on the 1-7 scale.", ge=0, le=6)
    alert_min_csat_drop: float = setting(
        0.10, "Minimum drop of the CSAT satisfied share.", ge=0, le=1)
    alert_min_negative_end_rise: float = setting(
        0.10, "Minimum rise of the negative-end share.", ge=0, le=1)
    alert_hold_seconds: int = setting(
        1800, "A firing alert resolves after clearing this long (and only after clear windows "
        "with enough answers in a row: docs/alerts.md).", ge=0, le=MAX_SECONDS)
    alert_false_warnings_per_day: float = setting(
        0.75, "False warnings a day allowed over all series together (the false-alarm budget, "
        "an expected value: docs/alerts.md).", gt=0, le=10**6)
    alert_false_pages_per_day: float = setting(
        0.1, "False critical pages a day allowed over all series together.", gt=0, le=10**6)
    alert_series: int = setting(
        50, "Series the budget is shared by (metrics x segments of the deployment).",
        ge=1, le=10**9)
    # Survey scales (issue 16)
    ces_5_higher_means: Literal["LESS_EFFORT", "MORE_EFFORT"] = setting(
        "LESS_EFFORT",
        "What a higher answer means on a 1-5 CES scale (survey.ces_scale 5) when the event "
        "does not say (survey.ces_higher_means, which wins): LESS_EFFORT (CES 2.0, 'the "
        "company made it easy for me', as on 1-7) or MORE_EFFORT (the original 5-point CES, "
        "'how much effort did you have to put forth': answers are reversed, 6 - x, before the "
        "1-7 mapping). Undeclared 1-7 answers are always CES 2.0 (higher = easier).")
    # Follow-up cases (issue 17)
    followup_rules: str = setting(
        "",
        "Follow-up rules file (docs/followups.md, 'Tuning'): a copy of "
        "schemas/followup-rules.v1.json with your thresholds, priorities, SLAs and suppression "
        "windows, checked against its JSON Schema when the worker or replay starts; empty: the "
        "bundled file.", accepts="empty or a path")
    # Personal data
    pseudonymise_key: str = setting(
        "", "HMAC-SHA256 key; when set, customer_id is replaced by its keyed hash everywhere.",
        secret=True)
    keep_comments: bool = setting(False, "Keep free-text survey comments (personal data).")
    comments: Literal["", "KEEP", "DROP", "PSEUDONYMISE"] = setting(
        "",
        "Survey comments: keep, drop, or pseudonymise (replaced by their keyed hash: equal texts "
        "still group; needs PEAKEND_PSEUDONYMISE_KEY); empty: as PEAKEND_KEEP_COMMENTS says.")
    dead_letter_key: str = setting(
        "",
        "With PEAKEND_PSEUDONYMISE_KEY set, the operators' key that encrypts each dead letter's "
        "original record (AES-256-GCM); empty: originals are not kept, only a redacted copy and "
        "a digest (docs/privacy.md).",
        secret=True, accepts="empty or 32 bytes in URL-safe base64 (44 characters)")
    # Worker
    app_id: str = setting(
        "peakend", "Faust application id (consumer group, changelog prefix).",
        accepts="a Kafka topic name prefix ([A-Za-z0-9._-], up to 200 characters)")
    data_dir: str = setting(".stack/worker", "Worker state (RocksDB tables).", accepts="a path")
    metrics_port: int = setting(
        9108, "Port of the worker's Prometheus /metrics; 0: none.", ge=0, le=65535)
    metrics_tls_certfile: str = setting(
        "", "Certificate (PEM, with its chain) of /metrics: set with the key file, the worker "
            "and the sink serve their metrics over HTTPS.", accepts="empty or a path")
    metrics_tls_keyfile: str = setting(
        "", "Private key (PEM) of PEAKEND_METRICS_TLS_CERTFILE.", accepts="empty or a path")
    web_port: int = setting(6066, "Port of Faust's web server.", ge=1, le=65535)
    stream_batch_events: int = setting(
        4000, "Events the worker's agents take per batch and the entry stage reads at once "
        "(outputs and state are coalesced per batch: docs/streaming.md, thirteenth round).",
        ge=1, le=1_000_000)
    stream_batch_records: int = setting(
        16, "Batch records (each up to PEAKEND_STREAM_BATCH_EVENTS events of one entry-stage read, "
        "at most 512 KiB) the journeys agent takes per batch: every batch waits for its outputs "
        "and its state to be acknowledged, so larger batches wait less per event and hold more "
        "memory (docs/streaming.md, eighth round).",
        ge=1, le=1000)
    bus_purge_seconds: float = setting(
        30.0, "How often the worker's group leader deletes the records of the bus topics "
        "(internal, no retention time) below the group's committed offsets "
        "(pipeline/stream/bus_purge.py).",
        gt=0, le=86400)
    stream_batch_seconds: float = setting(
        0.2, "An agent processes a batch once it is full or has waited this long for more events.",
        gt=0, le=3600)
    traceback: bool = setting(
        False,
        "true: a command that fails on an unexpected error shows its Python traceback (for a bug "
        "report); false: one line naming the command and the error.",
    )
    # The core's build (read by pipeline/core/__init__.py when the core is first imported)
    pure_core: bool = setting(
        False,
        "true: run the interpreted core even when its mypyc build (scripts/compile_core.py, run "
        "by make setup) is current. Same results, slower; `make setup` then skips compiling.",
    )
    core_build: str = setting(
        "",
        "Directory of the compiled core (empty: build/core-compiled in the source tree). A build "
        "whose manifest does not match the sources is never used.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructor arguments only: from_env() supplies the environment explicitly, so a test
        # that builds Settings(...) never picks up the variables of the shell that runs it.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `PEAKEND_*` variable; unset ones take their documented default.

        >>> Settings.from_env({"PEAKEND_PARTITIONS": "4"}).partitions
        4
        >>> Settings.from_env({}).segment_attributes
        ('region', 'tier')
        >>> try:
        ...     Settings.from_env({"PEAKEND_PARTITIONS": "1.5"})
        ... except SettingsError as exc:
        ...     print(exc)
        PEAKEND_PARTITIONS='1.5': must be an integer from 1 to 10000
        """
        source = _Environment(cls, os.environ if env is None else env)
        raw = source()
        try:
            return cls(**raw)
        except ValidationError as exc:
            raise SettingsError(_problems(exc, raw)) from None

    # -- checks of single values -------------------------------------------------------------

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        field = cls.model_fields[str(info.field_name)]
        return _parse_text(field, value)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",")]
        for server in servers:
            match = BOOTSTRAP_SERVER.fullmatch(server)
            if not match or (match.group(2) and not 1 <= int(match.group(2)) <= 65535):
                # masked: `user:password@host:9092` is a mistake people make, and this line
                # is printed
                raise ValueError(f"must be host:port[,host:port...], ports from 1 to 65535; "
                                 f"{mask_url_password(server)!r} is not")
        return ",".join(servers)

    @field_validator("topic_touchpoints", "topic_dead_letters", "topic_journeys",
                     "topic_metrics", "topic_alerts")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not TOPIC_NAME.fullmatch(value) or value in {".", ".."}:
            raise ValueError("must be a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ -")
        return value

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        # Faust names consumer groups and changelog topics after it.
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value):
            raise ValueError("must be 1 to 200 of A-Z a-z 0-9 . _ - (it prefixes Kafka topics)")
        return value

    @field_validator("clickhouse_url", "clickhouse_reader_url")
    @classmethod
    def _clickhouse_url(cls, value: str) -> str:
        return check_warehouse_url(value)  # the commands' --url is checked by the same function

    @field_validator("clickhouse_database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not IDENTIFIER.fullmatch(value):
            raise ValueError("must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if value and not IDENTIFIER.fullmatch(value):
            raise ValueError("must be empty or a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("chdb_path", "data_dir")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a path, not empty")
        return value

    @field_validator("dead_letter_key")
    @classmethod
    def _dead_letter_key(cls, value: str) -> str:
        dead_letter_key_bytes(value)  # ValueError saying what is accepted
        return value

    @field_validator("bucket_seconds")
    @classmethod
    def _bucket(cls, value: int) -> int:
        # Buckets tile the hour: rolling windows (1 h, 1 d, 7 d) and the drop detector's hourly
        # CUSUM series are merged from whole buckets.
        if HOUR_SECONDS % value:
            raise ValueError("must be an integer from 1 to 3600 that divides 3600 (an hour)")
        return value

    @field_validator("segment_attributes")
    @classmethod
    def _segments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for name in value:
            if not ATTRIBUTE_KEY.fullmatch(name):
                raise ValueError(f"{name!r} is not an attribute key ([a-z][a-z0-9_]{{0,63}})")
            if name in BUILT_IN_DIMENSIONS:
                raise ValueError(f"{name!r} is a built-in segment dimension (none of "
                                 + ", ".join(BUILT_IN_DIMENSIONS) + " may be listed)")
            if name in seen:
                raise ValueError(f"{name!r} is listed twice (each attribute once)")
            seen.add(name)
        return value

    # -- checks between values ---------------------------------------------------------------

    @model_validator(mode="after")
    def _relations(self) -> Settings:
        problems = [p for check in _RELATIONS if (p := check(self))]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- what the rest of the code uses -----------------------------------------------------

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

    def comment_policy(self) -> Literal["keep", "drop", "pseudonymise"]:
        """What happens to survey comments (PEAKEND_COMMENTS, else PEAKEND_KEEP_COMMENTS)."""
        if self.comments == "KEEP" or (not self.comments and self.keep_comments):
            return "keep"
        return "pseudonymise" if self.comments == "PSEUDONYMISE" else "drop"

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the SSL/SASL_SSL protocols (None otherwise): the broker's
        certificate and host name verified against PEAKEND_KAFKA_SSL_CAFILE, else the system's
        CAs."""
        if self.kafka_security_protocol not in {"SSL", "SASL_SSL"}:
            return None
        return ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)

    def aiokafka_client_options(self) -> dict[str, Any]:
        """`kafka_client_options` as aiokafka takes them: a TLS context, not a CA file."""
        options: dict[str, Any] = dict(self.kafka_client_options())
        options.pop("ssl_cafile", None)
        context = self.kafka_ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, effective value with secrets masked, doc) for `peakend settings`."""
        rows = []
        for var in VARIABLES:
            shown = format_value(getattr(self, var.field))
            if var.secret and shown:
                shown = "***"
            rows.append((var.name, mask_url_password(shown), var.doc))
        return rows

    def core_config(self) -> CoreConfig:
        """The pure core's configuration (pipeline.core.config) from these settings.

        >>> Settings.from_env({"PEAKEND_ALERT_MIN_N": "50"}).core_config().drops.min_n
        50
        >>> skew = Settings.from_env({"PEAKEND_MAX_CLOCK_SKEW_SECONDS": "60"})
        >>> skew.core_config().clock.max_skew_ms
        60000
        >>> wide = Settings.from_env({"PEAKEND_BUCKET_SECONDS": "300"}).core_config()
        >>> wide.journeys.bucket_ms == wide.windows.bucket_ms == 300_000  # the copies' reach
        True
        """
        lateness_ms = _ms(self.allowed_lateness_seconds)
        idle_gap_ms = _ms(self.idle_gap_seconds)
        return CoreConfig(
            clock=ClockConfig(max_skew_ms=_ms(self.max_clock_skew_seconds)),
            journeys=JourneyConfig(
                idle_gap_ms=idle_gap_ms,
                journey_idle_ms=_ms(self.journey_idle_seconds),
                max_length_ms=_ms(self.max_journey_seconds),
                allowed_lateness_ms=lateness_ms,
                end_window_ms=_ms(self.end_window_seconds),
                segment_attributes=self.segment_attributes,
                ces_5_more_effort=self.ces_5_higher_means == "MORE_EFFORT",
                bucket_ms=self.bucket_seconds * 1000,
            ),
            windows=WindowConfig(
                bucket_ms=self.bucket_seconds * 1000,
                segment_attributes=self.segment_attributes,
                allowed_lateness_ms=lateness_ms,
                ces_5_more_effort=self.ces_5_higher_means == "MORE_EFFORT",
                end_hold_ms=_ms(self.journey_idle_seconds),
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
                false_warnings_per_day=self.alert_false_warnings_per_day,
                false_pages_per_day=self.alert_false_pages_per_day,
                budget_series=self.alert_series,
            ),
        )


def _ms(seconds_value: float) -> int:
    return round(seconds_value * 1000)


def _shown(s: Settings, name: str) -> str:
    return f"{variable_name(name)}={format_value(getattr(s, name))!r}"


def _journey_idle(s: Settings) -> str:
    if s.journey_idle_seconds < s.idle_gap_seconds:
        return (f"{_shown(s, 'journey_idle_seconds')}: must be >= PEAKEND_IDLE_GAP_SECONDS "
                f"({format_value(s.idle_gap_seconds)}): a journey with an id would close sooner "
                f"than a session without one")
    return ""


def _alert_windows(s: Settings) -> str:
    for name in ("alert_window_seconds", "alert_baseline_seconds"):
        if getattr(s, name) % s.bucket_seconds:
            return (f"{_shown(s, name)}: must be a multiple of PEAKEND_BUCKET_SECONDS "
                    f"({s.bucket_seconds}): windows are merged from whole buckets")
    return ""


def _sasl(s: Settings) -> str:
    sasl = s.kafka_security_protocol in SASL_PROTOCOLS
    if sasl and not s.kafka_sasl_mechanism:
        return (f"{_shown(s, 'kafka_sasl_mechanism')}: must be one of PLAIN, SCRAM-SHA-256, "
                f"SCRAM-SHA-512 with PEAKEND_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol}")
    if not sasl and s.kafka_sasl_mechanism:
        return (f"{_shown(s, 'kafka_sasl_mechanism')}: must be empty with "
                f"PEAKEND_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} (SASL needs "
                f"SASL_PLAINTEXT or SASL_SSL)")
    if s.kafka_sasl_mechanism and not s.kafka_sasl_username:
        return (f"{_shown(s, 'kafka_sasl_username')}: must not be empty with "
                f"PEAKEND_KAFKA_SASL_MECHANISM={s.kafka_sasl_mechanism}")
    return ""


def _topics(s: Settings) -> str:
    names = ("topic_touchpoints", "topic_dead_letters", "topic_journeys", "topic_metrics",
             "topic_alerts")
    seen: dict[str, str] = {}
    for name in names:
        topic = getattr(s, name)
        if topic in seen:
            return (f"{_shown(s, name)}: must differ from {variable_name(seen[topic])}: "
                    f"each stream has its own topic")
        seen[topic] = name
    return ""


def _ports(s: Settings) -> str:
    if bool(s.metrics_tls_certfile) != bool(s.metrics_tls_keyfile):
        return ("PEAKEND_METRICS_TLS_CERTFILE and PEAKEND_METRICS_TLS_KEYFILE: set both (HTTPS "
                "needs the certificate and its key) or neither")
    if s.metrics_port == s.web_port:
        return (f"{_shown(s, 'metrics_port')}: must differ from PEAKEND_WEB_PORT: the worker "
                f"listens on both")
    return ""


def _personal_data(s: Settings) -> str:
    if s.comments and s.comments != "KEEP" and s.keep_comments:
        return (f"{_shown(s, 'comments')}: contradicts PEAKEND_KEEP_COMMENTS=true; set only "
                f"one of them")
    if s.comments == "PSEUDONYMISE" and not s.pseudonymise_key:
        return (f"{_shown(s, 'comments')}: needs PEAKEND_PSEUDONYMISE_KEY (the comments' keyed "
                f"hash uses it)")
    if s.dead_letter_key and not s.pseudonymise_key:
        return ("PEAKEND_DEAD_LETTER_KEY='***': has no effect without PEAKEND_PSEUDONYMISE_KEY "
                "(dead letters keep the raw record unless pseudonymisation is on)")
    return ""


def dead_letter_key_bytes(text: str) -> bytes:
    """The AES-256 key of PEAKEND_DEAD_LETTER_KEY (b'' when empty); ValueError otherwise.

    >>> len(dead_letter_key_bytes("A" * 43 + "="))
    32
    """
    if not text:
        return b""
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ValueError("must be empty or 32 bytes in URL-safe base64 (44 characters; e.g. "
                         "python -c 'import base64,os; print(base64.urlsafe_b64encode("
                         "os.urandom(32)).decode())')")
    return key


_RELATIONS: tuple[Callable[[Settings], str], ...] = (
    _journey_idle, _alert_windows, _sasl, _topics, _ports, _personal_data,
)


def _problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """One line per error: the variable, the value given (secrets hidden), what is accepted."""
    problems: list[str] = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if not error["loc"]:  # a relation: its text names its variables already
            problems.extend(str(cause or error["msg"]).splitlines())
            continue
        name = str(error["loc"][0])
        info = Settings.model_fields.get(name)
        if info is None:
            problems.append(f"{name}: {error['msg']}")
            continue
        given = raw.get(name, error.get("input"))
        shown = "***" if _secret(info) else mask_url_password(
            given if isinstance(given, str) else format_value(given))
        reason = str(cause) if isinstance(cause, ValueError) and str(cause) else (
            "must be " + accepted(info))
        problems.append(f"{variable_name(name)}={shown!r}: {reason}")
    return problems


def _secret(info: FieldInfo) -> bool:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get("secret"))


@dataclass(frozen=True)
class Variable:
    """One setting as the environment and the docs see it (derived from `Settings`)."""

    name: str
    field: str
    default: str
    doc: str
    accepts: str
    secret: bool = False


VARIABLES: tuple[Variable, ...] = tuple(
    Variable(
        name=variable_name(name),
        field=name,
        default=format_value(info.default),
        doc=info.description or "",
        accepts=accepted(info),
        secret=_secret(info),
    )
    for name, info in Settings.model_fields.items()
)


def markdown_table() -> str:
    """The configuration table of docs/configuration.md, from the declaration."""
    lines = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
    for var in VARIABLES:
        default = f"`{var.default}`" if var.default else "(empty)"
        doc = var.doc + (" Secret: never printed." if var.secret else "")
        cells = [f"`{var.name}`", default, var.accepts, doc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# Imported last (and only here) so the settings module's own imports stay as they are; the core
# never imports settings, so there is no cycle.
from pipeline.core.config import (  # noqa: E402
    ClockConfig,
    CoreConfig,
    DropConfig,
    JourneyConfig,
    WindowConfig,
)
