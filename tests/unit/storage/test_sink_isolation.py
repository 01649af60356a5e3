"""The sink isolates rows ClickHouse refuses for their content (pipeline.storage.sink.isolate) and
tells content failures from a server that is down, without any server: the inserts go to a
stand-in warehouse that refuses rows the way clickhouse-driver does (TypeMismatchError, Code 53)
or fails the way a dead server does (NetworkError). The real server: tests/integration/
test_sink_poison_rows.py."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import pytest
from clickhouse_driver import errors

from pipeline.contract.dead_letters import DeadLetter
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.storage.sink import REJECTED_REASON, ClickHouseSink, isolate
from pipeline.storage.warehouse import Warehouse, failure_kind
from pipeline.stream.topics import topic_tables


def _poison(x: int) -> None:
    if x < 0:
        raise errors.TypeMismatchError("Column a: argument out of range")


@pytest.mark.parametrize("seed", range(20))
def test_isolate_inserts_every_good_item_once_and_rejects_exactly_the_bad(seed: int) -> None:
    rng = random.Random(seed)
    items = [rng.choice([1, 1, 1, 1, -1]) * i for i in range(1, rng.randint(1, 300))]
    landed: list[int] = []
    calls = [0]

    def insert(chunk: list[int]) -> None:
        calls[0] += 1
        for x in chunk:
            _poison(x)
        landed.extend(chunk)

    refused: list[tuple[int, BaseException]] = []
    isolate([list(items)], insert, refused)
    bad = [x for x in items if x < 0]
    assert sorted(landed) == sorted(x for x in items if x > 0)
    assert len(landed) == len(set(landed))
    assert [x for x, _ in refused] == bad  # in batch order
    assert all(isinstance(e, errors.TypeMismatchError) for _, e in refused)
    # bisection, not one insert per row: about 2k log2(n/k) + 1 inserts for k bad of n
    n, k = len(items), max(1, len(bad))
    assert calls[0] <= 1 + 2 * k * (max(1, (n // k)).bit_length() + 1)


def test_a_batch_of_only_poison_rows_ends() -> None:
    def insert(chunk: list[int]) -> None:
        for x in chunk:
            _poison(x)

    refused: list[tuple[int, BaseException]] = []
    isolate([[-1, -2, -3, -4, -5]], insert, refused)
    assert [x for x, _ in refused] == [-1, -2, -3, -4, -5]


def test_a_connection_failure_stops_isolation_and_a_retry_resumes_without_duplicates() -> None:
    items = list(range(1, 65))
    items[10] = -11
    items[50] = -51
    landed: list[int] = []
    failures = iter([False, False, False, True, False, False, True] + [False] * 100)

    def insert(chunk: list[int]) -> None:
        if next(failures):
            raise errors.NetworkError("Code: 210. Connection reset by peer")
        for x in chunk:
            _poison(x)
        landed.extend(chunk)

    chunks = [list(items)]
    refused: list[tuple[int, BaseException]] = []
    retries = 0
    while True:
        try:
            isolate(chunks, insert, refused)
            break
        except errors.NetworkError:
            retries += 1
    assert retries == 2
    assert sorted(landed) == [x for x in items if x > 0]
    assert len(landed) == len(set(landed))
    assert [x for x, _ in refused] == [-11, -51]


def test_a_server_refusal_is_not_blamed_on_the_rows() -> None:
    def insert(chunk: list[int]) -> None:
        raise errors.ServerException("DB::Exception: Table peakend.journeys doesn't exist.", 60)

    chunks = [[1, 2, 3]]
    refused: list[tuple[int, BaseException]] = []
    with pytest.raises(errors.ServerException):
        isolate(chunks, insert, refused)
    assert chunks == [[1, 2, 3]] and refused == []


@pytest.mark.parametrize(("exc", "kind"), [
    (errors.NetworkError("Code: 210. Connection refused (127.0.0.1:9000)"), "connection"),
    (errors.SocketTimeoutError("Code: 209. timed out"), "connection"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection"),
    (EOFError("Unexpected EOF while reading bytes"), "connection"),
    (AssertionError(), "connection"),  # the driver's internal state, not the rows
    (errors.ServerException("DB::Exception: Timeout exceeded: elapsed 10 s", 159), "connection"),
    (errors.ServerException("DB::Exception: Memory limit exceeded", 241), "server"),
    (errors.ServerException("DB::Exception: Too many parts (300)", 252), "server"),
    # chdb and current servers: one batch spread over more than 100 months is the rows' fault
    (RuntimeError("Code: 252. DB::Exception: Too many partitions for single INSERT block (more "
                  "than 100). The limit is controlled by 'max_partitions_per_insert_block'"),
     "content"),
    (errors.ServerException("DB::Exception: Table x doesn't exist.", 60), "server"),
    (errors.ServerException("DB::Exception: peakend_writer: Authentication failed", 516),
     "server"),
    (errors.TypeMismatchError("Column a: argument out of range"), "content"),
    (errors.ServerException("DB::Exception: Elements 'n.x' and 'n.y' of Nested data structure "
                            "'n' (Array columns) have different array sizes.", 190), "content"),
    (RuntimeError("Code: 6. DB::Exception: Cannot parse input"), "content"),  # chdb
    (OverflowError("int too big to convert"), "content"),
    (ValueError("Invalid isoformat string: 'x'"), "content"),
])
def test_failure_kinds(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


# -- the sink's flush with a stand-in warehouse ---------------------------------------------------

class Refusing:
    """A Warehouse that refuses journeys rows whose `events` is negative (as the driver refuses a
    negative UInt32) and touchpoint rows whose event id starts with "refused", and can be made
    unreachable."""

    engine = "server"
    database = "peakend"

    def __init__(self) -> None:
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self.down = 0  # this many next inserts fail with a connection error
        self.columnar_calls = 0

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        if self.down:
            self.down -= 1
            raise errors.NetworkError("Code: 210. Connection refused (127.0.0.1:9000)")
        data = [dict(zip(columns, r, strict=True)) for r in rows]
        if any(r.get("events", 0) < 0 or str(r.get("event_id")).startswith("refused")
               for r in data):
            raise errors.TypeMismatchError(
                "Code: 53. Type mismatch in VALUES section. Column events: argument out of range")
        self.stored.setdefault(table, []).extend(data)
        return len(data)

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        """The sink's path (columns), refused as `insert` refuses the same rows."""
        self.columnar_calls += 1
        return self.insert(table, columns, zip(*data, strict=True))

    def close(self) -> None:
        pass


