"""What one reading of the pipeline's lag costs (`pipeline.stream.lag.LagReader.read`): the
benchmarks read it four times a second beside the pipeline they measure, on the same cores.

    .venv/bin/python -m bench.bench_lag_reader [--readings 40] [--partitions 4]

On the local stack (`scripts/stack.sh start`): makes every topic the pipeline's consumer groups
read, for a fresh app id, then times `--readings` readings two ways, alternating: one
ListOffsets request per topic (how the reader asked before) and the reader as it is (every
topic's ends at once). Prints CPU and wall ms per reading of each, and deletes the topics.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic

from bench.host import cpu_model, loadavg
from pipeline.settings import Settings
from pipeline.stream.lag import LagReader, _committed


def read_per_topic(reader: LagReader) -> dict[str, int]:
    """The reading as it was before: each topic's ends in a request of its own."""
    lag: dict[str, int] = {}
    for group, topics in reader.groups.items():
        committed = _committed(reader.admin, group)
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in reader._partitions(topic)]
            ends = reader.consumer.end_offsets(tps)
            lag[f"{group}/{topic}"] = sum(
                max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0))
                for tp in tps)
    return lag


def timed(read: Callable[[], object], readings: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(readings):
        read()
    return ((time.process_time() - cpu) / readings * 1e3,
            (time.perf_counter() - wall) / readings * 1e3)


def main() -> None:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=40)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bootstrap = stack_env()["PEAKEND_KAFKA_BOOTSTRAP"]
    tag = uuid.uuid4().hex[:8]
    env = {"PEAKEND_KAFKA_BOOTSTRAP": bootstrap, "PEAKEND_APP_ID": f"lagbench-{tag}"}
    for name in ("touchpoints", "dead-letters", "journeys", "metrics", "alerts", "followups"):
        env[f"PEAKEND_TOPIC_{name.upper().replace('-', '_')}"] = f"lagbench.{tag}.{name}"
    settings = Settings.from_env(env)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    with LagReader(settings) as reader:
        topics = sorted({t for group in reader.groups.values() for t in group})
        admin.create_topics([NewTopic(t, args.partitions, 1) for t in topics])
        try:
            while len(reader.partitions) < len(topics):  # until every topic's metadata is in
                reader.read()
                time.sleep(0.2)
            assert read_per_topic(reader) == reader.read()
            print(f"bench_lag_reader: {len(topics)} topics x {args.partitions} partitions, "
                  f"{len(reader.groups)} groups; {cpu_model()}, load {loadavg()}")
            for _ in range(args.rounds):
                for name, read in (("a request per topic", lambda: read_per_topic(reader)),
                                   ("all topics at once", reader.read)):
                    cpu, wall = timed(read, args.readings)
                    print(f"  {name:>20}: {cpu:5.1f} ms CPU, {wall:5.1f} ms wall per reading")
        finally:
            admin.delete_topics(topics)
            admin.close()


if __name__ == "__main__":
    main()
