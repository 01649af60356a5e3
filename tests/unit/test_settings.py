"""Settings: declared once, checked at start, one-line errors naming the variable (issue 13.6)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline import cli
from pipeline.settings import VARIABLES, Settings, SettingsError, markdown_table
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.urls import (
    ClickHouseUrl,
    build_clickhouse_url,
    mask_url_password,
    parse_clickhouse_url,
)

ROOT = Path(__file__).resolve().parents[2]
NAMES = {v.name for v in VARIABLES}

# (variable, bad value, a word the reason must contain): every kind of check, at least once.
BAD: list[tuple[str, str, str]] = [
    ("PEAKEND_BUCKET_SECONDS", "0", "divides 3600"),
    ("PEAKEND_BUCKET_SECONDS", "-60", "divides 3600"),
    ("PEAKEND_BUCKET_SECONDS", "1.5", "integer"),
    ("PEAKEND_BUCKET_SECONDS", "7", "divides 3600"),
    ("PEAKEND_BUCKET_SECONDS", "7200", "divides 3600"),
    ("PEAKEND_PARTITIONS", "abc", "integer from 1"),
    ("PEAKEND_PARTITIONS", "0", "integer from 1"),
    ("PEAKEND_PARTITIONS", "1e3", "integer"),
    ("PEAKEND_PARTITIONS", "1_000", "integer"),
    ("PEAKEND_PARTITIONS", "", "integer"),
    ("PEAKEND_PARTITIONS", "9" * 400, "integer"),
    ("PEAKEND_ALLOWED_LATENESS_SECONDS", "nan", "number from 0"),
    ("PEAKEND_ALLOWED_LATENESS_SECONDS", "inf", "number from 0"),
    ("PEAKEND_ALLOWED_LATENESS_SECONDS", "-1", "number from 0"),
    ("PEAKEND_ALLOWED_LATENESS_SECONDS", "1e400", "number from 0"),
    ("PEAKEND_MAX_CLOCK_SKEW_SECONDS", "-0.5", "number from 0"),
    ("PEAKEND_JOURNEY_IDLE_SECONDS", "0", "> 0"),
    ("PEAKEND_IDLE_GAP_SECONDS", "soon", "number"),
    ("PEAKEND_KEEP_COMMENTS", "ture", "true or false"),
    ("PEAKEND_KEEP_COMMENTS", "", "true or false"),
    ("PEAKEND_SINK_PROCESS", "2", "true or false"),
    ("PEAKEND_PURE_CORE", "enabled", "true or false"),
    ("PEAKEND_ALERT_P_VALUE", "5", "<= 0.5"),
    ("PEAKEND_ALERT_P_VALUE", "0", "> 0"),
    ("PEAKEND_ALERT_P_VALUE", "0.6", "<= 0.5"),
    ("PEAKEND_ALERT_MIN_N", "0", "integer from 1"),
    ("PEAKEND_ALERT_MIN_CSAT_DROP", "1.5", "from 0 to 1"),
    ("PEAKEND_ALERT_MIN_NPS_DROP", "-3", "from 0 to 200"),
    ("PEAKEND_ALERT_HOLD_SECONDS", "-1", "integer from 0"),
    ("PEAKEND_METRICS_PORT", "65536", "from 0 to 65535"),
    ("PEAKEND_WEB_PORT", "0", "from 1 to 65535"),
    ("PEAKEND_WEB_PORT", "http", "integer"),
    ("PEAKEND_SINK_BATCH_ROWS", "0", "integer from 1"),
    ("PEAKEND_SINK_BATCH_SECONDS", "0", "> 0"),
    ("PEAKEND_STREAM_BATCH_EVENTS", "-5", "integer from 1"),
    ("PEAKEND_STREAM_BATCH_RECORDS", "0", "integer from 1"),
    ("PEAKEND_STREAM_BATCH_SECONDS", "0", "> 0"),
    ("PEAKEND_MAX_EVENT_BYTES", "0", "integer from 1"),
    ("PEAKEND_KAFKA_SECURITY_PROTOCOL", "TLS", "one of PLAINTEXT, SSL"),
    ("PEAKEND_KAFKA_SASL_MECHANISM", "GSSAPI", "one of PLAIN"),
    ("PEAKEND_KAFKA_BOOTSTRAP", "broker:99999", "ports from 1 to 65535"),
    ("PEAKEND_KAFKA_BOOTSTRAP", "a:9092,,b:9092", "host:port"),
    ("PEAKEND_KAFKA_BOOTSTRAP", "", "host:port"),
    ("PEAKEND_TOPIC_TOUCHPOINTS", "cx touchpoints", "topic name"),
    ("PEAKEND_TOPIC_ALERTS", "", "topic name"),
    ("PEAKEND_APP_ID", "peak end", "A-Z"),
    ("PEAKEND_CLICKHOUSE_URL", "http://h:8123/peakend", "scheme"),
    ("PEAKEND_CLICKHOUSE_URL", "clickhouse://w:p@h:70000/peakend", "port"),
    ("PEAKEND_CLICKHOUSE_URL", "clickhouse://w:p@h:9000/peak-end", "identifier"),
    ("PEAKEND_CLICKHOUSE_URL", "localhost:9000", "scheme"),
    ("PEAKEND_CLICKHOUSE_READER_URL", "clickhouse://r:p@/peakend", "host"),
    ("PEAKEND_CLICKHOUSE_DATABASE", "x; DROP TABLE journeys", "identifier"),
    ("PEAKEND_CLICKHOUSE_CLUSTER", "my-cluster", "identifier"),
    ("PEAKEND_CHDB_PATH", "", "path"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "channel", "built-in"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "region,all", "built-in"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "region,tier,region", "twice"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "Region", "attribute key"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "tier,9lives", "attribute key"),
    ("PEAKEND_SEGMENT_ATTRIBUTES", "a" * 65, "attribute key"),
]


@pytest.mark.parametrize(("name", "value", "reason"), BAD,
                         ids=[f"{n}={v[:12]!r}" for n, v, _ in BAD])
def test_bad_value_is_one_line_naming_variable_value_and_what_is_accepted(
        name: str, value: str, reason: str) -> None:
    assert name in NAMES
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}=")
    shown = mask_url_password(value) if name.endswith("_URL") else value
    assert repr(shown) in message or len(value) > 100
    assert reason in message.split(": ", 1)[1]


@pytest.mark.parametrize(("name", "value", "reason"), BAD[::2],
                         ids=[f"{n}={v[:12]!r}" for n, v, _ in BAD[::2]])
def test_every_command_reports_a_bad_setting_as_one_line_and_exits_2(
        name: str, value: str, reason: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(name, value)
    # replay and validate would read a file, demo would start servers: the check comes first.
    for argv in (["settings"], ["replay", "/nonexistent.jsonl", "--output", "/nonexistent"],
                 ["validate", "/nonexistent"], ["demo"], ["generate", "--events", "5"]):
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.count("\n") == 1
        assert err.startswith(f"peakend: {name}=")
        assert reason in err


def test_several_bad_variables_give_one_line_each() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PEAKEND_BUCKET_SECONDS": "0", "PEAKEND_PARTITIONS": "abc",
                           "PEAKEND_KEEP_COMMENTS": "ture"})
    lines = str(caught.value).splitlines()
    assert sorted(line.split("=", 1)[0] for line in lines) == [
        "PEAKEND_BUCKET_SECONDS", "PEAKEND_KEEP_COMMENTS", "PEAKEND_PARTITIONS"]
    assert caught.value.problems == lines


def test_subprocess_settings_with_bad_env_prints_no_traceback() -> None:
    env = {**os.environ, "PEAKEND_BUCKET_SECONDS": "0", "PEAKEND_PURE_CORE": "1"}
    peakend = Path(sys.executable).parent / "peakend"
    command = [str(peakend)] if peakend.exists() else [sys.executable, "-m", "pipeline.cli"]
    proc = subprocess.run([*command, "settings"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("peakend: PEAKEND_BUCKET_SECONDS='0': must be an integer from 1 to "
                           "3600 that divides 3600 (an hour)\n")
    good = subprocess.run([*command, "settings"], env={**env, "PEAKEND_BUCKET_SECONDS": "300"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert good.returncode == 0, good.stderr
    assert "PEAKEND_BUCKET_SECONDS=300\n" in good.stdout


# -- accepted values --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), (" Yes ", True), ("on", True), ("1", True),
    ("false", False), ("False", False), ("NO", False), ("off", False), ("0", False),
])
def test_booleans_are_the_eight_words_in_any_case(text: str, expected: bool) -> None:
    assert Settings.from_env({"PEAKEND_KEEP_COMMENTS": text}).keep_comments is expected


def test_defaults_equal_the_declared_defaults_and_round_trip_as_text() -> None:
    defaults = Settings.from_env({})
    assert defaults == Settings()
    assert Settings.from_env({v.name: v.default for v in VARIABLES}) == defaults
    assert [v.name for v in VARIABLES] == ["PEAKEND_" + f.upper() for f in Settings.model_fields]
    assert all(v.doc and v.accepts for v in VARIABLES)
    assert {v.name for v in VARIABLES if v.secret} == {
        "PEAKEND_KAFKA_SASL_PASSWORD", "PEAKEND_PSEUDONYMISE_KEY", "PEAKEND_DEAD_LETTER_KEY"}


def test_values_are_parsed_to_their_declared_types() -> None:
    s = Settings.from_env({
        "PEAKEND_PARTITIONS": " 4 ", "PEAKEND_SINK_BATCH_SECONDS": "0.5",
        "PEAKEND_SEGMENT_ATTRIBUTES": " region , tier_2 ,", "PEAKEND_BUCKET_SECONDS": "300",
        "PEAKEND_ALERT_WINDOW_SECONDS": "7200", "PEAKEND_ALERT_BASELINE_SECONDS": "86400",
        "PEAKEND_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "PEAKEND_KAFKA_SASL_MECHANISM": "plain",
        "PEAKEND_KAFKA_SASL_USERNAME": "u", "PEAKEND_KAFKA_BOOTSTRAP": "a:1, [::1]:9092,b",
        "PEAKEND_SEGMENT_ATTRIBUTES_UNKNOWN": "ignored", "OTHER": "x",
    })
    assert (s.partitions, s.sink_batch_seconds, s.bucket_seconds) == (4, 0.5, 300)
    assert s.segment_attributes == ("region", "tier_2")
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "PLAIN")
    assert s.kafka_bootstrap == "a:1,[::1]:9092,b"
    assert Settings.from_env({"PEAKEND_SEGMENT_ATTRIBUTES": ""}).segment_attributes == ()


def test_constructor_takes_values_as_given_and_from_env_reads_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEAKEND_PARTITIONS", "3")
    assert Settings().partitions == 12
    assert Settings.from_env().partitions == 3
    assert Settings.from_env({}).partitions == 12
    with pytest.raises(ValidationError):
        Settings(partitions=0)
    with pytest.raises(ValidationError):
        Settings(alert_p_value=float("nan"))
    s = Settings()
    with pytest.raises((ValidationError, FrozenInstanceError, TypeError)):
        s.partitions = 2


# -- relations ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "name", "reason"), [
    ({"PEAKEND_JOURNEY_IDLE_SECONDS": "600"}, "PEAKEND_JOURNEY_IDLE_SECONDS",
     ">= PEAKEND_IDLE_GAP_SECONDS (1800)"),
    ({"PEAKEND_BUCKET_SECONDS": "3600", "PEAKEND_ALERT_WINDOW_SECONDS": "1800"},
     "PEAKEND_ALERT_WINDOW_SECONDS", "multiple of PEAKEND_BUCKET_SECONDS (3600)"),
    ({"PEAKEND_ALERT_BASELINE_SECONDS": "90"}, "PEAKEND_ALERT_BASELINE_SECONDS",
     "multiple of PEAKEND_BUCKET_SECONDS (60)"),
    ({"PEAKEND_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "PEAKEND_KAFKA_SASL_MECHANISM",
     "SASL_SSL"),
    ({"PEAKEND_KAFKA_SASL_MECHANISM": "PLAIN", "PEAKEND_KAFKA_SASL_USERNAME": "u"},
     "PEAKEND_KAFKA_SASL_MECHANISM", "must be empty with PEAKEND_KAFKA_SECURITY_PROTOCOL"),
    ({"PEAKEND_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PEAKEND_KAFKA_SASL_MECHANISM": "PLAIN"},
     "PEAKEND_KAFKA_SASL_USERNAME", "must not be empty"),
    ({"PEAKEND_TOPIC_ALERTS": "cx.metrics"}, "PEAKEND_TOPIC_ALERTS", "PEAKEND_TOPIC_METRICS"),
    ({"PEAKEND_METRICS_PORT": "6066"}, "PEAKEND_METRICS_PORT", "PEAKEND_WEB_PORT"),
])
def test_relations_between_variables_are_checked(env: dict[str, str], name: str,
                                                 reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}=")
    assert reason in message


def test_related_values_that_fit_are_accepted() -> None:
    s = Settings.from_env({"PEAKEND_JOURNEY_IDLE_SECONDS": "1800", "PEAKEND_BUCKET_SECONDS": "3600",
                           "PEAKEND_ALERT_WINDOW_SECONDS": "3600",
                           "PEAKEND_ALERT_BASELINE_SECONDS": "86400", "PEAKEND_METRICS_PORT": "0"})
    assert s.journey_idle_seconds == s.idle_gap_seconds == 1800


# -- core config --------------------------------------------------------------------------------

def test_core_config_carries_the_clock_skew_and_the_journey_idle_timeout() -> None:
    config = Settings.from_env({"PEAKEND_MAX_CLOCK_SKEW_SECONDS": "120.5",
                                "PEAKEND_JOURNEY_IDLE_SECONDS": "172800",
                                "PEAKEND_IDLE_GAP_SECONDS": "900",
                                "PEAKEND_SEGMENT_ATTRIBUTES": "region"}).core_config()
    assert config.clock.max_skew_ms == 120_500
    assert config.journeys.journey_idle_ms == 172_800_000
    assert config.journeys.idle_gap_ms == config.drops.negative_end_delay_ms == 900_000
    assert config.journeys.segment_attributes == config.windows.segment_attributes == ("region",)
    defaults = Settings.from_env({}).core_config()
    assert defaults.clock.max_skew_ms == 300_000
    assert defaults.journeys.journey_idle_ms == 7 * 86_400_000


# -- secrets and URLs ---------------------------------------------------------------------------

PASSWORDS = ["s3cret", "p@ss", "p:a@s/s", "100%", "%41%zz", "a#b?c", "@@@", "::", "é ü/@"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_round_trips_through_build_and_parse(password: str) -> None:
    parts = ClickHouseUrl("127.0.0.1", 9000, "peakend_writer", password, "peakend")
    url = build_clickhouse_url(parts)
    assert parse_clickhouse_url(url) == parts
    assert parse_clickhouse_url(url).password == password
    assert password not in mask_url_password(url).replace("peakend_writer", "")


@given(st.text(min_size=1), st.text(min_size=1, alphabet=st.characters(codec="utf-8")))
def test_any_user_and_password_round_trip(user: str, password: str) -> None:
    parts = ClickHouseUrl("db.example", 9440, user, password, "peakend", secure=True)
    assert parse_clickhouse_url(build_clickhouse_url(parts)) == parts


@pytest.mark.parametrize("password", [p for p in PASSWORDS if "%" not in p])
def test_a_raw_password_with_any_character_is_parsed_and_fully_masked(password: str) -> None:
    url = f"clickhouse://peakend_writer:{password}@127.0.0.1:9000/peakend"
    assert parse_clickhouse_url(url).password == password
    assert parse_clickhouse_url(url).host == "127.0.0.1"
    s = Settings.from_env({"PEAKEND_CLICKHOUSE_URL": url, "PEAKEND_CLICKHOUSE_READER_URL": url,
                           "PEAKEND_KAFKA_SASL_PASSWORD": password,
                           "PEAKEND_PSEUDONYMISE_KEY": password})
    shown = dict((n, v) for n, v, _ in s.describe())
    masked = "clickhouse://peakend_writer:***@127.0.0.1:9000/peakend"
    assert shown["PEAKEND_CLICKHOUSE_URL"] == shown["PEAKEND_CLICKHOUSE_READER_URL"] == masked
    assert shown["PEAKEND_KAFKA_SASL_PASSWORD"] == shown["PEAKEND_PSEUDONYMISE_KEY"] == "***"
    assert password not in repr(s)


def test_errors_never_show_a_password() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PEAKEND_CLICKHOUSE_URL": "clickhouse://w:top@secret@h:99999/db"})
    assert "top@secret" not in str(caught.value)
    assert "clickhouse://w:***@h:99999/db" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PEAKEND_CLICKHOUSE_READER_URL": "r:top@secret@h:9000/db"})
    assert "top@secret" not in str(caught.value)
    assert "'r:***@h:9000/db'" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PEAKEND_KAFKA_SASL_PASSWORD": "hunter2",
                           "PEAKEND_PARTITIONS": "hunter2"})
    assert str(caught.value).count("hunter2") == 1  # the partitions value, not the password


def test_the_warehouse_connects_with_the_parsed_password() -> None:
    # The native client connects lazily: building it only records the parts.
    url = build_clickhouse_url(ClickHouseUrl("h", 9001, "w", "p@ss%/:#", "peakend"))
    conn = ServerWarehouse(url)._client.connection
    assert (list(conn.hosts), conn.user, conn.password, conn.database) == (
        [("h", 9001)], "w", "p@ss%/:#", "peakend")


# -- docs -----------------------------------------------------------------------------------------

def test_docs_configuration_table_is_generated_from_the_declaration() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert markdown_table() in text
    for var in VARIABLES:
        assert f"| `{var.name}` |" in text


def test_settings_docs_lists_every_variable_with_what_it_accepts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    assert cli.main(["settings", "--docs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [v.name for v in VARIABLES]
    for line, var in zip(lines, VARIABLES, strict=True):
        assert line.startswith(f"{var.name}={var.default}    # {var.doc}")
        assert f"Accepts: {var.accepts}." in line


@pytest.mark.parametrize("command", [["migrate"], ["backfill", "x.parquet"],
                                     ["export", "--table", "journeys", "--output", "x.parquet"]])
@pytest.mark.parametrize("url", ["http://w:top@secret@h/db", "clickhouse://w:top@secret@h:0/db",
                                 "clickhouse://w:top@secret@h:9000/db-1", "w:top@secret@h"])
def test_the_commands_url_option_is_checked_like_the_setting(
        command: list[str], url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([*command, "--url", url])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"peakend {command[0]}: error: argument --url: must be")
    assert "top@secret" not in err
    assert ":***@" in err


@pytest.mark.parametrize("variable, value", [
    ("PEAKEND_KAFKA_BOOTSTRAP", "peakend:s3cr@tP4ss@127.0.0.1:9092"),
    ("PEAKEND_KAFKA_BOOTSTRAP", "h:9092,peakend:s3cr@tP4ss@h:9092"),
    ("PEAKEND_CLICKHOUSE_URL", "clickhouse://w:s3cr@tP4ss@h:0/db"),
])
def test_no_part_of_a_password_with_at_signs_is_printed(variable: str, value: str) -> None:
    """Issue 21: `peakend settings` and every start-up error mask a password holding `@`; the
    bootstrap check used to quote the whole server back, password included."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    text = str(caught.value)
    assert "***" in text
    for fragment in ("s3cr", "tP4ss", "@tP4"):
        assert fragment not in text, text


def test_ces_5_direction_is_explicit_checked_at_start_and_reaches_the_core() -> None:
    default = Settings.from_env({})
    assert default.ces_5_higher_means == "LESS_EFFORT"
    assert not default.core_config().journeys.ces_5_more_effort
    more = Settings.from_env({"PEAKEND_CES_5_HIGHER_MEANS": "more_effort"}).core_config()
    assert more.journeys.ces_5_more_effort and more.windows.ces_5_more_effort
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PEAKEND_CES_5_HIGHER_MEANS": "higher_is_easier"})
    assert str(caught.value) == ("PEAKEND_CES_5_HIGHER_MEANS='higher_is_easier': must be one of "
                                 "LESS_EFFORT, MORE_EFFORT")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "settings"],
                            env={**os.environ, "PEAKEND_CES_5_HIGHER_MEANS": "harder"},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "PEAKEND_CES_5_HIGHER_MEANS='harder'" in result.stderr
