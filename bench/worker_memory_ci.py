"""The worker memory test's run (tests/integration/test_worker_memory.py) with its figures.

    .venv/bin/python -m bench.worker_memory_ci DIR [shared|faust]

Starts the private fault stack (bench/faults.py `FaultStack`: PEAKEND_FAULT_STACK_DIR,
PEAKEND_FAULT_PORT_OFFSET), runs the test's `worker_memory` call (`ci_size_run`: 60,000 events
over 3 days sent at 2,500/s, 12 partitions, `SHORT_STATE`) with the RocksDB options given,
writes DIR/run.json and prints every sample, then what the test checks over the last third of
the events stage one applied: the growth of RSS and of glibc's heap in use, and the largest
memtables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.faults import FaultStack, load, memory_table
from tests.integration.test_worker_memory import ci_size_run


def main(argv: list[str]) -> int:
    if argv[1:] not in ([], ["shared"], ["faust"]) or not argv:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    options = argv[1] if len(argv) > 1 else "shared"
    out.mkdir(parents=True, exist_ok=True)
    stack = FaultStack()
    stack.start()
    print(f"load before {load()}", flush=True)
    run = ci_size_run(stack, out, options)
    (out / "run.json").write_text(json.dumps(run, indent=1, default=str))
    print(memory_table([run]))
    last_third = [s for s in run["samples"] if s["events"] >= run["valid"] * 2 // 3]
    first, last = last_third[0], last_third[-1]
    print(f"valid {run['valid']:,}, notes {run['notes']}, {run['seconds']:.0f} s; last third: "
          f"RSS {last['rss_mib'] - first['rss_mib']:+.1f} MiB, heap in use "
          f"{last.get('malloc_in_use', 0) - first.get('malloc_in_use', 0):+.1f} MiB; largest "
          f"memtables {max(s.get('memtables', 0) for s in run['samples']):.1f} MiB; "
          f"load after {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
