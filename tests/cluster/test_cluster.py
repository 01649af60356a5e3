"""The pipeline on a real cluster (scripts/cluster.sh): three Kafka brokers with replication
factor 3 and min.insync.replicas 2, ZooKeeper, ClickHouse 18.16 as two shards of two replicas
with Replicated tables behind Distributed ones. `make cluster-test` runs it; the module fixture
starts the cluster and stops it at the end, and fails loudly when it cannot start.

What lands in ClickHouse must equal `peakend replay` of the same input, through the Distributed
tables and the analyst views, on every server, with the rows spread over both shards; and after
faults injected while input is still arriving: a broker SIGKILLed and a replica stopped, the
partition leader's broker stopped, ZooKeeper stopped for 30 s, one of two workers SIGKILLed
(bench/cluster.py runs the same functions, one stream per fault).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import (
    ClusterStack,
    cluster_setup,
    faults_while_producing,
    on_replica,
)
from bench.faults import FaultResult, generate_lines
from pipeline.storage import migrate
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream.topics import ensure_topics
from tests.support.stream import (
    StreamSetup,
    Worker,
    count,
    journeys_of_replay,
    metrics_of_replay,
    produce_lines,
    replay_records,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterStack]:
    stack = ClusterStack()
    try:
        stack.start()
    except RuntimeError as exc:
        pytest.fail(f"the cluster did not start: {exc}", pytrace=False)
    yield stack
    # stopped, and its data deleted: the next start on empty logs takes a minute, while a
    # restart that loads the topics of earlier runs took 5 minutes on this machine
    stack.run("wipe")


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    wh = ServerWarehouse(url)
    try:
        return wh.query(sql, params)
    finally:
        wh.close()


def test_migrate_creates_replicated_tables_behind_distributed_ones(
        cluster: ClusterStack, tmp_path: Path) -> None:
    setup = cluster_setup(cluster, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "migrate"], cwd=ROOT,
                          env={**os.environ, **setup.env}, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    plain = migrate.render("\n".join(m.text for m in migrate.load()), setup.database)
    views = {s.split()[5] for s in plain if s.startswith("CREATE VIEW IF NOT EXISTS")}
    engines = [dict(query(cluster.urls(replica).admin,
                          "SELECT name, engine_full FROM system.tables WHERE database = %(db)s",
                          {"db": setup.database})) for replica in cluster.servers()]
    tables = {"journeys", "metric_buckets", "alerts", "dead_letters", "touchpoint_events"}
    for replica in engines:
        for table in tables:
            assert replica[f"{table}_local"].startswith("ReplicatedReplacingMergeTree("), table
            assert replica[table].startswith(
                f"Distributed(peakend, {setup.database}, {table}_local, cityHash64("), table
        assert views <= replica.keys()
    # the key of a row's versions (ORDER BY) decides its shard: every shard key is over it
    for statement in migrate.parse("\n".join(m.text for m in migrate.load())):
        if statement.shard_key and statement.sql.startswith("CREATE TABLE"):
            order_by = statement.sql.rsplit("ORDER BY", 1)[1]
            for column in statement.shard_key.removeprefix("cityHash64(")[:-1].split(","):
                assert column.strip() in order_by, (statement.sql.split()[5], column)


def views_of_cluster(setup: StreamSetup) -> tuple[dict[str, tuple[Any, ...]],
                                                   dict[tuple[Any, ...], float]]:
    """journeys_latest by journey, and metric_partials_latest's n summed per bucket."""
    columns, _ = rows("journeys", [])
    journeys = {r[0]: tuple(r) for r in query(
        setup.writer_url, f"SELECT {', '.join(columns)} FROM journeys_latest")}
    n: dict[tuple[Any, ...], float] = defaultdict(float)
    for metric, dim, value, start, total in query(
            setup.writer_url, "SELECT metric, segment_dim, segment_value, "
            "toInt64(toUInt32(window_start)) * 1000, n FROM metric_partials_latest"):
        n[(metric, dim, value, int(start))] += float(total)
    return journeys, {k: v for k, v in n.items() if v}


