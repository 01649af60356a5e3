"""What each kind of JSON encoding costs inside the running worker, against the same values
encoded in a loop of their own (docs/streaming.md, fifteenth round).

    .venv/bin/python -m bench.worker_json_calls [--events 100000] [--rates 5000]

Runs `bench.bench_pipeline` (the real stack: `bash scripts/stack.sh start`) with
`bench/json_calls_hook` first on PYTHONPATH: in the worker process that hook wraps the outbox's
`to_json`, the state tables' `encode` and the claims records' orjson, and counts calls, bytes
and the thread's CPU per call, keeping a sample of the values. Afterwards this script encodes
the sampled values again, five passes in this process (warm: the same values each pass), and
prints one row per kind of value. Why: orjson took several times longer per call inside the
worker than in a loop, which is what the worker's profile showed and in-process benchmarks
hide.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.host import cpu_model, loadavg
from pipeline.stream.outbox import to_json
from pipeline.stream.state_writer import encode

HOOK = Path(__file__).resolve().parent / "json_calls_hook"
ROOT = HOOK.parent.parent


def _claims_json(value: Any) -> bytes:
    """The claims records' JSON call (`claims._claims_record`: each raw record as its
    length)."""
    return orjson.dumps(value, default=len)


# the call each kind of counted value went through in the worker (the hook's names)
ENCODERS: dict[str, Callable[[Any], bytes]] = {"encode": encode, "to_json": to_json,
                                               "claims": _claims_json}


def loop_us(values: list[Any], kind: str, passes: int = 5) -> float:
    """CPU us per encoding of `values`, encoded `passes` times in a loop here."""
    call = ENCODERS[kind]
    started = time.process_time()
    for _ in range(passes):
        for value in values:
            call(value)
    return (time.process_time() - started) / (passes * len(values)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rates", default="5000")
    args = parser.parse_args()
    load = loadavg()
    with tempfile.TemporaryDirectory(prefix="peakend-json-calls-") as out:
        env = {**os.environ, "PEAKEND_JSON_CALLS_OUT": out,
               "PYTHONPATH": os.pathsep.join([str(HOOK), str(ROOT),
                                              os.environ.get("PYTHONPATH", "")])}
        run = subprocess.run([sys.executable, "-m", "bench.bench_pipeline", "--events",
                              str(args.events), "--rates", args.rates], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)
        summary = [line for line in run.stdout.splitlines() if line.startswith("end to end")]
        if run.returncode != 0 or not summary:
            print(run.stdout[-2000:], run.stderr[-2000:], file=sys.stderr)
            print("bench_pipeline failed", file=sys.stderr)
            return 1
        calls = sorted(Path(out).glob("calls.*.json"))
        if not calls:
            print("no worker wrote counts: was the hook on its PYTHONPATH?", file=sys.stderr)
            return 1
        stats: dict[str, list[float]] = orjson.loads(calls[0].read_bytes())
        samples: dict[str, list[Any]] = pickle.loads(
            calls[0].with_name(calls[0].name.replace("calls.", "samples.").replace(
                ".json", ".pickle")).read_bytes())
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}; load {load} before, "
          f"{loadavg()} after")
    print(summary[0])
    print("| value (call:type[first key]) | calls | bytes each | CPU us each, in the worker "
          "| CPU us each, in a loop here |")
    print("|---|---:|---:|---:|---:|")
    for name, (n, ns, size) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        held = samples.get(name) or []
        here = f"{loop_us(held, name.split(':')[0]):.2f}" if held else "-"
        print(f"| {name} | {int(n):,} | {size / n:,.0f} | {ns / n / 1000:.2f} | {here} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
