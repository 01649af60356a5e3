"""A round trip through the local broker's SASL_PLAINTEXT listener (PLAIN), with the settings a
deployment would use: the producer library sends, an aiokafka consumer built from
`Settings.aiokafka_client_options()` (as the sink's is; `kafka_util.consume`) reads, and a wrong
password is refused."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaError

from pipeline.producer import TouchpointProducer
from pipeline.settings import Settings
from tests.integration.kafka_util import consume, create_topic, unique_topic
from tests.support.stack import stack_env
from tests.unit.contract.contract_corpus import VALID

pytestmark = pytest.mark.integration


def sasl_settings(password: str | None = None, **extra: str) -> Settings:
    env = stack_env()
    return Settings.from_env({
        "PEAKEND_KAFKA_BOOTSTRAP": env["PEAKEND_TEST_KAFKA_SASL_BOOTSTRAP"],
        "PEAKEND_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "PEAKEND_KAFKA_SASL_MECHANISM": "PLAIN",
        "PEAKEND_KAFKA_SASL_USERNAME": env["PEAKEND_TEST_KAFKA_SASL_USERNAME"],
        "PEAKEND_KAFKA_SASL_PASSWORD": password or env["PEAKEND_TEST_KAFKA_SASL_PASSWORD"],
        **extra,
    })


def test_produce_and_consume_through_sasl_plain(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, unique_topic("sasl"), partitions=2)
    settings = sasl_settings(PEAKEND_TOPIC_TOUCHPOINTS=topic)
    sent = [raw for _, raw in VALID[:10]]
    with TouchpointProducer(settings) as producer:
        for raw in sent:
            producer.send(raw)
    assert sorted(consume(settings, topic, len(sent))) == sorted(sent)


def test_wrong_password_is_refused(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, unique_topic("sasl"), partitions=1)
    with pytest.raises(KafkaError):
        consume(sasl_settings(password="not-the-password"), topic, 1)
