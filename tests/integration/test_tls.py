"""TLS on every hop (issue 21), on a private stack with TLS (tests/integration/tls_stack.py):

- Kafka SSL and SASL_SSL listeners: the topic admin (`ensure_topics`), the producer library, an
  aiokafka consumer built as the sink's and the entry stage's are (`aiokafka_client_options`) and
  the lag reader (`pipeline_lag`, kafka-python) all connect with the broker's certificate
  verified against the generated CA; a client without that CA is refused.
- ClickHouse secure native port (`clickhouses://` URLs, `PEAKEND_CLICKHOUSE_SSL_CAFILE`): `peakend
  migrate` and a write/read round trip; HTTPS (Grafana's port) answers with the CA; a client
  without the CA is refused on both.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from pipeline.cli import main
from pipeline.contract.dead_letters import DeadLetter
from pipeline.producer import TouchpointProducer
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream.progress import pipeline_lag
from pipeline.stream.topics import ensure_topics
from tests.integration.tls_stack import tls_stack
from tests.unit.contract.contract_corpus import VALID

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    with tls_stack("kafka", "clickhouse") as env:
        yield env


def kafka_settings(stack: dict[str, str], protocol: str, *, with_ca: bool = True,
                   **extra: str) -> Settings:
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
    return Settings.from_env(env)


def consume(settings: Settings, topic: str, count: int) -> list[bytes]:
    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
            group_id=f"{topic}-tls", enable_auto_commit=False, request_timeout_ms=15000,
            **settings.aiokafka_client_options(),
        )
        async with asyncio.timeout(30):
            await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < count:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend(r.value for r in records if r.value is not None)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


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
