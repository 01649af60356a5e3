"""`peakend followups --webhook URL`: post each new follow-up case to a ticketing webhook.

The reference consumer of the cases topic (`cx.followups`, docs/followups.md). Each case id is
posted once, as the case's JSON (docs/followups.md, "Case record") with the header
`Idempotency-Key: <case_id>`:

- at least once: a case is written to the delivery ledger only after the webhook answered 2xx,
  and the consumer group's offsets are committed only after that; a failed request (connection
  error, timeout, 408, 429, 5xx) is retried with exponential backoff, for ever, the case
  holding back the ones behind it (ticketing outages do not lose cases);
- not twice: the ledger (`--ledger`, one case id a line, flushed and fsynced after each
  delivery) survives restarts, so records read again after a restart are skipped by case id.
  Only a crash between the webhook's answer and the ledger write can post a case again; the
  `Idempotency-Key` header lets the ticketing system drop that copy.
- A 4xx other than 408/429 means the webhook refuses this case: the command stops with one line
  naming the case and the answer, offsets not committed, so nothing is skipped silently.
- Cases first seen `withdrawn` (an earlier case of the customer took their place) are not posted.
  A case already posted that becomes `withdrawn` is posted once more, as withdrawn (header
  `Idempotency-Key: <case_id>:withdrawn`, ledger line `<case_id> withdrawn`): the ticket can be
  cancelled, so the customer is not called twice for one episode. Other later versions of a
  case already posted (closed, evidence updated) are not posted again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.core.followups import WITHDRAWN
from pipeline.settings import Settings
from pipeline.stream.topics import followups_topic

RETRYABLE = frozenset({408, 429})

# The open cases to call first: printed by `peakend demo`, a panel of the follow-up dashboard
# (dashboards/panels_followups.py).
TOP_OPEN_CASES_SQL = (
    "SELECT case_id, customer_id, trigger, priority, opened_at, due_at, silent, "
    "peak_touchpoint, round(peak_valence, 2) AS peak, round(end_valence, 2) AS end_valence "
    "FROM followups_open ORDER BY priority_rank, due_at, case_id LIMIT 50")


class WebhookRefused(Exception):
    """The webhook answered a 4xx that retrying cannot fix; one line for the user."""


class Ledger:
    """Case ids delivered so far: a text file, one id a line (`<case_id> withdrawn` for a
    withdrawal posted), appended and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.delivered: set[str] = set()
        if path.exists():
            self.delivered = {line.strip() for line in path.read_text("utf-8").splitlines()
                              if line.strip()}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")

    def __contains__(self, case_id: str) -> bool:
        return case_id in self.delivered

    def add(self, case_id: str) -> None:
        self._handle.write(case_id + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.delivered.add(case_id)

    def close(self) -> None:
        self._handle.close()


class Webhook:
    """POSTs JSON with retries (exponential backoff from `first_delay` up to `max_delay`)."""

    def __init__(self, url: str, *, timeout: float = 10.0, first_delay: float = 0.5,
                 max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 note: Callable[[str], None] = lambda text: None) -> None:
        self.url = url
        self.timeout = timeout
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.note = note
        self.attempts = 0  # requests sent, retries included

    def post(self, case: dict[str, Any], idempotency_key: str = "") -> None:
        """Deliver one case; returns once the webhook answered 2xx. `idempotency_key`: default
        the case id."""
        body = json.dumps(case, ensure_ascii=False, separators=(",", ":")).encode()
        delay = self.first_delay
        while True:
            self.attempts += 1
            request = urllib.request.Request(
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json",
                         "Idempotency-Key": idempotency_key or str(case["case_id"])})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in RETRYABLE:
                    raise WebhookRefused(
                        f"the webhook refused case {case['case_id']} with HTTP {exc.code} "
                        f"{exc.reason}; fix the webhook or the case, then run again "
                        "(nothing after it was skipped)") from None
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = str(getattr(exc, "reason", exc))
            self.note(f"case {case['case_id']}: {problem}; retrying in {delay:.1f} s")
            self.sleep(delay)
            delay = min(delay * 2, self.max_delay)


def deliver(values: Iterable[bytes], webhook: Webhook, ledger: Ledger) -> int:
    """Post the new cases among `values` (records of the cases topic, in order), and the
    withdrawal of a case posted before; returns how many new cases were posted."""
    posted = 0
    for value in values:
        case = json.loads(value)
        case_id = str(case["case_id"])
        if case.get("status") == WITHDRAWN:
            withdrawal = f"{case_id} {WITHDRAWN}"
            if case_id in ledger and withdrawal not in ledger:
                webhook.post(case, f"{case_id}:{WITHDRAWN}")
                ledger.add(withdrawal)
            continue
        if case_id in ledger:
            continue
        webhook.post(case)
        ledger.add(case_id)
        posted += 1
    return posted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--webhook", required=True, metavar="URL",
                        help="http(s) URL that receives each new case as a JSON POST")
    parser.add_argument("--ledger", default=".peakend-followups-delivered.txt",
                        help="file of the case ids delivered so far (kept across restarts)")
    parser.add_argument("--group", help="consumer group (default <PEAKEND_APP_ID>-followups-"
                                        "webhook)")
    parser.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds without a new record (default: run "
                             "until interrupted)")


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer

    if not args.webhook.startswith(("http://", "https://")):
        print(f"peakend followups: --webhook {args.webhook!r} is not an http(s) URL",
              file=sys.stderr)
        return 2
    settings = Settings.from_env()
    try:
        ledger = Ledger(Path(args.ledger))
    except OSError as exc:
        print(f"peakend followups: {args.ledger}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    webhook = Webhook(args.webhook,
                      note=lambda text: print(f"peakend followups: {text}", file=sys.stderr))
    consumer = KafkaConsumer(
        followups_topic(settings), bootstrap_servers=settings.kafka_bootstrap,
        group_id=args.group or f"{settings.app_id}-followups-webhook",
        enable_auto_commit=False, auto_offset_reset="earliest",
        **settings.kafka_client_options())
    posted = 0
    idle_since = time.monotonic()
    try:
        while True:
            batches = consumer.poll(timeout_ms=1000)
            values = [r.value for batch in batches.values() for r in batch]
            if values:
                posted += deliver(values, webhook, ledger)
                consumer.commit()  # after delivery and ledger: at least once
                idle_since = time.monotonic()
            elif args.until_idle is not None and time.monotonic() - idle_since > args.until_idle:
                break
    except WebhookRefused as exc:
        print(f"peakend followups: {exc}", file=sys.stderr)
        return 1
    finally:
        consumer.close(autocommit=False)
        ledger.close()
    print(f"posted {posted} new cases to {args.webhook} ({webhook.attempts} requests)")
    return 0
