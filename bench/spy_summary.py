"""Where a process's time goes, from a py-spy profile: share of samples per component.

    py-spy record --pid PID --duration 60 --rate 50 --format raw --output worker.txt
    .venv/bin/python bench/spy_summary.py worker.txt [--top 25]

py-spy's raw format is one line per distinct stack, `frame;frame;...;leaf COUNT`, each frame
`function (file:line)`. Self time goes to the component of the leaf frame (the package its file
belongs to: asyncio, faust, mode, aiokafka, orjson...; peakend's own modules by their module
name); inclusive time to every peakend function on the stack, once per sample. Idle samples
(py-spy records only active threads unless --idle is given) are not in the file.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PACKAGES = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "orjson", "prometheus_client",
            "clickhouse_driver", "croniter", "yarl", "venusian", "opentracing", "intervaltree")


def component(path: str) -> str:
    """The component a source file belongs to."""
    parts = path.replace("\\", "/").split("/")
    if "pipeline" in parts:
        tail = parts[parts.index("pipeline"):]
        return ".".join(tail).removesuffix(".py")
    for package in PACKAGES:
        if package in parts:
            return package
    if "asyncio" in parts:
        return "asyncio"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    name = parts[-1].removesuffix(".py")
    return f"stdlib {name}" if "python3" in path or "lib/python" in path else name


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [FRAME.match(f) for f in stack.split(";")]
        parsed = [(m.group("func"), m.group("file")) for m in frames if m is not None]
        if not parsed:
            continue
        own[component(parsed[-1][1])] += count
        seen = set()
        for func, path in parsed:
            comp = component(path)
            if comp.startswith("pipeline") and (comp, func) not in seen:
                seen.add((comp, func))
                inclusive[f"{comp}.{func}"] += count
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, own, inclusive = summarise(args.profile.read_text().splitlines())
    if not total:
        raise SystemExit(f"{args.profile}: no samples (is it py-spy's --format raw output?)")
    print(f"{total} samples")
    print("self time by component:")
    for name, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("inclusive time, peakend functions:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
