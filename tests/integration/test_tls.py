"""TLS on every hop (issue 21), on a private stack with TLS (tests/integration/tls_stack.py):

- Kafka SSL and SASL_SSL listeners: the topic admin (`ensure_topics`), the producer library, an
  aiokafka consumer built as the sink's and the entry stage's are (`aiokafka_client_options`) and
  the lag reader (`pipeline_lag`, kafka-python) all connect with the broker's certificate
  verified against the generated CA; a client without that CA is refused.
- ClickHouse secure native port (`clickhouses://` URLs, `PEAKEND_CLICKHOUSE_SSL_CAFILE`): `peakend
  migrate` and a write/read round trip; HTTPS (Grafana's port) answers with the CA; a client
  without the CA is refused on both.
- The real worker (`peakend worker`, Faust) on the SSL listener and the secure native port: the
  stream lands in ClickHouse as `peakend replay` computes it, /metrics over HTTPS; without either
  CA it stops at once with one line naming the setting (pipeline/tls_preflight.py).
- `peakend backfill`, `export` and `report` over clickhouses://; `export` without the CA is
  refused in one line.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli import main
from pipeline.contract.dead_letters import DeadLetter
from pipeline.producer import TouchpointProducer
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream.lag import pipeline_lag
from pipeline.stream.topics import ensure_topics
from pipeline.urls import build_clickhouse_url, parse_clickhouse_url
from tests.integration.kafka_util import consume
from tests.integration.tls_stack import tls_stack
from tests.support.stream import (
    StreamSetup,
    Worker,
    count,
    journeys_in_clickhouse,
    journeys_of_replay,
    produce_lines,
    read_lines,
    replay_records,
    wait_until,
)
from tests.unit.contract.contract_corpus import VALID

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    with tls_stack("kafka", "clickhouse") as env:
        yield env


def kafka_settings(stack: dict[str, str], protocol: str, *, with_ca: bool = True,
                   **extra: str) -> Settings:
    return Settings.from_env(kafka_env(stack, protocol, with_ca=with_ca, **extra))


def kafka_env(stack: dict[str, str], protocol: str, *, with_ca: bool = True,
              **extra: str) -> dict[str, str]:
    """The PEAKEND_* variables of a client of the private stack's SSL or SASL_SSL listener,
    with fresh topic names."""
    app = f"tls-{uuid.uuid4().hex[:8]}"
    env = {
        "PEAKEND_KAFKA_BOOTSTRAP": stack["PEAKEND_TEST_KAFKA_SSL_BOOTSTRAP"
                                         if protocol == "SSL" else
                                         "PEAKEND_TEST_KAFKA_SASL_SSL_BOOTSTRAP"],
        "PEAKEND_KAFKA_SECURITY_PROTOCOL": protocol,
        "PEAKEND_KAFKA_SSL_CAFILE": stack["PEAKEND_TEST_TLS_CAFILE"] if with_ca else "",
        "PEAKEND_APP_ID": app,
        "PEAKEND_PARTITIONS": "2",
        "PEAKEND_TOPIC_TOUCHPOINTS": f"{app}.touchpoints",
        "PEAKEND_TOPIC_DEAD_LETTERS": f"{app}.dead-letters",
        "PEAKEND_TOPIC_JOURNEYS": f"{app}.journeys",
        "PEAKEND_TOPIC_METRICS": f"{app}.metrics",
        "PEAKEND_TOPIC_ALERTS": f"{app}.alerts",
        **extra,
    }
    if protocol == "SASL_SSL":
        env |= {"PEAKEND_KAFKA_SASL_MECHANISM": "PLAIN",
                "PEAKEND_KAFKA_SASL_USERNAME": stack["PEAKEND_TEST_KAFKA_SASL_USERNAME"],
                "PEAKEND_KAFKA_SASL_PASSWORD": stack["PEAKEND_TEST_KAFKA_SASL_PASSWORD"]}
    return env


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_kafka_round_trip_over_tls_with_every_client(
    stack: dict[str, str], protocol: str
) -> None:
    settings = kafka_settings(stack, protocol)
    created = ensure_topics(settings)  # kafka-python admin over TLS
    assert settings.topic_touchpoints in created
    sent = [raw for _, raw in VALID[:10]]
    with TouchpointProducer(settings) as producer:  # the producer library
        for raw in sent:
            producer.send(raw)
    assert sorted(consume(settings, settings.topic_touchpoints, len(sent))) == sorted(sent)
    lag = pipeline_lag(settings)  # kafka-python admin + consumer (the worker's lag gauge)
    assert lag, "pipeline_lag read nothing over TLS"
    context = settings.kafka_ssl_context()  # Faust's credentials use the same context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_kafka_client_without_the_ca_is_refused(stack: dict[str, str], protocol: str) -> None:
    trusted = kafka_settings(stack, protocol)
    ensure_topics(trusted)
    untrusted = kafka_settings(stack, protocol, with_ca=False,
                               PEAKEND_APP_ID=trusted.app_id,
                               PEAKEND_TOPIC_TOUCHPOINTS=trusted.topic_touchpoints)
    with pytest.raises((KafkaError, ssl.SSLError, OSError, TimeoutError)):
        consume(untrusted, untrusted.topic_touchpoints, 1)
    # the broker's certificate itself: signed by our CA, refused by the system's CAs
    host, port = untrusted.kafka_bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def test_clickhouse_secure_native_round_trip(stack: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = stack["PEAKEND_TEST_CLICKHOUSE_SECURE_URL"], stack["PEAKEND_TEST_TLS_CAFILE"]
    # `peakend migrate` over TLS, from the settings a deployment sets
    monkeypatch.setenv("PEAKEND_CLICKHOUSE_URL", url)
    monkeypatch.setenv("PEAKEND_CLICKHOUSE_SSL_CAFILE", ca)
    assert main(["migrate"]) == 0
    warehouse = ServerWarehouse(url, ca_file=ca)
    try:
        letter = DeadLetter.make("invalid", "tls probe", original=b"{}",
                                 source_topic=f"tls-{uuid.uuid4().hex[:8]}",
                                 source_partition=0, source_offset=1)
        warehouse.insert("dead_letters", *rows("dead_letters", [letter.to_dict()]))
        got = warehouse.query("SELECT error FROM dead_letters WHERE source_topic = %(t)s",
                              {"t": letter.source_topic})
        assert got == [("tls probe",)]
    finally:
        warehouse.close()


def test_clickhouse_client_without_the_ca_is_refused(stack: dict[str, str]) -> None:
    untrusted = ServerWarehouse(stack["PEAKEND_TEST_CLICKHOUSE_SECURE_URL"])  # system CAs
    with pytest.raises(Exception) as refused:
        untrusted.query("SELECT 1")
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) or isinstance(
        refused.value.__context__ or refused.value, ssl.SSLError), refused.value
    https = stack["PEAKEND_TEST_CLICKHOUSE_HTTPS_URL"] + "/ping"
    ca = ssl.create_default_context(cafile=stack["PEAKEND_TEST_TLS_CAFILE"])
    with urllib.request.urlopen(https, context=ca, timeout=10) as answer:
        assert answer.read() == b"Ok.\n"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(https, context=ssl.create_default_context(), timeout=10)


# -- the Faust worker end to end over TLS ------------------------------------------------------

def worker_setup(stack: dict[str, str], tmp_path: Path, *, kafka_ca: bool = True,
                 clickhouse_ca: bool = True) -> StreamSetup:
    """A worker's settings for the SSL listener and the secure native port (fresh topics and
    database), verifying both against the stack's CA unless told otherwise; its /metrics over
    HTTPS with the stack's certificate."""
    ca = stack["PEAKEND_TEST_TLS_CAFILE"]
    kafka = kafka_env(stack, "SSL", with_ca=kafka_ca)
    database = kafka["PEAKEND_APP_ID"].replace("-", "_")
    admin = ServerWarehouse(stack["PEAKEND_CLICKHOUSE_ADMIN_URL"])  # set-up over the plain port
    try:
        admin.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    finally:
        admin.close()
    secure = parse_clickhouse_url(stack["PEAKEND_TEST_CLICKHOUSE_SECURE_URL"])
    writer_url = build_clickhouse_url(replace(secure, database=database))
    env = {
        **kafka,
        "PEAKEND_CLICKHOUSE_URL": writer_url,
        "PEAKEND_CLICKHOUSE_DATABASE": database,
        "PEAKEND_CLICKHOUSE_SSL_CAFILE": ca if clickhouse_ca else "",
        "PEAKEND_SINK_BATCH_SECONDS": "0.5",
        "PEAKEND_METRICS_TLS_CERTFILE": stack["PEAKEND_METRICS_TLS_CERTFILE"],
        "PEAKEND_METRICS_TLS_KEYFILE": stack["PEAKEND_METRICS_TLS_KEYFILE"],
    }
    return StreamSetup(env=env, database=database, admin_url=stack["PEAKEND_CLICKHOUSE_ADMIN_URL"],
                       writer_url=writer_url, topic=env["PEAKEND_TOPIC_TOUCHPOINTS"],
                       partitions=int(env["PEAKEND_PARTITIONS"]), ca_file=ca)


