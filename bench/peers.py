"""Peers of the worker on the same events, in one run: what the frameworks themselves cost.

    .venv/bin/python -m bench.peers [--events N] [--bootstrap HOST:PORT] [--only raw,faust,quix]

The events are the generator's default mix over one day of event time, keyed by journey like
the producer library, on a 4-partition topic. Each peer reads them all and, except the raw
client, does the same simple journey job (`bench/peer_apps/`): `json.loads`, the journey's dict in
RocksDB-backed state, one output record per event.

- `raw`: aiokafka `getmany` in this process, nothing else (the client's ceiling);
- `faust`: a minimal Faust app, per-event loop (`bench/peer_apps/faust_minimal.py`);
- `quix`: the same job in Quix Streams (`bench/peer_apps/quix_minimal.py`), run from a virtualenv
  of its own under `.stack/peers/quix-venv` (created here on first use: a benchmark peer, not a
  dependency).

An app's time runs from its first output record to its last (group join and start-up left
out); its CPU is the app process's user + system time over the same window (/proc), per event.
peakend itself is measured by bench/bench_pipeline.py; bench/run_all.py puts them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import bench_raw
from bench.host import loadavg, proc_cpu_seconds
from jobs.generate import GeneratorConfig, encode_event, generate_events
from pipeline.contract import parse_event

ROOT = Path(__file__).resolve().parents[1]

PEERS = ("raw", "faust", "quix")
PARTITIONS = 4
DAY_MS = 86_400_000
QUIX_VENV = ROOT / ".stack" / "peers" / "quix-venv"
QUIX_REQUIREMENT = "quixstreams>=3,<4"


@dataclass(frozen=True)
class PeerRun:
    peer: str
    what: str
    events: int
    seconds: float
    cpu_seconds: float
    load: str = ""  # the load average (1, 5, 15 min) when the run ended

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0

    def line(self) -> str:
        return (f"{self.what}: {self.per_s:,.0f} events/s, {self.cpu_us_per_event:,.0f} us CPU "
                f"per event ({self.events:,} in {self.seconds:.2f} s)")


def day_of_events(n: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """(journey key, event JSON): the generator's default mix over one day."""
    config = GeneratorConfig(events=n, seed=seed, span_ms=DAY_MS,
                             id_prefix=f"peer{uuid.uuid4().hex[:6]}")
    out = []
    for event in generate_events(config):
        value = encode_event(event)
        out.append((parse_event(value).journey_key.encode(), value))
    return out


def raw_consume(bootstrap: str, topic: str, n: int) -> PeerRun:
    cpu = time.process_time()
    count, _, seconds = asyncio.run(bench_raw._consume(bootstrap, topic, n))
    # the group join is left out of `seconds` but not of the CPU: it is a few milliseconds
    return PeerRun("raw", "raw aiokafka consume (getmany, 5000 per poll)", count, seconds,
                   time.process_time() - cpu, loadavg())


def output_count(consumer: Any, topic: str) -> int:
    from kafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    return sum(consumer.end_offsets(parts).values())


def quix_python() -> Path:
    """The Quix Streams virtualenv's interpreter, created on first use."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT],
                       check=True)
    return python


def app_run(peer: str, bootstrap: str, topic: str, n: int, timeout: float) -> PeerRun:
    """Runs one peer app until its output topic holds one record per event."""
    from kafka import KafkaConsumer

    output = f"{topic}.{peer}.out"
    bench_raw.create_topic(bootstrap, output, PARTITIONS)
    data_dir = Path(tempfile.mkdtemp(prefix=f"peakend-peer-{peer}-"))
    env = {**os.environ, "PEER_BOOTSTRAP": bootstrap, "PEER_INPUT": topic,
           "PEER_OUTPUT": output, "PEER_GROUP": f"peer-{peer}-{uuid.uuid4().hex[:8]}",
           "PEER_DATA_DIR": str(data_dir), "PEER_PARTITIONS": str(PARTITIONS)}
    if peer == "faust":
        command = [sys.executable, str(ROOT / "bench/peer_apps/faust_minimal.py"), "worker",
                   "-l", "warn"]
        what = "minimal Faust app (json.loads, a dict per journey in a RocksDB Table, " \
               "one output per event; per-event loop)"
    else:
        command = [str(quix_python()), str(ROOT / "bench/peer_apps/quix_minimal.py")]
        what = "Quix Streams app, the same job (RocksDB state)"
    log = data_dir / "app.log"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=data_dir)
    try:
        deadline = time.monotonic() + timeout
        first: tuple[float, float, int] | None = None
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            done = output_count(consumer, output)
            if first is None and done > 0:
                first = (time.monotonic(), proc_cpu_seconds(proc.pid), done)
            if done >= n:
                break
            time.sleep(0.2)
        if first is None or done < n:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{peer}: {done:,} of {n:,} outputs "
                               f"(exit {proc.poll()}):\n{tail}")
        seconds = time.monotonic() - first[0]
        cpu = proc_cpu_seconds(proc.pid) - first[1]
        return PeerRun(peer, what, n - first[2], seconds, cpu, loadavg())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        consumer.close()
        bench_raw.delete_topic(bootstrap, output)


def run(bootstrap: str, n: int, peers: tuple[str, ...] = PEERS,
        timeout: float = 900) -> list[PeerRun]:
    records = day_of_events(n)
    topic = f"bench.peers.{uuid.uuid4().hex[:8]}"
    bench_raw.create_topic(bootstrap, topic, PARTITIONS)
    try:
        bench_raw.kafka_produce(bootstrap, topic, records)
        runs = []
        for peer in peers:
            run_ = (raw_consume(bootstrap, topic, n) if peer == "raw"
                    else app_run(peer, bootstrap, topic, n, timeout))
            print(f"  {run_.line()}; load {run_.load}", flush=True)
            runs.append(run_)
        return runs
    finally:
        bench_raw.delete_topic(bootstrap, topic)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--only", default=",".join(PEERS),
                        help=f"comma-separated peers out of {', '.join(PEERS)}")
    parser.add_argument("--json", type=Path, help="also write the runs here")
    args = parser.parse_args()
    if args.events < 1_000:
        parser.error("--events: at least 1,000 (the apps' clocks start at their first output)")
    peers = tuple(p for p in args.only.split(",") if p)
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"--only: unknown peer(s) {', '.join(sorted(unknown))}")
    runs = run(args.bootstrap, args.events, peers)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
