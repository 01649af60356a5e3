"""Migration files, statement splitting and the cluster (Replicated + Distributed) variant."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pipeline.storage import migrate


def test_migrations_are_numbered_and_split() -> None:
    found = migrate.load()
    versions = [m.version for m in found]
    assert versions == sorted(set(versions)) and versions[0] == 1
    for m in found:
        assert m.statements("peakend"), m.name
        for statement in m.statements("peakend"):
            assert "peakend." not in statement  # no database prefixes


def test_cluster_variant_of_every_table() -> None:
    text = "\n".join(m.text for m in migrate.load())
    plain = migrate.render(text, "peakend")
    clustered = migrate.render(text, "peakend", "cx")
    tables = [re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s) for s in plain]
    names = [t.group(1) for t in tables if t]
    assert {"journeys", "metric_buckets", "alerts", "dead_letters", "touchpoint_events"} <= set(
        names)
    for name in names:
        local = next(s for s in clustered
                     if s.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER cx"))
        assert "ENGINE = ReplicatedReplacingMergeTree(" in local
        assert f"'/clickhouse/tables/{{shard}}/peakend/{name}_local', '{{replica}}'" in local
        dist = next(s for s in clustered
                    if s.startswith(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER cx AS"))
        assert re.search(rf"ENGINE = Distributed\(cx, peakend, {name}_local, cityHash64\(", dist)
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/peakend/" \
           "journeys_local', '{replica}', version)" in "\n".join(clustered)
    for statement in clustered:
        # DDL runs on every node; a data copy (migration 003) goes through Distributed tables
        assert "ON CLUSTER cx" in statement or statement.startswith("INSERT INTO ")
    views = [s for s in plain if s.startswith("CREATE VIEW")]
    assert len([s for s in clustered if s.startswith("CREATE VIEW")]) == len(views)


def test_cluster_tables_have_no_column_comments() -> None:
    """18.16 refuses a second replica of a table whose columns have comments: every comment
    goes, also one with a quote in it (`'the customer''s ...'` in 005 once left
    `s first journey ...'` behind, a syntax error on the real cluster)."""
    text = "\n".join(m.text for m in migrate.load())
    assert "''" in text  # the migrations do have a comment with a doubled quote
    for statement in migrate.render(text, "peakend", "cx"):
        if statement.startswith("CREATE TABLE"):
            # (a column may be called `comment`)
            assert not re.search(r"\sCOMMENT\s+'", statement, re.IGNORECASE), statement
            assert "'s " not in statement, statement
    sql = ("CREATE TABLE IF NOT EXISTS t (a String COMMENT 'it''s', b String COMMENT 'x\\'y', "
           "c UInt8)\nENGINE = ReplacingMergeTree()\nORDER BY a\n-- shard_key: cityHash64(a)\n;")
    local = migrate.render(sql, "db", "c")[0]
    assert "(a String, b String, c UInt8)" in local, local


def test_cluster_views_filter_with_global_in() -> None:
    """A view's `IN (SELECT ...)` reads Distributed tables on both sides on a cluster, which
    ClickHouse refuses (key_drivers_latest on two shards): GLOBAL IN there, plain IN alone."""
    sql = ("CREATE VIEW IF NOT EXISTS v AS SELECT a FROM t WHERE (a, b) IN\n(\n SELECT a, "
           "max(b) FROM t GROUP BY a) AND c NOT IN (SELECT c FROM u) AND d IN (1, 2);")
    (plain,) = migrate.render(sql, "db")
    (clustered,) = migrate.render(sql, "db", "c")
    assert "GLOBAL" not in plain
    assert "WHERE (a, b) GLOBAL IN\n(\n SELECT a, max(b) FROM db.t" in clustered, clustered
    assert "c GLOBAL NOT IN (SELECT c FROM db.u)" in clustered, clustered
    assert "d IN (1, 2)" in clustered
    text = "\n".join(m.text for m in migrate.load())
    latest = next(s for s in migrate.render(text, "peakend", "cx")
                  if s.startswith("CREATE VIEW IF NOT EXISTS key_drivers_latest"))
    assert ") GLOBAL IN\n(" in latest, latest


def test_cluster_alter_remakes_the_distributed_table_with_its_shard_key() -> None:
    """18.16 refuses ALTER ON CLUSTER of a Distributed table when the shards replicate
    internally (migration 007 failed so on the real cluster): the local tables are altered and
    the Distributed table made again over them, sharded as the table's CREATE declares."""
    (alter,) = [m for m in migrate.load() if m.version == 7]
    clustered = alter.statements("peakend", "cx")
    key = migrate.declared_shard_key("dead_letters")
    assert key.startswith("cityHash64(")
    assert clustered[:3] == [
        "ALTER TABLE peakend.dead_letters_local ON CLUSTER cx ADD COLUMN original_form String "
        "DEFAULT 'raw'",
        "DROP TABLE IF EXISTS peakend.dead_letters ON CLUSTER cx",
        "CREATE TABLE IF NOT EXISTS dead_letters ON CLUSTER cx AS peakend.dead_letters_local\n"
        f"ENGINE = Distributed(cx, peakend, dead_letters_local, {key})",
    ]
    assert not [s for s in clustered if s.startswith("ALTER TABLE peakend.dead_letters ")]
    with pytest.raises(migrate.MigrationError, match="table nowhere has no '-- shard_key:' line"):
        migrate.render("ALTER TABLE nowhere ADD COLUMN a UInt8;", "db", "c")


