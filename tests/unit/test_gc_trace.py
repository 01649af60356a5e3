"""bench/gc_trace.py: its sitecustomize compiles, and the census reads what it writes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gc_trace import SITECUSTOMIZE, young_census


def test_the_sitecustomize_it_puts_on_pythonpath_compiles() -> None:
    compile(SITECUSTOMIZE, "sitecustomize.py", "exec")


def test_the_census_is_the_mean_per_sampled_collection_largest_first(tmp_path: Path) -> None:
    path = tmp_path / "1.census"
    path.write_text("\n".join(json.dumps(s) for s in (
        {"builtins.list": 10, "builtins.tuple[str x2]": 40},
        {"builtins.list": 30, "builtins.tuple[str x2]": 20, "builtins.dict": 2})) + "\n")
    lines = young_census("worker", path, top=2)
    assert lines[0] == "  worker, a young collection walks 51 objects (mean of 2 sampled), by type:"
    assert [line.split() for line in lines[1:]] == [["30", "builtins.tuple[str", "x2]"],
                                                    ["20", "builtins.list"]]
