"""Kafka SASL/PLAIN settings reach every Kafka client (docs/design.md 4).

This pins the plumbing precisely, client by client, by capturing the keyword arguments each one
is built with; tests/integration/test_sasl_broker.py makes the round trip through the local
broker's SASL_PLAINTEXT listener."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.settings import Settings

SASL = {
    "PEAKEND_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "PEAKEND_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "PEAKEND_KAFKA_SASL_MECHANISM": "PLAIN",
    "PEAKEND_KAFKA_SASL_USERNAME": "peakend",
    "PEAKEND_KAFKA_SASL_PASSWORD": "s3cret",
}
WANT = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "peakend", "sasl_plain_password": "s3cret"}


class Captured(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("captured")
        self.kwargs = kwargs


def capture(*args: Any, **kwargs: Any) -> Any:
    raise Captured(kwargs)


def _has(kwargs: dict[str, Any]) -> None:
    assert {k: kwargs.get(k) for k in WANT} == WANT


def settings() -> Settings:
    return Settings.from_env(SASL)


def test_options_and_masking() -> None:
    s = settings()
    assert s.kafka_client_options() == WANT
    assert "s3cret" not in repr(s)
    assert dict((n, v) for n, v, _ in s.describe())["PEAKEND_KAFKA_SASL_PASSWORD"] == "***"


def test_producer_library(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.producer as producer

    monkeypatch.setattr(producer, "KafkaProducer", capture)
    with pytest.raises(Captured) as got:
        producer.TouchpointProducer(settings())
    _has(got.value.kwargs)


def test_worker_faust_credentials() -> None:
    import faust

    from pipeline.app import faust_credentials

    cred = faust_credentials(settings())
    assert isinstance(cred, faust.SASLCredentials)
    assert (cred.username, cred.password, str(cred.mechanism.value)) == ("peakend", "s3cret",
                                                                          "PLAIN")
    assert faust_credentials(Settings.from_env({})) is None


def test_sink_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.storage.sink as sink
    from pipeline.observability import WorkerMetrics

    monkeypatch.setattr(sink, "AIOKafkaConsumer", capture)
    s = sink.ClickHouseSink(settings(), lambda: None, WorkerMetrics.create())  # type: ignore
    with pytest.raises(Captured) as got:
        asyncio.run(s.run())
    _has(got.value.kwargs)
    assert s.group_id.endswith("-clickhouse-sink")


def test_topic_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.stream.topics as topics

    monkeypatch.setattr(topics, "KafkaAdminClient", capture)
    with pytest.raises(Captured) as got:
        topics.ensure_topics(settings())
    _has(got.value.kwargs)


def test_lag_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.stream.lag as lag

    monkeypatch.setattr(lag, "KafkaAdminClient", capture)
    with pytest.raises(Captured) as got:
        lag.pipeline_lag(settings())
    _has(got.value.kwargs)

    seen: list[dict[str, Any]] = []

    class Admin:
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

        def close(self) -> None: ...

    monkeypatch.setattr(lag, "KafkaAdminClient", Admin)
    monkeypatch.setattr(lag, "KafkaConsumer", capture)
    with pytest.raises(Captured) as got:
        lag.pipeline_lag(settings())
    _has(got.value.kwargs)
    _has(seen[0])