def test_worker_streams_over_tls_into_clickhouse(stack: dict[str, str], tmp_path: Path) -> None:
    setup = worker_setup(stack, tmp_path)
    settings = setup.settings()
    events = tmp_path / "events.jsonl"
    assert main(["generate", "--events", "600", "--seed", "21", "--span", "2h",
                 "--invalid-fraction", "0.03", "--output", str(events), "--quiet"]) == 0
    lines = read_lines(events)
    replay = replay_records(lines, setup.partitions, settings)
    valid = len(lines) - len(replay.dead_letters)
    assert replay.dead_letters and valid > 0
    worker = Worker(setup, tmp_path, "tls")
    try:
        # kafka-python over the SSL listener, verified (the worker's clients are aiokafka/Faust)
        produce_lines(settings.kafka_bootstrap, setup.topic, lines,
                      client_options=settings.kafka_client_options())
        wait_until(
            lambda: count(setup, "SELECT count() FROM touchpoint_events FINAL") == valid
            and count(setup, "SELECT count() FROM dead_letters FINAL") == len(replay.dead_letters),
            180, f"{valid} events and {len(replay.dead_letters)} dead letters in ClickHouse "
            "(over clickhouses://)", worker.log_tail)
        want = journeys_of_replay(replay)
        wait_until(lambda: journeys_in_clickhouse(setup) == want, 60,
                   "the journeys in ClickHouse to equal replay's", worker.log_tail)
        assert worker.alive(), worker.log_tail()
        # the worker's /metrics over HTTPS, verified against the same CA
        context = ssl.create_default_context(cafile=stack["PEAKEND_TEST_TLS_CAFILE"])
        url = f"https://127.0.0.1:{worker.metrics_port}/metrics"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(answer.read().decode())
                       for s in family.samples}
        assert samples[("peakend_events_in_total", (("topic", setup.topic),))] == len(lines)
        assert samples[("peakend_clickhouse_up", ())] == 1
    finally:
        worker.stop()
    assert "CERTIFICATE_VERIFY_FAILED" not in worker.log_path.read_text(errors="replace")


