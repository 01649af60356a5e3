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

