"""Every consumer group reader of the pipeline refreshes its metadata every
`METADATA_MAX_AGE_MS` (pipeline/kafka_metadata.py): the agents' Faust consumer (both apps), the
entry stage's and the ClickHouse sink's. With aiokafka's 5-minute default, a rebalance just
after a broker restart left stage two's group with nothing assigned for 5 minutes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.app import build_worker
from pipeline.kafka_metadata import METADATA_MAX_AGE_MS
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.stage_two import StageRole


class Built(Exception):
    """Raised by a stand-in consumer once it has seen its options."""


async def _nothing(*_: Any) -> None:
    return None


def test_metadata_is_refreshed_well_under_aiokafkas_default() -> None:
    assert 1_000 <= METADATA_MAX_AGE_MS <= 30_000 < 300_000


@pytest.mark.parametrize("role", [StageRole.ONE, StageRole.TWO, StageRole.ALL])
def test_the_agents_consumer_of_each_app(tmp_path: Path, role: StageRole) -> None:
    async def consumer_of() -> Any:
        worker = build_worker(Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path)}),
                              migrate=False, role=role)
        consumer: Any = worker.app.transport.create_consumer(
            callback=_nothing, on_partitions_revoked=_nothing, on_partitions_assigned=_nothing)
        return consumer._thread._create_worker_consumer(worker.app.transport)

    kafka = asyncio.run(consumer_of())
    assert kafka._client._metadata_max_age_ms == METADATA_MAX_AGE_MS


def options_built(monkeypatch: pytest.MonkeyPatch, module: Any,
                  run: Callable[[], Coroutine[Any, Any, Any]]) -> dict[str, Any]:
    """The options `run` builds `module.AIOKafkaConsumer` with (stopped right there)."""
    seen: dict[str, Any] = {}

    def consumer(**options: Any) -> None:
        seen.update(options)
        raise Built

    monkeypatch.setattr(module, "AIOKafkaConsumer", consumer)
    with pytest.raises(Built):
        asyncio.run(run())
    return seen


def test_the_entry_stages_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka

    from pipeline.stream.entry_process import build_entry_stage

    stage = build_entry_stage(Settings.from_env({}), SimpleNamespace())
    seen = options_built(monkeypatch, aiokafka, stage._run_once)
    assert seen["metadata_max_age_ms"] == METADATA_MAX_AGE_MS


def test_the_sinks_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.storage import sink as sink_module

    sink = sink_module.ClickHouseSink(Settings.from_env({}), lambda: None,  # type: ignore[arg-type, return-value]
                                      WorkerMetrics.create(), migrate=False)
    seen = options_built(monkeypatch, sink_module, sink.run)
    assert seen["metadata_max_age_ms"] == METADATA_MAX_AGE_MS
