"""bench/gc_trace.py: its sitecustomize compiles, and the census reads what it writes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gc_trace import SITECUSTOMIZE, young_census


def test_the_sitecustomize_it_puts_on_pythonpath_compiles() -> None:
    compile(SITECUSTOMIZE, "sitecustomize.py", "exec")


def test_the_census_is_the_mean_per_sampled_collection_largest_first(tmp_path: Path) -> None:
    path = tmp_path / "1.census"
    # [objects, references they hold] per type
    path.write_text("\n".join(json.dumps(s) for s in (
        {"builtins.list": [10, 300], "builtins.tuple[str x2]": [40, 80]},
        {"builtins.list": [30, 100], "builtins.tuple[str x2]": [20, 0], "builtins.dict": [2, 0]}))
        + "\n")
    lines = young_census("worker", path, top=2)
    assert lines[0] == ("  worker, a young collection walks 51 objects holding 240 references "
                        "(mean of 2 sampled); by objects:")
    assert [line.split() for line in lines[1:3]] == [
        ["30", "builtins.tuple[str", "x2]", "(40", "references)"],
        ["20", "builtins.list", "(200", "references)"]]
    assert lines[3].strip() == "by references held:"
    # by references: the lists first, though fewer; a type holding none is not listed
    assert [line.split()[:2] for line in lines[4:]] == [["200", "builtins.list"],
                                                       ["40", "builtins.tuple[str"]]



def test_the_worker_s_collections_are_split_at_the_phases_ends(tmp_path: Path) -> None:
    from bench.gc_trace import by_phase, phase_name

    assert phase_name("unprofiled phase 2: 10,723 events/s, entry 17") == "unprofiled phase 2"
    assert phase_name("9,080 events/s (200,000 in 22.0 s); worker + children") == (
        "profiled phase")
    assert phase_name("profiles: /tmp/x/worker.txt") is None
    # process CPU, generation, ms, wall time
    (tmp_path / "7.log").write_text("# -m worker --loglevel\n" + "\n".join([
        "1.0 0 10.0 100.0", "2.0 0 30.0 101.0", "3.0 1 50.0 102.0",  # phase 1
        "4.0 0 100.0 201.0", "6.0 0 300.0 202.0",  # phase 2
        "9.0 2 900.0 300.0"]) + "\n")
    (tmp_path / "8.log").write_text("# -m sink --parent-pid\n1.0 0 99.0 100.5\n")
    lines = by_phase(tmp_path, [("unprofiled phase 1", 150.0), ("profiled phase", 250.0)])
    assert lines == [
        "worker, unprofiled phase 1: young 2 in 0.04 s (mean 20.0 ms), middle 1 in 0.05 s = "
        "4.5% of its 2.0 s of CPU between its first and last collection",
        "worker, profiled phase: young 2 in 0.40 s (mean 200.0 ms), middle 0 in 0.00 s = "
        "20.0% of its 2.0 s of CPU between its first and last collection"]
    assert by_phase(tmp_path, [("p", 150.0)], role="entry") == []
