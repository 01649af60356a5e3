"""Shared fixtures. Integration fixtures start the real servers through scripts/stack.sh and fail
the test (never skip it) when a server cannot start."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator

import pytest

from tests.support.stack import ClickHouseUrls, run_stack, stack_env


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    run_stack("start", "kafka")
    return stack_env()["PEAKEND_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def clickhouse_urls() -> ClickHouseUrls:
    run_stack("start", "clickhouse")
    env = stack_env()
    return ClickHouseUrls(
        writer=env["PEAKEND_CLICKHOUSE_URL"],
        reader=env["PEAKEND_CLICKHOUSE_READER_URL"],
        admin=env["PEAKEND_CLICKHOUSE_ADMIN_URL"],
    )


@pytest.fixture(autouse=True)
def _remove_stream_resources() -> Iterator[None]:
    """After each test, the topics and database of every stream it set up are deleted
    (tests/support/stream.py): left behind, thousands of them slowed the shared broker down."""
    yield
    stream = sys.modules.get("tests.support.stream")  # not imported: nothing was set up
    if stream is not None and stream._CREATED:
        for problem in stream.remove_stream_resources():
            warnings.warn(f"cleanup: {problem}", stacklevel=1)