@pytest.mark.parametrize(("server", "variable"), [("kafka", "PEAKEND_KAFKA_SSL_CAFILE"),
                                                  ("clickhouse", "PEAKEND_CLICKHOUSE_SSL_CAFILE")])
def test_worker_without_the_ca_is_refused_in_one_line(
    stack: dict[str, str], tmp_path: Path, server: str, variable: str
) -> None:
    setup = worker_setup(stack, tmp_path, kafka_ca=server != "kafka",
                         clickhouse_ca=server != "clickhouse")
    env = {**os.environ, **setup.env, "PEAKEND_DATA_DIR": str(tmp_path / "state"),
           "PEAKEND_METRICS_PORT": "0"}
    started = time.monotonic()
    worker = subprocess.run([sys.executable, "-m", "pipeline.cli", "worker"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    took = time.monotonic() - started
    assert worker.returncode == 2, (worker.returncode, worker.stderr[-3000:])
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 1, worker.stderr[-3000:]
    assert lines[0].startswith("peakend worker: ") and "certificate is not trusted" in lines[0]
    assert f"set {variable} to the CA that signed it" in lines[0], lines[0]
    assert "Traceback" not in worker.stdout + worker.stderr
    assert took < 60, f"the refusal took {took:.0f} s"  # not a minute of bootstrap retries


def test_batch_jobs_over_tls(stack: dict[str, str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """`peakend backfill`, `export` and `report` over clickhouses://, from the settings a
    deployment sets; `export` without the CA is refused in one line."""
    setup = worker_setup(stack, tmp_path)
    for name in ("PEAKEND_CLICKHOUSE_URL", "PEAKEND_CLICKHOUSE_DATABASE",
                 "PEAKEND_CLICKHOUSE_SSL_CAFILE"):
        monkeypatch.setenv(name, setup.env[name])
    monkeypatch.setenv("PEAKEND_CLICKHOUSE_READER_URL", "")  # report: the writer's URL
    events = tmp_path / "events.parquet"
    assert main(["generate", "--events", "400", "--seed", "22", "--span", "2h", "--to",
                 "parquet", "--output", str(events), "--quiet"]) == 0
    assert main(["backfill", str(events), "--no-checkpoint", "--quiet"]) == 0
    stored = count(setup, "SELECT count() FROM journeys FINAL")
    assert stored > 0
    exported = tmp_path / "journeys.parquet"
    assert main(["export", "--table", "journeys", "--output", str(exported), "--quiet"]) == 0
    assert pq.read_table(exported).num_rows == stored
    report = tmp_path / "report.html"
    assert main(["report", "--output", str(report)]) == 0
    assert report.stat().st_size > 0

    capsys.readouterr()
    monkeypatch.setenv("PEAKEND_CLICKHOUSE_SSL_CAFILE", "")  # the system's CAs
    assert main(["export", "--table", "journeys", "--output", str(tmp_path / "no.parquet"),
                 "--quiet"]) != 0
    refused = capsys.readouterr().err.strip().splitlines()
    assert len(refused) == 1 and "CERTIFICATE_VERIFY_FAILED" in refused[0], refused