def journey_record(i: int, events: int) -> bytes:
    return json.dumps({
        "journey_id": f"j{i}", "customer_id": f"c{i}", "keyed_by": "journey_id", "status": "open",
        "close_reason": "",
        "started_at": "2026-11-22T17:10:00.000Z", "ended_at": "2026-11-22T17:20:00.000Z",
        "duration_seconds": 600.0, "events": events, "moments": 1,
        "peak_valence": -0.5, "peak_touchpoint": "checkout", "peak_at": "2026-11-22T17:15:00.000Z",
        "best_valence": -0.5, "worst_valence": -0.5, "end_valence": -0.5,
        "end_touchpoint": "checkout", "end_at": "2026-11-22T17:15:00.000Z",
        "end_window_valence": -0.5, "peak_end_score": -0.5, "mean_valence": -0.5,
        "first_touchpoint": "checkout", "last_touchpoint": "checkout",
        "channel": "web", "stage": "purchase", "version": 1,
    }).encode()


class Sinking(NamedTuple):
    """A sink over a `Refusing` warehouse whose dead letters land in `sent`."""

    sink: ClickHouseSink
    warehouse: Refusing
    sent: list[bytes]
    settings: Settings
    metrics: WorkerMetrics


def sinking() -> Sinking:
    settings = Settings.from_env({})
    metrics = WorkerMetrics.create()
    warehouse = Refusing()
    sent: list[bytes] = []

    async def send(letters: list[bytes]) -> None:
        sent.extend(letters)

    sink = ClickHouseSink(settings, lambda: cast(Warehouse, warehouse), metrics, migrate=False,
                          send_dead_letters=send)
    return Sinking(sink, warehouse, sent, settings, metrics)


