"""Fresh peakend databases on both engines for the storage, analyst-guide and dashboard tests.

Other engineers share the ClickHouse server and the process-wide chdb: every test database gets a
unique name and is dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from pipeline.storage.migrate import migrate
from pipeline.storage.warehouse import ServerWarehouse, Warehouse
from tests.chdb_util import shared_chdb


def with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + database))


@dataclass
class Databases:
    """writer/reader on one engine; for chdb both are the same embedded session."""

    engine: str
    writer: Warehouse
    reader: Warehouse


@contextmanager
def server_database(admin_url: str, writer_url: str, reader_url: str,
                    prefix: str = "pe_test") -> Iterator[Databases]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = ServerWarehouse(admin_url)
    admin.execute(f"CREATE DATABASE {name}")
    writer = ServerWarehouse(with_database(writer_url, name))
    reader = ServerWarehouse(with_database(reader_url, name))
    try:
        migrate(writer, cluster="")
        yield Databases("server", writer, reader)
    finally:
        writer.close()
        reader.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@contextmanager
def chdb_database(prefix: str = "pe_test") -> Iterator[Databases]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    wh = shared_chdb(name)
    try:
        migrate(wh, cluster="")
        yield Databases("chdb", wh, wh)
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {name}")


@contextmanager
def engine_databases(engine: str, prefix: str, urls: Any = None) -> Iterator[Databases]:
    """Migrated databases on the real server (`engine == "server"`, `urls`: the
    `clickhouse_urls` fixture) or on chdb, for tests parametrised over both engines."""
    if engine == "server":
        with server_database(urls.admin, urls.writer, urls.reader, prefix=prefix) as d:
            yield d
    else:
        with chdb_database(prefix=prefix) as d:
            yield d
