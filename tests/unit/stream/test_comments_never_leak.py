"""Issue 21: with the strict settings (PEAKEND_PSEUDONYMISE_KEY set, PEAKEND_COMMENTS=drop, also
=pseudonymise) no comment text and no raw customer id reaches any table, topic or log.

Every path a record takes is driven without servers, with generated comments and ids on valid,
invalid, late, future and conflicting events:
- the stream: the entry stage's batch records (the internal topic) and dead letters, stage one's
  journeys, contributions and `late`/`future`/`conflict` dead letters, and the ClickHouse rows
  the sink makes of all of them (touchpoint_events, journeys, dead_letters);
- `peakend replay` (the same core as the stream, tested row for row elsewhere): its four files,
  its stdout/stderr and every log record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.config import CoreConfig
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.stream.batches import decode_batch, decode_rows
from pipeline.stream.entry import Router
from pipeline.stream.partition import PartitionProcessor

SCORING_RULES = load_scoring_rules()

TOPIC = "cx.touchpoints"
KEY = "strict-test-key"
DEAD_LETTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
# No hex digit among the letters: a pseudonym, digest or hash (hex) never contains them by chance.
personal_text = st.from_regex(r"[g-z]{12,20}", fullmatch=True)


def event(n: int, customer: str, comment: str, *, at: str = "2026-11-20T10:00:00Z",
          **extra: object) -> dict[str, object]:
    return {"event_id": f"e{n}", "schema_version": 1, "occurred_at": at, "producer": "p",
            "customer_id": customer, "type": "survey", "touchpoint": "hotline",
            "channel": "phone", "stage": "after_sales",
            "survey": {"nps": n % 11, "comment": comment}, **extra}


def lines_for(customers: list[str], comments: list[str]) -> list[bytes]:
    out: list[dict[str, object] | bytes] = []
    for n, (customer, comment) in enumerate(zip(customers, comments, strict=True)):
        out.append(event(n, customer, comment, at=f"2026-11-20T10:{n % 60:02d}:00Z"))
        out.append(event(1000 + n, customer, comment, journey_id=f"j{n}"))
    first_customer, first_comment = customers[0], comments[0]
    out += [
        event(2000, first_customer, first_comment, channel="fax"),  # invalid
        {**event(2001, first_customer, first_comment), "remark": first_comment},  # unknown field
        event(2002, first_customer, first_comment, at="2026-11-01T00:00:00Z"),  # late
        event(2003, first_customer, first_comment, at="2099-01-01T00:00:00Z"),  # future
        {**event(0, first_customer, first_comment), "touchpoint": "shop"},  # conflict
        json.dumps(event(2004, first_customer, first_comment)).encode()[:-2],  # not JSON
    ]
    return [x if isinstance(x, bytes) else json.dumps(x).encode() for x in out]


def strict_settings(comments: str) -> Settings:
    return Settings.from_env({"PEAKEND_PSEUDONYMISE_KEY": KEY, "PEAKEND_COMMENTS": comments,
                              "PEAKEND_DEAD_LETTER_KEY": DEAD_LETTER_KEY,
                              "PEAKEND_MAX_CLOCK_SKEW_SECONDS": "300"})


def assert_absent(secrets: list[str], where: str, text: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} reached {where}: {text[:300]}"


def stream_outputs(lines: list[bytes], privacy: PersonalData) -> list[tuple[str, str]]:
    """(where, text) of everything the stream writes for these records."""
    records = [SimpleNamespace(topic=TOPIC, partition=n % 3, offset=n, value=line,
                               timestamp=1795168800000, timestamp_type=0)
               for n, line in enumerate(lines)]
    routed = Router(topic=TOPIC, partitions=2, max_event_bytes=65536,
                    privacy=privacy).route(records, read_ms=1795168800000)
    out: list[tuple[str, str]] = []
    letters = [DeadLetter.from_json(letter) for _, letter in routed.dead_letters]
    config = CoreConfig()
    for target, batches in sorted(routed.batches.items()):
        proc = PartitionProcessor(target, config, SCORING_RULES)
        for batch in batches:
            out.append(("topic <app>-journey-events", batch.decode("utf-8", "replace")))
            rows_of = [row for row, *_ in decode_rows(batch)]
            out.append(("table touchpoint_events", repr(rows("touchpoint_events", rows_of))))
            for item in decode_batch(batch):
                result = proc.process(item.event, 1795168800000)
                for journey in result.journeys:
                    out.append(("topic cx.journeys", json.dumps(journey.to_dict())))
                    out.append(("table journeys", repr(rows("journeys", [journey.to_dict()]))))
                for _, message in result.contributions:
                    out.append(("topic <app>-contributions", json.dumps(message, default=str)))
                if result.reject is not None:
                    letters.append(privacy.seal(proc.reject_letter(
                        result.reject, item.event, item.raw, TOPIC, item.source_offset,
                        item.source_partition)))
    assert {letter.reason for letter in letters} >= {"invalid", "not_json", "late"}
    for letter in letters:
        out.append(("topic cx.dead-letters", letter.to_json().decode()))
        out.append(("table dead_letters", repr(rows("dead_letters", [letter.to_dict()]))))
    return out


@pytest.mark.parametrize("comments", ["drop", "pseudonymise"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.lists(personal_text, min_size=1, max_size=4, unique=True),
       comments_text=st.lists(personal_text, min_size=4, max_size=4, unique=True))
def test_no_comment_or_customer_id_reaches_a_topic_table_file_or_log(
    comments: str, customers: list[str], comments_text: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    comment_list = comments_text[: len(customers)]
    lines = lines_for(customers, comment_list)
    secrets = customers + comment_list
    settings_ = strict_settings(comments)
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    for where, text in stream_outputs(lines, PersonalData.from_settings(settings_)):
        assert_absent(secrets, where, text)

    # peakend replay with the same variables: files, stdout, stderr
    for name, value in (("PEAKEND_PSEUDONYMISE_KEY", KEY), ("PEAKEND_COMMENTS", comments),
                        ("PEAKEND_DEAD_LETTER_KEY", DEAD_LETTER_KEY)):
        monkeypatch.setenv(name, value)
    run = tmp_path / f"run-{abs(hash(tuple(secrets)))}"
    run.mkdir(exist_ok=True)
    (run / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert main(["replay", str(run / "events.jsonl"), "--output", str(run / "out"),
                 "--now", "2026-11-20T12:00:00Z"]) == 0
    for path in sorted((run / "out").iterdir()):
        assert_absent(secrets, f"replay's {path.name}", output_text(path))
    letters = (run / "out" / "dead_letters.jsonl").read_text().splitlines()
    reasons = sorted(json.loads(letter)["reason"] for letter in letters)
    assert reasons == ["conflict", "future", "invalid", "invalid", "late", "not_json"]
    printed = capsys.readouterr()
    assert_absent(secrets, "stdout/stderr", printed.out + printed.err)
    assert_absent(secrets, "the log", "\n".join(r.getMessage() for r in caplog.records))


def output_text(path: Path) -> str:
    """A replay output as text: JSON Lines as written; a Parquet file (the drivers' inputs,
    compressed and dictionary-encoded, so its bytes would hide a value) as its decoded rows and
    its metadata."""
    if path.suffix != ".parquet":
        return path.read_text(encoding="utf-8")
    table = pq.read_table(path)
    return repr(table.to_pylist()) + repr(table.schema.metadata)


def test_the_comment_is_kept_or_hashed_as_the_setting_says() -> None:
    """The property above could pass by dropping everything: the setting does change what is
    kept."""
    line = json.dumps(event(1, "alice", "too slow")).encode()
    record = SimpleNamespace(topic=TOPIC, partition=0, offset=0, value=line,
                             timestamp=1795168800000, timestamp_type=0)
    kept = {}
    for comments in ("keep", "drop", "pseudonymise"):
        privacy = PersonalData.from_settings(strict_settings(comments))
        routed = Router(topic=TOPIC, partitions=1, max_event_bytes=65536,
                        privacy=privacy).route([record], read_ms=1795168800000)
        [batch] = routed.batches[0]
        survey = decode_batch(batch)[0].event.survey
        assert survey is not None
        kept[comments] = survey.comment
    assert kept["keep"] == "too slow"
    assert kept["drop"] is None
    assert kept["pseudonymise"] is not None and kept["pseudonymise"].startswith("h_")
    assert "too slow" not in kept["pseudonymise"]