def test_flush_stores_the_good_rows_dead_letters_the_bad_and_counts_them() -> None:
    sink, warehouse, sent, settings, metrics = sinking()
    try:
        sink.add(settings.topic_journeys, 0, 0, journey_record(0, 1))
    except (KeyError, ValueError) as exc:  # the record layout changed: say so, do not skip
        pytest.fail(f"the test's journey record no longer converts: {exc!r}")
    for i in range(1, 40):
        sink.add(settings.topic_journeys, i % 3, i, journey_record(i, -1 if i in (7, 23) else 2))
    warehouse.down = 2  # ClickHouse away for the first two attempts: retried, not dead-lettered
    asyncio.run(sink.flush())

    stored = sorted(int(r["journey_id"][1:]) for r in warehouse.stored["journeys"])
    assert stored == [i for i in range(40) if i not in (7, 23)]
    letters = [DeadLetter.from_json(b) for b in sent]
    assert [(d.reason, d.source_partition, d.source_offset) for d in letters] == [
        (REJECTED_REASON, 1, 7), (REJECTED_REASON, 2, 23)]
    assert "journeys" in letters[0].error and "argument out of range" in letters[0].error
    assert letters[0].original == journey_record(7, -1)
    reg = metrics.registry
    assert reg.get_sample_value("peakend_sink_rejected_rows_total", {"table": "journeys"}) == 2
    assert reg.get_sample_value("peakend_sink_insert_failures_total", {"table": "journeys"}) == 2
    assert reg.get_sample_value("peakend_clickhouse_up") == 1
    assert reg.get_sample_value("peakend_sink_oldest_pending_seconds") == 0
    assert warehouse.columnar_calls > 0  # the sink inserted columns, and blamed single rows


def test_a_record_the_mapping_cannot_convert_is_a_dead_letter_alone() -> None:
    """Columns are built per chunk: one record with a time that does not parse fails its
    chunk's columns, and the halving blames it alone; the others land, in order."""
    sink, warehouse, sent, settings, _ = sinking()
    bad = json.dumps({**json.loads(journey_record(5, 1)), "started_at": "soon"}).encode()
    for i in range(12):
        sink.add(settings.topic_journeys, 0, i, bad if i == 5 else journey_record(i, 1))
    asyncio.run(sink.flush())
    assert [r["journey_id"] for r in warehouse.stored["journeys"]] == [
        f"j{i}" for i in range(12) if i != 5]
    letters = [DeadLetter.from_json(b) for b in sent]
    assert [(d.source_offset, d.original) for d in letters] == [(5, bad)]
    assert "Invalid isoformat string: 'soon'" in letters[0].error


def test_a_record_the_sink_cannot_read_is_a_dead_letter_and_the_rest_lands() -> None:
    """Not JSON, JSON that is not an object (an array once crashed every flush on its dead
    letter's event id, so the sink never committed), or a batch record of an unknown format
    on the journey-events topic: each a dead letter `unreadable` with the record, counted;
    the readable records around them land."""
    from pipeline.contract.dead_letters import UNREADABLE_REASON
    from pipeline.stream.topics import journey_events_topic

    sink, warehouse, sent, settings, metrics = sinking()
    bad = [b"not json", b"[1, 2]", b'"text"', b"[" * 5000 + b"]" * 5000]
    for offset, value in enumerate([journey_record(0, 1), *bad, journey_record(5, 1)]):
        sink.add(settings.topic_journeys, 0, offset, value)
    sink.add(journey_events_topic(settings), 2, 9, b'{"f":99,"e":[]}')
    asyncio.run(asyncio.wait_for(sink.flush(), 30))
    assert [r["journey_id"] for r in warehouse.stored["journeys"]] == ["j0", "j5"]
    letters = [DeadLetter.from_json(b) for b in sent]
    assert [(d.reason, d.source_topic, d.source_offset, d.original) for d in letters] == [
        *[(UNREADABLE_REASON, settings.topic_journeys, i + 1, v) for i, v in enumerate(bad)],
        (UNREADABLE_REASON, journey_events_topic(settings), 9, b'{"f":99,"e":[]}')]
    assert "not JSON" not in letters[1].error and "a JSON list, not an object" in letters[1].error
    assert "not a journey batch of format 1, 2 or 3" in letters[-1].error
    reg = metrics.registry
    assert reg.get_sample_value("peakend_sink_rejected_rows_total", {"table": "journeys"}) == 4
    assert reg.get_sample_value("peakend_sink_rejected_rows_total",
                                {"table": "touchpoint_events"}) == 1


