"""bench/bench_held_objects.py counts what a replay holds (docs/core.md, item 5 rounds)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from bench import bench_held_objects
from bench.bench_history import events_cache
from jobs.generate import GeneratorConfig, generate_records


def test_it_reports_the_partials_and_objects_held(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cache = events_cache(tmp_path, 2, 0.01)
    generated = GeneratorConfig(events=800, seed=3, span_ms=2 * 86_400_000)
    # the generator's malformed lines come as bytes; its dicts are valid events
    events = [r for r in generate_records(generated) if isinstance(r, dict)]
    with cache.open("wb") as out:
        pickle.dump(events[:400], out)
        pickle.dump(events[400:], out)
    applied, partials, final_ends, tracked = bench_held_objects.held(cache, 500)
    assert applied == 500 and partials and tracked > 1000
    assert final_ends > 0  # two days: the first day's negative_end buckets are final and held
    bench_held_objects.main(["--days", "2", "--rate", "0.01", "--events", "500",
                             "--dir", str(tmp_path)])
    assert "500 events of" in capsys.readouterr().out


def test_a_missing_history_file_says_how_to_make_it(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_held_objects.main(["--days", "3", "--dir", str(tmp_path)])
    assert "python -m bench.bench_history --days 3" in capsys.readouterr().err
