"""`peakend followups` delivery (pipeline/followups_cli.py) against a local HTTP server that fails
some requests: every case delivered, none twice after a restart (by case id)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.followups_cli import Ledger, Webhook, WebhookRefused, deliver


class Ticketing:
    """A webhook that answers 503 to every third request, or `refuse` to everything."""

    def __init__(self) -> None:
        self.requests = 0
        self.received: list[str] = []  # case ids answered 2xx, in order
        self.keys: list[str] = []
        self.refuse: int | None = None


@pytest.fixture
def ticketing() -> Iterator[tuple[str, Ticketing]]:
    state = Ticketing()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests += 1
            if state.refuse is not None:
                self.send_response(state.refuse)
            elif state.requests % 3 == 0:
                self.send_response(503)
            else:
                state.received.append(body["case_id"])
                state.keys.append(self.headers["Idempotency-Key"])
                self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cases", state
    finally:
        server.shutdown()
        server.server_close()


def case(case_id: str, status: str = "open", version: int = 1) -> bytes:
    return json.dumps({"case_id": case_id, "status": status, "version": version}).encode()


def test_every_case_delivered_once_across_failures_and_a_restart(
        ticketing: tuple[str, Ticketing], tmp_path: Path) -> None:
    url, server = ticketing
    sleeps: list[float] = []
    records = [case(f"fu-{i}") for i in range(10)]
    records.insert(4, case("fu-1", "closed", 2))  # a later version of a case: not posted again
    records.insert(6, case("fu-w", "withdrawn", 3))  # never opened for the customer: not posted
    ledger = Ledger(tmp_path / "ledger.txt")
    webhook = Webhook(url, sleep=sleeps.append)
    assert deliver(records[:7], webhook, ledger) == 5
    ledger.close()
    # a restart: the ledger is read back; the topic is read again from the last commit (here:
    # from the start, the worst case)
    ledger = Ledger(tmp_path / "ledger.txt")
    assert deliver(records, Webhook(url, sleep=sleeps.append), ledger) == 5
    ledger.close()
    assert sorted(server.received) == sorted(f"fu-{i}" for i in range(10))
    assert len(server.received) == len(set(server.received))  # none twice
    assert server.keys == server.received  # Idempotency-Key is the case id
    assert server.requests > len(server.received) and sleeps  # some failed and were retried
    assert sleeps[:2] == [0.5, 0.5]  # each failure here is followed by a success


def test_backoff_doubles_up_to_the_limit() -> None:
    sleeps: list[float] = []
    webhook = Webhook("http://127.0.0.1:9/none", sleep=sleeps.append, max_delay=3.0,
                      timeout=0.5)

    class Stop(Exception):
        pass

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            raise Stop

    webhook.sleep = sleep
    with pytest.raises(Stop):
        webhook.post({"case_id": "fu-x"})
    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_refusing_webhook_stops_with_one_line_and_nothing_skipped(
        ticketing: tuple[str, Ticketing], tmp_path: Path) -> None:
    url, server = ticketing
    server.refuse = 422
    ledger = Ledger(tmp_path / "ledger.txt")
    with pytest.raises(WebhookRefused, match="refused case fu-a with HTTP 422") as caught:
        deliver([case("fu-a"), case("fu-b")], Webhook(url), ledger)
    assert "\n" not in str(caught.value) and ledger.delivered == set()


def test_a_posted_case_that_is_withdrawn_is_posted_once_more_as_withdrawn(
        ticketing: tuple[str, Ticketing], tmp_path: Path) -> None:
    url, server = ticketing
    server.requests = 1  # the 3rd, 6th... request fails: here the withdrawal's first attempt
    records = [case("fu-a"), case("fu-b", "withdrawn", 2),  # fu-b never posted: stays unposted
               case("fu-a", "withdrawn", 3), case("fu-c", version=3)]
    ledger = Ledger(tmp_path / "ledger.txt")
    assert deliver(records, Webhook(url, sleep=lambda _: None), ledger) == 2
    ledger.close()
    # a restart reading everything again posts nothing more
    ledger = Ledger(tmp_path / "ledger.txt")
    assert deliver(records, Webhook(url, sleep=lambda _: None), ledger) == 0
    ledger.close()
    assert server.received == ["fu-a", "fu-a", "fu-c"]
    assert server.keys == ["fu-a", "fu-a:withdrawn", "fu-c"]
    assert server.requests == 5  # one failed attempt, retried
    lines = (tmp_path / "ledger.txt").read_text().splitlines()
    assert lines == ["fu-a", "fu-a withdrawn", "fu-c"]
