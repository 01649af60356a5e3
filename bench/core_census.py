"""What the engine keeps per event: the blocks still allocated after it took a history, by line.

    PEAKEND_PURE_CORE=1 .venv/bin/python -m bench.core_census [--days 1] [--events N] [--top 25]
                                                             [--dir /tmp/peakend-history]

Issue 13 item 5: a long replay's cost follows the state it holds (allocated once, freed days
later, walked by the collector and out of cache). This feeds the first `--events` events of
`bench/bench_history.py`'s cached `--days` file (the generator's default mix, seed 3, at 0.1
events/s of event time; made by `bench_history --days N` into `--dir`) to a fresh
`ExperienceEngine` as `peakend replay` drives it (each event parsed and then dropped, so what
the engine keeps of it, its ids and strings, counts where it was made, and nothing else of it
does), then counts the memory blocks still allocated (`sys.getallocatedblocks`, after a full
collection) and, with `tracemalloc`, where they were allocated: per source line, blocks and
bytes per event. Run it interpreted (`PEAKEND_PURE_CORE=1`): the
compiled core has no Python frames, so `tracemalloc` would charge everything to this script.

It also prints how many slots a lookup probes in a dict keyed by bucket starts (milliseconds,
multiples of the width, as the drop detector's series used to be) against consecutive integers,
by CPython's probe sequence: why dicts by start were costlier than their size says.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pipeline.core_build
from bench.bench_history import SCORING_RULES, chunks, events_cache, events_for
from bench.host import cpu_model, loadavg


def dict_probes(keys: list[int]) -> float:
    """Mean slots probed to insert `keys` into a fresh dict sized for them (CPython 3.11's
    index table: a power of two with room for 3/2 of the keys; perturbed linear probing)."""
    size = 8
    while size * 2 // 3 < len(keys):
        size *= 2
    mask = size - 1
    taken = [False] * size
    probes = 0
    for key in keys:
        h = hash(key) & (2 ** 64 - 1)
        perturb = h
        i = h & mask
        probes += 1
        while taken[i]:
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
            probes += 1
        taken[i] = True
    return probes / len(keys)


def census(days: int, events: int | None, folder: Path, top: int) -> None:
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import CoreConfig
    from pipeline.core.engine import ExperienceEngine

    cache = events_cache(folder, days, 0.1)
    if not cache.exists():
        raise SystemExit(f"core_census: no {cache}: run `python -m bench.bench_history --days "
                         f"{days} --dir {folder}` first")
    limit = events or events_for(days, 0.1)
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    gc.collect()
    tracemalloc.start(1)
    before = sys.getallocatedblocks()
    count = 0
    for dicts in chunks(cache):
        for raw in dicts[:limit - count]:
            engine.process(parse_dict(raw), 0)
        count += min(len(dicts), limit - count)
        del dicts
        if count >= limit:
            break
    gc.collect()
    after = sys.getallocatedblocks()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(f"{cpu_model()}, Python {sys.version.split()[0]}, load {loadavg()}, "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'} core")
    stats = sorted(snapshot.statistics("lineno"), key=lambda s: -s.count)
    traced = sum(stat.size for stat in stats)
    print(f"{days} d file, first {count:,} events: {(after - before) / count:.2f} blocks per "
          f"event still allocated by the engine, {traced / count:,.0f} bytes per event traced")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.count / count:7.3f} blocks {stat.size / count:8.1f} bytes per event  "
              f"{frame.filename}:{frame.lineno}")
    start = 1_767_225_600_000  # 2026-01-01, in ms
    for span in (1440, 7 * 1440):
        starts = [start + k * 60_000 for k in range(span)]
        print(f"dict of {span:,} minute starts: {dict_probes(starts):.2f} slots probed per key "
              f"(consecutive integers: {dict_probes(list(range(span))):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--events", type=int, default=None,
                        help="only the first N events of the file (default: all)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "peakend-history"))
    args = parser.parse_args()
    if args.days < 1 or (args.events is not None and args.events < 1) or args.top < 0:
        parser.error("--days and --events must be at least 1, --top at least 0")
    census(args.days, args.events, Path(args.dir), args.top)


if __name__ == "__main__":
    main()
