"""The pipeline benchmark (bench/bench_pipeline.py, used by bench/run_all.py) still runs: a tiny
throughput and latency measurement on the real servers gives positive, ordered numbers."""

from __future__ import annotations

import math

import pytest

from bench import bench_pipeline as bp
from pipeline.settings import Settings
from tests.support.stack import ClickHouseUrls

pytestmark = pytest.mark.integration


def test_pipeline_benchmark_smoke(kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    source = bp.EventSource()
    with bp.running_stream(kafka_bootstrap, clickhouse_urls, workers=1, partitions=2) as stream:
        bp.warm_up(stream, source, n=200)
        t = bp.throughput(stream, source.phase(2000), timeout=180, settle_s=2.0)
        assert t.events == 2000
        assert t.seconds > 0 and t.rate > 0 and t.produce_seconds > 0
        assert t.worker_cpu_seconds > 0
        # the CPU split by process adds up, and names the worker and each of its children
        roles = {"worker", "entry", "stage-two", "sink"}
        assert set(t.cpu_seconds_by_role) == roles, t.cpu_seconds_by_role
        assert math.isclose(sum(t.cpu_seconds_by_role.values()), t.worker_cpu_seconds)
        assert all(t.peak_rss_mib_by_role[role] > 10 for role in roles)
        # every event of the run became a touchpoint_events row (at least once)
        assert t.sink_rows.get("touchpoint_events", 0) >= 2000, t.sink_rows
        lat = bp.latency(stream, source.phase(600), 300.0, probes=100, drain_timeout=90)
    assert lat.achieved > 0 and lat.probes > 0
    assert lat.missing_raw == 0, "every probe must reach touchpoint_events"
    assert lat.journey, "journey probes must be seen"
    for which in ("raw", "journey"):
        p50, p95, p99, worst = lat.summary(which)
        assert all(not math.isnan(v) for v in (p50, p95, p99, worst)), which
        assert 0 < p50 <= p95 <= p99 <= worst, (which, p50, p95, p99, worst)


def test_stage_rate_smoke() -> None:
    phase = bp.EventSource().phase(1500)
    settings = Settings.from_env({"PEAKEND_PARTITIONS": "2"})
    rate = bp.stage_rate(phase, settings, profile=True, top=5)
    assert rate.rate > 0 and "ncalls" in rate.profile


def test_peers_benchmark_smoke(kafka_bootstrap: str) -> None:
    """bench/peers.py (run_all's side-by-side table): the raw client and the minimal Faust app
    read every event of a small run; each figure is positive. (The Quix Streams peer installs
    its own virtualenv from PyPI, so it runs in `bench/run_all.py` only.)"""
    from bench import peers

    runs = peers.run(kafka_bootstrap, 3_000, ("raw", "faust"), timeout=240)
    assert [r.peer for r in runs] == ["raw", "faust"]
    raw, faust = runs
    assert raw.events == 3_000
    # the Faust app's clock starts at its first output, so a few are before it
    assert 0 < faust.events <= 3_000 and faust.seconds > 0 and faust.cpu_seconds > 0
    assert raw.per_s > faust.per_s, (raw.line(), faust.line())
