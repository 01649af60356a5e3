"""What a long replay holds: `ExperienceEngine` over the first `--events` of `bench_history`'s
generated history (the same file, made by `python -m bench.bench_history --days D`), then the
partials held by metric, the final negative_end buckets held past final as numbers
(`SurveyBuckets._final_ends`, docs/core.md "Survey metrics and buckets"; 0 in a tree without
them) and the objects the cyclic collector tracks (`gc.get_objects()`) beyond those it tracked
before the engine was made (the imports'): what a replay adds for each young collection to
walk.

    .venv/bin/python -m bench.bench_held_objects [--days 90 --rate 0.1 --events 400000]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_history import chunks, events_cache
from bench.faults import positive
from bench.host import cpu_model
from pipeline.contract.parser import parse_dict
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.scoring_rules import load_scoring_rules


def held(cache: Path, events: int) -> tuple[int, Counter[str], int, int]:
    """(events applied, partials held by metric, final negative_end buckets held, objects
    the collector tracks beyond those before) after up to `events` events of `cache`."""
    gc.collect()
    before = len(gc.get_objects())
    engine = ExperienceEngine(CoreConfig(), load_scoring_rules())
    applied = 0
    for chunk in chunks(cache):
        for item in chunk[:events - applied]:
            engine.process(parse_dict(item), 0)
        applied += min(len(chunk), events - applied)
        if applied >= events:
            break
    partials = Counter(key[0] for buckets in engine.buckets.values() for key in buckets._partials)
    final_ends = sum(len(held) for buckets in engine.buckets.values()
                     for held in getattr(buckets, "_final_ends", {}).values())
    gc.collect()
    return applied, partials, final_ends, len(gc.get_objects()) - before


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=positive(int), default=90)
    parser.add_argument("--rate", type=positive(float), default=0.1)
    parser.add_argument("--events", type=positive(int), default=400_000)
    parser.add_argument("--dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "peakend-history")
    args = parser.parse_args(argv)
    cache = events_cache(args.dir, args.days, args.rate)
    if not cache.exists():
        parser.error(f"{cache} is missing: make it with `python -m bench.bench_history --days "
                     f"{args.days} --rate {args.rate} --dir {args.dir}`")
    applied, partials, final_ends, tracked = held(cache, args.events)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, load {load}; "
          f"{applied:,} events of {cache.name}: partials {dict(sorted(partials.items()))}, "
          f"final negative_end buckets held as numbers {final_ends:,}, "
          f"objects the collector tracks beyond the imports' {tracked:,}")


if __name__ == "__main__":
    main()
