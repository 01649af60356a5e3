"""The worker end to end at two (or more) versions of the code, in one run, as ratios.

    .venv/bin/python -m bench.worker_ab --rev HEAD~3 --rev WORKTREE [--events 100000]
        [--rates 5000] [--output docs/benchmarks-worker.md]

Each version is exported to a temporary directory (`git archive REV`; `WORKTREE` copies the
working tree as it is, uncommitted changes included) and measured by this checkout's
`bench/bench_pipeline.py` (copied into it, so every version gets the same events: the
generator's default mix over `--span-hours` of event time) against the local stack. The runs
go one after the other on the same machine; the load average is written beside each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.host import cpu_model

ROOT = Path(__file__).resolve().parents[1]

# (bench_pipeline's line; since 2026-12-03 its CPU figure is followed by the split by process,
# "worker CPU 118 us/event: entry 21 + sink 22 + worker 75 us; peak RSS ...")
LINE = re.compile(r"end to end, (\d+) worker\(s\): ([\d,]+) events/s .*worker CPU (\d+) us/event"
                  r"[:;].*load ([\d. ]+)\)")
LATENCY = re.compile(r"offered ([\d,]+)/s \(sent ([\d,]+)/s\) journey: p50 ([\d.]+) s, p95 "
                     r"([\d.]+) s, p99 ([\d.]+) s")


def export(rev: str, into: Path) -> str:
    """The tree of `rev` in `into`; returns a description (commit, or the worktree's HEAD)."""
    into.mkdir(parents=True)
    if rev == "WORKTREE":
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
            check=True, capture_output=True, text=True).stdout.split("\n")
        for name in filter(None, files):
            source = ROOT / name
            if source.is_symlink():  # as git archive does (pipeline/schemas -> ../schemas)
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(source), into / name)
            elif source.is_file():
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into / name)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        described = f"working tree on {head}"
    else:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        described = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                                   capture_output=True, text=True).stdout.strip()
    # the measuring module, what it imports, and the package file that makes `bench` one
    for helper in ("__init__.py", "bench_pipeline.py", "host.py"):
        shutil.copy2(ROOT / "bench" / helper, into / "bench" / helper)
    # and the stream-test support it imports (tests/support/ did not exist in older versions)
    shutil.copytree(ROOT / "tests" / "support", into / "tests" / "support", dirs_exist_ok=True)
    if (ROOT / "build").is_dir():  # the compiled core, used where it matches the sources
        shutil.copytree(ROOT / "build", into / "build", dirs_exist_ok=True)
    compiler = into / "scripts" / "compile_core.py"
    if compiler.is_file():
        # Each version runs its own compiled core: a build that does not match a version's
        # sources is silently not used, and that version would be measured interpreted (about
        # 2x the core's cost) against a compiled one.
        subprocess.run([sys.executable, str(compiler)], cwd=into, check=True,
                       env={**os.environ, "PYTHONPATH": str(into)})
    return described


def measure(tree: Path, events: int, rates: str, span_hours: float) -> tuple[str, str]:
    env = {**os.environ, "PEAKEND_STACK_DIR": os.environ.get("PEAKEND_STACK_DIR",
                                                             str(ROOT / ".stack"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_pipeline", "--events", str(events), "--rates", rates,
         "--seconds", "10", "--span-hours", str(span_hours)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=3600, check=False)
    return done.stdout, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", required=True,
                        help="a git revision, or WORKTREE; give two or more")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rates", default="5000")
    parser.add_argument("--span-hours", type=float, default=24.0)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks-worker.md"))
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory(prefix="peakend-ab-") as tmp:
        for number, rev in enumerate(args.rev):
            tree = Path(tmp) / f"v{number}"
            described = export(rev, tree)
            print(f"== {rev} ({described})", flush=True)
            out, err = measure(tree, args.events, args.rates, args.span_hours)
            print(out, flush=True)
            found = LINE.search(out)
            if found is None:
                print(err[-4000:], file=sys.stderr)
                raise SystemExit(f"{rev}: no throughput line in bench_pipeline's output")
            latency = LATENCY.findall(out)
            rows.append((rev, described, found, latency))
    base = float(rows[0][2].group(2).replace(",", ""))
    lines = [
        "# The worker end to end, version against version",
        "",
        f"Written by `python -m bench.worker_ab {' '.join('--rev ' + r for r in args.rev)} "
        f"--events {args.events} --rates {args.rates}` on {started}; {os.cpu_count()} vCPU "
        f"{cpu_model()}, Python "
        f"{sys.version.split()[0]}, broker, ClickHouse, the worker and the load generator on "
        "the same 2 cores, the versions measured one after the other. Events: the generator's "
        f"default mix over {args.span_hours:g} h of event time (surveys and metric records as "
        "dense as in real use). Throughput: first record produced to every consumer group "
        "(entry stage, agents, ClickHouse sink) at the end of its topics; CPU: the worker "
        "process and its children (entry stage, sink).",
        "",
        "| version | events/s | ratio to the first | worker + sink CPU per event | journeys p50 / "
        "p99 at offered rate | load at the end |",
        "|---|---:|---:|---:|---|---|",
    ]
    for rev, described, found, latency in rows:
        rate = float(found.group(2).replace(",", ""))
        lat = "; ".join(f"{o}/s offered ({s}/s sent): {p50} s / {p99} s"
                        for o, s, p50, _p95, p99 in latency) or "-"
        lines.append(f"| {rev} ({described}) | {found.group(2)} | {rate / base:.2f}x | "
                     f"{found.group(3)} us | {lat} | {found.group(4)} |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