def test_stream_on_the_cluster_equals_replay_through_distributed_tables_and_views(
        cluster: ClusterStack, tmp_path: Path) -> None:
    setup = cluster_setup(cluster, tmp_path)
    lines = generate_lines(tmp_path, 3_000, seed=33)
    ensure_topics(setup.settings())  # the brokers do not create topics on first use
    produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines)
    replay = replay_records(lines, setup.partitions, setup.settings())
    status = rows("journeys", [])[0].index("status")
    # journeys_latest leaves out journeys merged into another one
    want_journeys = {k: v for k, v in journeys_of_replay(replay).items()
                     if v[status] != "superseded"}
    assert len(want_journeys) < len(journeys_of_replay(replay))  # the input has merged ones
    want_n = {k: v[0] for k, v in metrics_of_replay(replay).items()}
    worker = Worker(setup, tmp_path, "views")
    try:
        wait_until(lambda: count(setup, "SELECT count() FROM journeys_latest")
                   >= len(want_journeys) and views_of_cluster(setup)[0] == want_journeys,
                   600, "journeys_latest equal to replay", worker.log_tail)
    finally:
        worker.stop()
    for server in cluster.servers():
        journeys, n = views_of_cluster(on_replica(setup, cluster, server))
        assert journeys == want_journeys, server
        assert n == want_n, server
    # the rows are spread over the shards by key: each shard holds a part, the parts add up
    shards = cluster.shards()
    assert len(shards) == 2, shards
    for table in ("journeys", "touchpoint_events", "metric_buckets"):
        parts = [count(on_replica(setup, cluster, servers[0]),
                       f"SELECT count() FROM {table}_local") for servers in shards.values()]
        assert all(part > 0 for part in parts), (table, parts)
        assert sum(parts) == count(setup, f"SELECT count() FROM {table}"), (table, parts)


# A failed fault stream's files (fault-results.json with the differing journeys explained, the
# workers' logs, the input) outlive pytest's temporary directories (it keeps the last three)
# and the cluster's wipe at the end of the module.
KEPT = ROOT / ".stack" / "cluster-failures"


def kept_on_failure(tmp_path: Path, run: Callable[[], None]) -> None:
    """`run`; when it fails, its directory (but the RocksDB state) is copied to KEPT first."""
    try:
        run()
    except BaseException as exc:
        kept = KEPT / f"{tmp_path.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        shutil.copytree(tmp_path, kept, ignore=shutil.ignore_patterns("state-*"))
        exc.add_note(f"the run's files (fault-results.json, worker logs, input) are kept in "
                     f"{kept}")
        raise


def differing(result: FaultResult) -> object:
    """The differing journeys by partition (what a failure shows first), else the detail."""
    explained = result.detail.get("explained")
    return explained["journeys_by_partition"] if explained else result.detail


def exact(result: FaultResult) -> None:
    assert (result.lost, result.duplicates) == (0, 0), (
        result.row(), differing(result), result.detail)
    assert result.in_clickhouse == result.valid, result.row()
    assert result.dead_letters == result.dead_letters_expected, result.row()


def exact_through(results: tuple[FaultResult, FaultResult]) -> None:
    for result in results:
        exact(result)
    assert all(results[0].detail["input_arriving_during_each_fault"]), results[0].notes
    assert results[0].worker_restarts == 0, results[0].notes


def test_broker_sigkill_and_replica_stop_while_input_arrives_lose_nothing(
        cluster: ClusterStack, tmp_path: Path) -> None:
    def run() -> None:
        results = faults_while_producing(cluster, tmp_path, ["broker-kill", "replica-stop"],
                                         rate=40, down_s=20, timeout=600)
        exact_through(results)  # the stopped replica caught up from the other of its shard

    kept_on_failure(tmp_path, run)


def test_leader_stop_zookeeper_stop_and_worker_kill_while_input_arrives_lose_nothing(
        cluster: ClusterStack, tmp_path: Path) -> None:
    def run() -> None:
        results = faults_while_producing(cluster, tmp_path,
                                         ["leader-stop", "zookeeper", "worker-kill"],
                                         rate=40, down_s=20, zookeeper_s=30, timeout=600)
        exact_through(results)
        d = results[0].detail
        assert d["leader_moved_to"] is not None, results[0].notes
        # without ZooKeeper the replicas keep serving reads; inserts resume after its restart
        assert d["zookeeper_reads_ok"] > 0 and d["zookeeper_reads_failed"] == 0, (
            results[0].notes)
        assert d["inserts_resumed_after_s"] is not None, results[0].notes

    kept_on_failure(tmp_path, run)
