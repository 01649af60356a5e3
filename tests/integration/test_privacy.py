"""Personal data (docs/design.md 4, docs/privacy.md): with PEAKEND_PSEUDONYMISE_KEY set, no raw
customer_id reaches a ClickHouse table or an output topic, and the key itself is never printed:
not by `peakend settings`, not in the worker's log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from pipeline.stream.topics import (
    contributions_topic,
    followup_inputs_topic,
    followups_topic,
    journey_events_topic,
)
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    count,
    produce_lines,
    stream_setup,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KEY = "pk-9f1c2e7d-never-print-me"


def events(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        event = {
            "event_id": f"priv-{i}", "schema_version": 1,
            "occurred_at": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}Z", "producer": "test",
            "customer_id": f"alice.{i % 7}@example.com", "type": "survey",
            "touchpoint": "hotline", "channel": "phone", "stage": "after_sales",
            "survey": {"nps": i % 11, "comment": f"call me on 555-01{i % 7}"},
        }
        if i % 2:
            event["journey_id"] = f"priv-j{i % 5}"
        out.append(json.dumps(event).encode())
    return out


def invalid_events(n: int) -> list[bytes]:
    """Rejected records carrying the raw ids and comments: their dead letters are sealed (issue
    21: a redacted copy and a digest, the original encrypted or dropped)."""
    out = []
    for i in range(n):
        event = json.loads(events(1)[0])
        event |= {"event_id": f"priv-bad-{i}", "customer_id": f"alice.{i % 7}@example.com",
                  "channel": "fax", "survey": {"nps": 3, "comment": f"call me on 555-01{i % 7}"}}
        out.append(json.dumps(event).encode())
    return out


def test_settings_output_never_shows_the_key() -> None:
    for docs in ([], ["--docs"]):
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "settings", *docs], cwd=ROOT, check=True,
            capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "PEAKEND_PSEUDONYMISE_KEY": KEY,
                 "PEAKEND_KAFKA_SASL_PASSWORD": KEY + "-sasl"},
        )
        assert KEY not in proc.stdout + proc.stderr
        assert "PEAKEND_PSEUDONYMISE_KEY=***" in proc.stdout


def test_no_raw_customer_id_stored_or_emitted_and_key_not_logged(
    tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls
) -> None:
    # the bus topics are read below: not purged meanwhile (pipeline/stream/bus_purge.py)
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=2,
                         PEAKEND_PSEUDONYMISE_KEY=KEY, PEAKEND_BUS_PURGE_SECONDS="3600")
    lines = events(200) + invalid_events(10)
    worker = Worker(setup, tmp_path, "priv", 30)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        wait_until(lambda: count(setup, "SELECT count() FROM touchpoint_events") >= 200
                   and count(setup, "SELECT count() FROM journeys") > 0
                   and count(setup, "SELECT count() FROM dead_letters") >= 10, 120,
                   "the events in ClickHouse", worker.log_tail)
    finally:
        worker.stop()
    raw = [f"alice.{i}@example.com" for i in range(7)]
    wh = setup.warehouse()
    try:
        for table in ("touchpoint_events", "journeys", "metric_buckets", "alerts",
                      "dead_letters", "followups"):
            columns = [str(r[0]) for r in wh.query(f"DESCRIBE TABLE {table}")]
            text = json.dumps(wh.query(f"SELECT {', '.join(columns)} FROM {table}"),
                              default=str)
            for customer in raw:
                assert customer not in text, f"raw customer_id in {table}"
            assert "555-01" not in text, f"a comment reached {table}"
        ids = {str(r[0]) for r in wh.query("SELECT DISTINCT customer_id FROM touchpoint_events")}
        assert ids and all(i.startswith("c_") and len(i) == 66 for i in ids), ids
        forms = wh.query("SELECT original_form, original_b64, redacted FROM dead_letters")
        assert forms and all(form == "dropped" and stored == "" and '"c_' in redacted
                             for form, stored, redacted in forms), forms
    finally:
        wh.close()
    settings = setup.settings()
    topics = [settings.topic_journeys, settings.topic_metrics, settings.topic_alerts,
              settings.topic_dead_letters, contributions_topic(settings),
              journey_events_topic(settings)]
    topics += [followups_topic(settings), followup_inputs_topic(settings)]
    consumer = KafkaConsumer(*topics, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    seen = 0
    for message in consumer:
        seen += 1
        blob = (message.key or b"") + (message.value or b"")
        for customer in raw:
            assert customer.encode() not in blob, f"raw customer_id on {message.topic}"
        assert b"555-01" not in blob, f"a comment on {message.topic}"
    consumer.close()
    assert seen > 0
    log = worker.log_path.read_text(errors="replace")
    assert KEY not in log