def test_a_refused_touchpoint_of_a_batch_record_is_a_dead_letter_of_its_own_record() -> None:
    """Touchpoint rows are held as the batch records' entries (no per-row wrapper): a row
    ClickHouse refuses still becomes a dead letter naming the touchpoints topic, the partition
    and offset its event was read from, its raw record and its event id; the rest lands, and
    the read's records are committed past."""
    from types import SimpleNamespace

    from pipeline.privacy import PersonalData
    from pipeline.stream.entry import Router
    from pipeline.stream.topics import journey_events_topic

    sink, warehouse, sent, settings, metrics = sinking()
    raws = [json.dumps({
        "event_id": f"{'refused' if i in (3, 8) else 'e'}-{i}", "schema_version": 1,
        "occurred_at": f"2026-11-22T17:{10 + i:02d}:00Z", "producer": "web",
        "customer_id": f"c{i % 3}", "type": "interaction", "touchpoint": "checkout",
        "channel": "web", "stage": "purchase", "valence": 0.5}).encode() for i in range(12)]
    router = Router(topic=settings.topic_touchpoints, partitions=1, max_event_bytes=65536,
                    privacy=PersonalData.from_settings(settings))
    routed = router.route([SimpleNamespace(partition=5, offset=100 + i, value=v, timestamp=0,
                                           timestamp_type=0) for i, v in enumerate(raws)], 0)
    assert routed.events == 12 and not routed.dead_letters
    batch = routed.batches[0]
    topic = journey_events_topic(settings)
    sink.add_records(topic, 0, [SimpleNamespace(offset=40 + i, value=v, timestamp=1_000)
                                for i, v in enumerate(batch)])
    asyncio.run(asyncio.wait_for(sink.flush(), 30))
    assert sorted(r["event_id"] for r in warehouse.stored["touchpoint_events"]) == sorted(
        f"e-{i}" for i in range(12) if i not in (3, 8))
    letters = [DeadLetter.from_json(b) for b in sent]
    assert [(d.reason, d.source_topic, d.source_partition, d.source_offset, d.event_id,
             d.original) for d in letters] == [
        (REJECTED_REASON, settings.topic_touchpoints, 5, 100 + i, f"refused-{i}", raws[i])
        for i in (3, 8)]
    assert "touchpoint_events" in letters[0].error
    assert metrics.registry.get_sample_value("peakend_sink_rejected_rows_total",
                                             {"table": "touchpoint_events"}) == 2
    assert sink._offsets == {} and sink._count == 0  # committed and cleared


class Cluster:
    """Stands in for the consumer's client and its metadata request: answers, hangs, or fails
    (aiokafka's `_metadata_update` answers False when no broker answered)."""

    def __init__(self) -> None:
        self.state = "up"
        self.asked: list[list[str]] = []
        self._client = self

    async def _metadata_update(self, cluster: object, topics: list[str]) -> bool:
        self.asked.append(list(topics))
        if self.state == "hung":
            await asyncio.sleep(60)
        return self.state != "down"


