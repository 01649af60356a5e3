"""`peakend worker` with a memory report: the real worker process, plus a thread that writes where
its memory is, for bench/faults.py's memory run.

    .venv/bin/python -m bench.memory_worker --report FILE [--options shared|faust]
                                            [--tracemalloc] [--every SECONDS] [-- worker args]

Runs `pipeline.cli worker` in this process, unchanged except, with `--options faust`, for the
RocksDB options of its tables (`pipeline.state_store.shared_options` returns None: Faust's
defaults, the worker before issue 14). Every `--every` seconds it appends one JSON line to FILE:

- `rss`: this process's resident set (bytes, /proc/self/status VmRSS);
- `memtables`, `rocksdb_cache`: RocksDB's memtables summed over every open partition database
  (`rocksdb.cur-size-all-mem-tables`) and the block cache (`rocksdb.block-cache-usage`; the
  shared cache counted once, Faust's per-database caches summed); `databases`: how many are open;
- `malloc_in_use`, `malloc_free`: glibc's heap (`mallinfo2`: bytes handed out, and bytes free
  inside its arenas: what the allocator keeps without giving back); Python's small objects live
  in pymalloc's own arenas, outside these; `python_blocks`: `sys.getallocatedblocks()`, the
  number of memory blocks Python holds (objects of every size);
- `python_heap` with `--tracemalloc`: bytes allocated by Python code (`tracemalloc`, started
  here; it slows the worker down), and `top`: the 12 source lines holding most of it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from pipeline import state_store


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's heap: bytes in use (small + large blocks) and free bytes kept in its arenas."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"malloc_in_use": m.uordblks + m.hblkhd, "malloc_free": m.fordblks}


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Reporter:
    """Collects the tables the worker creates and reports their memory from a thread."""

    def __init__(self, path: Path, every: float, trace: bool) -> None:
        self.path, self.every, self.trace = path, every, trace
        self.tables: list[Any] = []
        self.options: list[state_store.SharedRocksDBOptions] = []
        self.opened: dict[str, int] = {}

    def rocksdb(self) -> dict[str, Any]:
        memtables = cache = databases = 0
        for table in self.tables:
            store = table._data  # None until Faust creates the store
            dbs = list(getattr(store, "_dbs", {}).values()) if store is not None else []
            databases += len(dbs)
            self.opened[table.name] = len(dbs)
            for db in dbs:
                memtables += db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
                if not self.options:
                    cache += db.property_int_value("rocksdb.block-cache-usage") or 0
        for options in self.options:
            cache += options.cache.get_usage()
        return {"memtables": memtables, "rocksdb_cache": cache, "databases": databases,
                "databases_by_table": dict(self.opened)}

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), "rss": rss_bytes(), **mallinfo(),
                               "python_blocks": sys.getallocatedblocks()}
        try:
            row.update(self.rocksdb())
        except Exception as exc:  # a database closing meanwhile: report, keep going
            row["rocksdb_error"] = repr(exc)
        if self.trace:
            row["python_heap"] = tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().statistics("lineno")[:12]
            row["top"] = [[str(s.traceback[0]), s.size, s.count] for s in top]
        return row

    def run(self) -> None:
        while True:
            line = json.dumps(self.sample())
            with self.path.open("a") as out:
                out.write(line + "\n")
            time.sleep(self.every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--options", choices=["shared", "faust"], default="shared")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--every", type=float, default=1.0)
    args, worker_args = parser.parse_known_args(argv)
    worker_args = [a for a in worker_args if a != "--"]
    if args.tracemalloc:
        tracemalloc.start(1)
    reporter = Reporter(args.report, args.every, args.tracemalloc)
    make_options, make_table = state_store.shared_options, state_store.state_table

    def options() -> state_store.SharedRocksDBOptions | None:
        made = make_options() if args.options == "shared" else None
        if made is not None:
            reporter.options.append(made)
        return made

    def table(app: Any, name: str, partitions: int,
              options: state_store.SharedRocksDBOptions | None,
              changelog_prefix: str | None = None) -> Any:
        made = make_table(app, name, partitions, options, changelog_prefix)
        reporter.tables.append(made)
        return made

    state_store.shared_options = options
    state_store.state_table = table
    threading.Thread(target=reporter.run, daemon=True, name="memory-report").start()
    from pipeline.cli import main as cli_main
    return cli_main(["worker", *worker_args])


if __name__ == "__main__":
    raise SystemExit(main())
