"""The claims stage without servers: verdicts, dead letters, state round trip, eviction, and the
records it exchanges with stage one and the sink."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from pipeline.core.config import CoreConfig
from pipeline.stream.batches import decode_rows, decode_withdrawals, encode_withdrawals
from pipeline.stream.claims import (
    FORGOTTEN_KEY,
    WATERMARKS_KEY,
    ClaimsStage,
    claim_item,
    decode_claims,
    encode_claims,
)
from pipeline.stream.outbox import CLAIMS, Outbox

T0 = 1_790_000_000_000
DAY = 86_400_000


def item(event_id: str, key: str, digest: int, partition: int, at: int = T0,
         watermark: int = T0, offset: int = 1) -> list[Any]:
    [record] = encode_claims([claim_item(event_id, key, digest, partition, at, watermark,
                                         partition, offset, b'{"raw":1}')])
    [claim] = decode_claims(record)  # as the claims stage reads it
    return claim


def test_the_smaller_digest_wins_and_the_second_claim_is_the_letter() -> None:
    stage = ClaimsStage(CoreConfig(), "cx.touchpoints")
    assert not stage.apply([item("x", "j-a", 700, 0)]).withdrawals
    out = stage.apply([item("x", "j-b", 500, 1, offset=9)])
    assert out.withdrawals == {0: [["j-a", "x", 700]]}
    [letter] = out.letters
    assert (letter.reason, letter.source_partition, letter.source_offset) == ("conflict", 1, 9)
    assert "this copy is kept" in letter.error
    out = stage.apply([item("x", "c1", 900, 2, offset=11)])
    assert out.withdrawals == {2: [["c1", "x", 900]]}
    assert "this one is not applied" in out.letters[0].error
    # a claim seen again (redelivery) changes nothing
    assert not stage.apply([item("x", "j-b", 500, 1)]).withdrawals


def test_state_round_trip_and_eviction_past_the_horizon() -> None:
    config = CoreConfig()
    stage = ClaimsStage(config, "t")
    stage.apply([item("x", "j-a", 700, 0), item("y", "j-a", 5, 0)])
    state = dict(stage.dirty_state())
    assert set(state) == {"x", "y", WATERMARKS_KEY, FORGOTTEN_KEY}
    restored = ClaimsStage(config, "t")
    restored.restore_keys(json.loads(json.dumps(list(state.items()))))
    assert restored.apply([item("x", "j-b", 500, 1)]).withdrawals == {0: [["j-a", "x", 700]]}
    assert dict(restored.dirty_state())["x"] == [500, "j-b", 1, T0, T0]
    # stream time of both journey partitions past the lateness: both claims are forgotten
    late = T0 + config.windows.allowed_lateness_ms + 2 * config.windows.bucket_ms
    restored.apply([item("z", "j-c", 1, 0, at=late, watermark=late),
                    item("z", "j-c", 1, 1, at=late, watermark=late)])
    pairs = dict(restored.dirty_state())
    # forgotten by time: no removal entry each, the horizon instead (restore forgets again)
    assert "x" not in pairs and "y" not in pairs and pairs["z"] is not None
    assert restored.drain_forgotten() == ["x", "y"] and restored.drain_forgotten() == []
    assert pairs[FORGOTTEN_KEY] == late - config.windows.allowed_lateness_ms - (
        config.windows.bucket_ms)
    again = ClaimsStage(config, "t")
    again.restore_keys([("x", [700, "j-a", 0, T0]), (FORGOTTEN_KEY, pairs[FORGOTTEN_KEY])])
    assert len(again.claims) == 0 and again.drain_forgotten() == ["x"]
    assert not restored.apply([item("x", "j-q", 1, 2, at=late, watermark=late)]).withdrawals


def test_claims_leave_in_one_record_per_target_and_withdrawals_have_no_rows() -> None:
    outbox = Outbox(4)
    outbox.add_claim(3, item("x", "j-a", 7, 0))
    outbox.add_claim(3, item("y", "j-a", 8, 0))
    [record] = outbox.drain().records
    assert (record.role, record.partition) == (CLAIMS, 3) and record.value is not None
    assert [c[0] for c in decode_claims(record.value)] == ["x", "y"]
    value = encode_withdrawals([["j-a", "x", 7]])
    assert decode_withdrawals(value) == [["j-a", "x", 7]]
    assert list(decode_rows(value)) == []  # the sink's touchpoint_events skip it


def test_claims_records_of_format_1_still_read_and_a_broken_tail_is_named() -> None:
    """Format 1 (each raw record a JSON string, before the fifteenth round) reads as the same
    claims as format 2; a format 2 record cut short is an error naming the record, not claims
    with wrong raw records."""
    raw = b'{"event_id":"x","note":"a \\"quoted\\" \xc3\xa9"}'
    claim = claim_item("x", "j-a", 7, 0, T0, T0, 2, 9, raw)
    format_1 = orjson.dumps({"c": [[*claim[:-1], raw.decode()]]})
    [record] = encode_claims([claim])
    assert decode_claims(format_1) == decode_claims(record) == [claim]
    assert record.endswith(raw + b"%08x" % len(raw))  # the raw record as the producer sent it
    with pytest.raises(ValueError, match="a claims record"):
        decode_claims(record[:-3])
    with pytest.raises(ValueError, match="a claims record whose items claim"):
        decode_claims(record[:-8 - len(raw)] + raw[:-1] + b"%08x" % (len(raw) - 1))