def test_kafka_up_follows_the_metadata_probe() -> None:
    metrics = WorkerMetrics.create()
    sink = ClickHouseSink(Settings.from_env({}), lambda: cast(Warehouse, Refusing()), metrics,
                          migrate=False)
    cluster = Cluster()
    seen: list[float | None] = []

    async def main() -> None:
        probe = asyncio.ensure_future(
            sink._probe_kafka(cast(Any, cluster), every=0.05, timeout=0.2))
        for state in ("up", "hung", "up", "down", "up"):
            cluster.state = state
            await asyncio.sleep(0.5)
            seen.append(metrics.registry.get_sample_value("peakend_kafka_up"))
        sink.stop()
        await asyncio.wait_for(probe, 5)

    asyncio.run(main())
    assert seen == [1, 0, 1, 0, 1]
    # only the sink's own topics: all of a shared cluster's cost 0.18 s of CPU per probe
    assert cluster.asked and all(
        sorted(asked) == sorted(topic_tables(Settings.from_env({}))) for asked in cluster.asked)


class Recording:
    """A warehouse (chdb) whose statements and close are recorded under a name."""

    def __init__(self, name: str, log: list[tuple[str, str]], inner: Warehouse) -> None:
        self.name, self.log, self.inner = name, log, inner
        self.database = inner.database

    def execute(self, sql: str, params: Any = None) -> None:
        self.log.append((self.name, sql.split()[0]))
        self.inner.execute(sql, params)

    def query(self, sql: str, params: Any = None) -> list[Any]:
        self.log.append((self.name, "query"))
        return self.inner.query(sql, params)

    def insert(self, table: str, columns: Any, rows: Any) -> None:
        self.log.append((self.name, "INSERT"))
        self.inner.insert(table, columns, rows)

    def close(self) -> None:
        self.log.append((self.name, "close"))


def test_migrations_run_on_their_own_connection_with_ddl_patience() -> None:
    """The sink's migrations use `ddl_warehouse` (DDL_TIMEOUTS, not the insert connection's
    8 s: ON CLUSTER DDL under load timed out at every attempt), which is closed after them."""
    from pipeline.storage.warehouse import DDL_TIMEOUTS, SINK_TIMEOUTS
    from tests.unit.storage.ch_helpers import chdb_database

    assert DDL_TIMEOUTS.send_receive > 180 > 8 >= SINK_TIMEOUTS.send_receive  # the server's
    log: list[tuple[str, str]] = []  # distributed_ddl_task_timeout lies between them
    with chdb_database(prefix="pe_ddl") as dbs:
        sink = ClickHouseSink(
            Settings.from_env({}), lambda: cast(Warehouse, Recording("inserts", log, dbs.writer)),
            WorkerMetrics.create(),
            ddl_warehouse=lambda: cast(Warehouse, Recording("ddl", log, dbs.writer)))
        assert asyncio.run(asyncio.wait_for(sink.apply_migrations(), 120)) is True
    assert {name for name, _ in log} == {"ddl"}
    assert any(kind == "CREATE" for _, kind in log)
    assert log[-1] == ("ddl", "close")


class Committing:
    """The sink's consumer, as far as commits go."""

    def __init__(self) -> None:
        self.commits: list[dict[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))


def test_a_partition_moved_past_deleted_records_is_committed_there() -> None:
    """Retention deleted records the sink had not read (pipeline/kafka_expiry.py): holding
    nothing, the sink commits the new position at once; holding rows, only once they have
    landed, in the same commit. Before, it committed only after a record, so a partition
    without new records kept the deleted ones as lag in `peakend lag`."""
    from aiokafka.structs import TopicPartition

    sink, warehouse, _, settings, _ = sinking()
    consumer = Committing()
    sink._consumer = cast(Any, consumer)
    idle, busy = (TopicPartition(settings.topic_journeys, p) for p in (0, 1))
    asyncio.run(sink.moved(idle, 500))
    assert consumer.commits == [{idle: 500}]
    sink.add(settings.topic_journeys, 1, 7, journey_record(7, 1))
    asyncio.run(sink.moved(busy, 90))
    assert consumer.commits == [{idle: 500}]  # row 7 held: not past it before it lands
    asyncio.run(sink.flush())
    assert [r["journey_id"] for r in warehouse.stored["journeys"]] == ["j7"]
    assert consumer.commits == [{idle: 500}, {busy: 90}]