def test_bad_cluster_names_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(migrate.MigrationError, match="plain identifier"):
        migrate.render("SELECT 1;", "peakend", "c; DROP")
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "003_b.sql").write_text("SELECT 1;")
    # a gap is allowed (numbers are reserved per branch), a repeat is not
    assert [m.version for m in migrate.load(tmp_path)] == [1, 3]
    (tmp_path / "003_c.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"number 003 is taken by 003_b\.sql"):
        migrate.load(tmp_path)
    with pytest.raises(migrate.MigrationError, match="not terminated"):
        migrate.split("SELECT 1")


def test_print_shows_the_cluster_sql(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(cluster="cx", print_only=True, url=None)
    assert migrate.run(args) == 0
    out = capsys.readouterr().out
    assert "-- 001_tables.sql" in out and "Distributed(cx, peakend, journeys_local" in out


def test_a_migration_waits_for_the_lock_and_breaks_a_stale_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the migration lock: `migrate` waits, then says who to ask; a lock
    older than `LOCK_STALE_SECONDS` (its holder died) is broken and the migrations run."""
    import uuid

    from tests.chdb_util import shared_chdb

    name = f"pe_test_lock_{uuid.uuid4().hex[:10]}"
    warehouse = shared_chdb(name)
    try:
        warehouse.execute(f"CREATE TABLE {migrate.LOCK_TABLE} (owner String, "
                          "taken_at DateTime) ENGINE = Memory")
        warehouse.execute(f"INSERT INTO {migrate.LOCK_TABLE} VALUES ('host-9:412:7', now())")
        with pytest.raises(migrate.MigrationError, match=f"host-9:412:7 .*{migrate.LOCK_TABLE}"):
            migrate.migrate(warehouse, cluster="", lock_wait_seconds=0.3)
        assert migrate.applied(warehouse) == {}  # nothing ran meanwhile
        monkeypatch.setattr(migrate, "LOCK_STALE_SECONDS", -1)
        names = migrate.migrate(warehouse, cluster="", lock_wait_seconds=0.3)
        assert names == [m.name for m in migrate.load(migrate.MIGRATIONS_DIR)]
        tables = {row[0] for row in warehouse.query(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": name})}
        assert migrate.LOCK_TABLE not in tables  # released
        assert migrate.migrate(warehouse, cluster="") == []
    finally:
        warehouse.execute(f"DROP DATABASE IF EXISTS {name}")


class _ContendedLock:
    """A warehouse on which another process holds (or is just taking) the migration lock: the
    lock table's `system.tables` row answers `ages` in turn, as (metadata mtime, now) pairs or
    an exception; after `free_after` refused CREATEs the lock is free."""

    database = "pe_db"

    def __init__(self, ages: list[object], free_after: int = 10**9) -> None:
        self.ages = ages
        self.free_after = free_after
        self.executed: list[str] = []
        self.inserted: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        assert len(self.executed) < 1000, "the waiter breaks the lock again and again"
        creates = sum(s.startswith("CREATE") for s in self.executed)
        if sql.startswith(f"CREATE TABLE {migrate.LOCK_TABLE}") and creates <= self.free_after:
            raise RuntimeError(f"Code: 57. DB::Exception: Table pe_db.{migrate.LOCK_TABLE} "
                                   "already exists.")

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
        self.inserted.append(table)

    def query(self, sql: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
        if "system.tables" in sql:
            age = self.ages.pop(0) if len(self.ages) > 1 else self.ages[0]
            if isinstance(age, Exception):
                raise age
            return [age] if age is not None else []  # type: ignore[list-item]  # test data
        return [("host-2:77:1",)]  # the holder named in the message


def test_a_lock_being_created_is_not_broken_as_stale() -> None:
    """18.16 lists a table being created with metadata_modification_time 0 (its file is not
    renamed into place yet): read as 56 years, a waiter broke a lock just taken and two
    processes migrated at once. Such a lock is young; the waiter waits and names its holder."""
    now = 1_780_000_000
    warehouse = _ContendedLock([(0, now)])
    with pytest.raises(migrate.MigrationError, match="host-2:77:1 has been migrating"):
        migrate._acquire_lock(warehouse, wait_seconds=0.05, poll_seconds=0.01)  # type: ignore[arg-type]  # a test double
    assert not [s for s in warehouse.executed if s.startswith("DROP")]
    # the same lock with a real mtime older than LOCK_STALE_SECONDS is broken, once
    stale = _ContendedLock([(now - migrate.LOCK_STALE_SECONDS - 5, now)], free_after=1)
    migrate._acquire_lock(stale, wait_seconds=5, poll_seconds=0.01)  # type: ignore[arg-type]  # a test double
    assert [s for s in stale.executed if s.startswith("DROP")] == [
        f"DROP TABLE IF EXISTS {migrate.LOCK_TABLE}"]
    assert stale.inserted == [migrate.LOCK_TABLE]


def test_a_lock_dropped_while_its_age_is_read_is_taken_again() -> None:
    """The holder drops the lock while a waiter's `system.tables` query lists it: the server
    answers UNKNOWN_TABLE (code 60). The lock is free; the waiter takes it, without an error."""
    from clickhouse_driver import errors as driver_errors

    gone = driver_errors.ServerException(
        f"DB::Exception: Table pe_db.{migrate.LOCK_TABLE} doesn't exist..", 60)
    warehouse = _ContendedLock([gone, None], free_after=1)
    migrate._acquire_lock(warehouse, wait_seconds=5, poll_seconds=0.01)  # type: ignore[arg-type]  # a test double
    assert warehouse.inserted == [migrate.LOCK_TABLE]
    assert not [s for s in warehouse.executed if s.startswith("DROP")]
    other = _ContendedLock([RuntimeError("Code: 241. Memory limit exceeded")])
    with pytest.raises(RuntimeError, match="Memory limit"):  # anything else is not hidden
        migrate._acquire_lock(other, wait_seconds=5, poll_seconds=0.01)  # type: ignore[arg-type]  # a test double
