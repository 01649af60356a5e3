"""`peakend followups --webhook URL` on the real broker against a local HTTP server that fails
every third request: every case is delivered, and none twice after a restart (by case id), even
though the second run reads records the first run delivered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.settings import Settings
from pipeline.stream.topics import followups_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ticketing() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    requests = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                requests[0] += 1
                fail = requests[0] % 3 == 0
                if not fail:
                    received.append(body["case_id"])
            self.send_response(503 if fail else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def produce(bootstrap: str, topic: str, cases: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for case in cases:
        producer.send(topic, key=case["case_id"].encode(), value=json.dumps(case).encode())
    producer.flush()
    producer.close()


def run_consumer(env: dict[str, str], url: str, ledger: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "followups", "--webhook", url, "--ledger",
         str(ledger), "--until-idle", "4"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_case_once_across_failures_and_a_restart(
        ticketing: tuple[str, list[str]], kafka_bootstrap: str, tmp_path: Path) -> None:
    url, received = ticketing
    tag = uuid.uuid4().hex[:8]
    env = {"PEAKEND_KAFKA_BOOTSTRAP": kafka_bootstrap, "PEAKEND_APP_ID": f"fu-{tag}",
           "PEAKEND_TOPIC_JOURNEYS": f"fu.{tag}.journeys", "PEAKEND_PARTITIONS": "3"}
    topic = followups_topic(Settings.from_env(env))
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])  # only this one: the broker is shared
    finally:
        admin.close()
    first = [{"case_id": f"fu-{i:03d}", "status": "open", "version": 4} for i in range(12)]
    produce(kafka_bootstrap, topic, first)
    ledger = tmp_path / "delivered.txt"
    assert "posted 12 new cases" in run_consumer(env, url, ledger)
    # later versions of delivered cases, a withdrawn one, and new cases; then a second run with
    # a fresh consumer group reads everything again from the start: only the new ones go out
    again = [{**c, "status": "closed", "version": 8} for c in first[:5]]
    new = [{"case_id": f"fu-{i:03d}", "status": "open", "version": 4} for i in range(12, 20)]
    produce(kafka_bootstrap, topic, [*again, {"case_id": "fu-w", "status": "withdrawn",
                                              "version": 9}, *new])
    env["PEAKEND_APP_ID"] = f"fu-{tag}-other"  # another group: the ledger alone prevents repeats
    assert "posted 8 new cases" in run_consumer(env, url, ledger)
    assert sorted(received) == [f"fu-{i:03d}" for i in range(20)]
