"""Profile the core path of `bench_history.py` with `perf`, sampling only `engine.process`.

    python -m bench.profile_history DAYS RUNS OUT [DIR]

It writes OUT.data and OUT.txt (samples per symbol).

Runs `perf record -e cpu-clock` on a child that feeds the cached events of `bench_history.py`
(its `--dir`, given as DIR, default /tmp/peakend-history; rate 0.1: run the bench once first)
to a fresh engine RUNS times, under the bench's state gc policy; perf is enabled (through its
control fifo) only while the engine processes a chunk, so generation, unpickling and parsing
are not sampled. The
compiled core's functions keep their names (`CPyDef_drops___DropDetector___apply_partial`), so
a 1-day and a 90-day profile compare per symbol (samples / 4,000 Hz / events = us per event).
Add `--call-graph dwarf` by hand for callers. Needs `perf` and perf_event_paranoid <= 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = str(Path(tempfile.gettempdir()) / "peakend-history")


def child(days: int, runs: int, folder: Path) -> None:
    from bench import bench_history as bench
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import CoreConfig
    from pipeline.core.engine import ExperienceEngine
    from pipeline.core.gcpolicy import STATE_THRESHOLDS, tuned_gc

    control, ack = os.environ["PERF_CTL"], os.environ["PERF_ACK"]

    def perf(command: str) -> None:
        with open(control, "w") as out:
            out.write(command + "\n")
        with open(ack) as reply:
            reply.readline()

    n = bench.events_for(days, 0.1)
    cache = bench.events_cache(folder, days, 0.1)
    for run in range(runs):
        engine = ExperienceEngine(CoreConfig(), bench.SCORING_RULES)
        cpu = 0.0
        with tuned_gc(STATE_THRESHOLDS):
            for dicts in bench.chunks(cache):
                chunk = [parse_dict(e) for e in dicts]
                perf("enable")
                started = time.process_time()
                for event in chunk:
                    engine.process(event, 0)
                cpu += time.process_time() - started
                perf("disable")
            perf("enable")
            engine.finish()
            perf("disable")
        print(f"{days} d run {run + 1}: {cpu / n * 1e6:.1f} us/event", file=sys.stderr)
        del engine


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1].strip())  # the usage line
        raise SystemExit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    if sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return
    days, runs, out = sys.argv[1], sys.argv[2], sys.argv[3]
    folder = sys.argv[4] if len(sys.argv) > 4 else FOLDER
    with tempfile.TemporaryDirectory() as tmp:
        control, ack = os.path.join(tmp, "ctl"), os.path.join(tmp, "ack")
        os.mkfifo(control)
        os.mkfifo(ack)
        env = {**os.environ, "PERF_CTL": control, "PERF_ACK": ack}
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-D", "-1",
                        "--control", f"fifo:{control},{ack}", "-o", f"{out}.data", "--",
                        sys.executable, "-m", "bench.profile_history", "--child", days, runs,
                        folder],
                       check=True, env=env, cwd=ROOT)
    report = subprocess.run(["perf", "report", "-i", f"{out}.data", "--stdio", "-n",
                             "--sort", "dso,sym"], check=True, capture_output=True, text=True)
    Path(f"{out}.txt").write_text("".join(line + "\n" for line in report.stdout.splitlines()
                                          if line.strip() and not line.startswith("#")))


if __name__ == "__main__":
    main()
