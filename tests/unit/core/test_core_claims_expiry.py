"""`EventClaims` forgets claims in the order and at the moment the single expiry heap did (git
44afb5e): the sorted run with a heap for out-of-order claims is only a cheaper structure."""

from __future__ import annotations

import random
from heapq import heappop, heappush

from pipeline.core.claims import Claim, EventClaims


class HeapClaims:
    """The claims' expiry as it was: one heap of (at_ms, event_id)."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.expiry: list[tuple[int, str]] = []

    def claim(self, event_id: str, digest: int, key: str, partition: int, at_ms: int) -> None:
        held = self.claims.get(event_id)
        if held is None:
            self.claims[event_id] = Claim(digest, key, partition, at_ms, at_ms)
            heappush(self.expiry, (at_ms, event_id))
        elif at_ms > held.at_ms:
            self.claims[event_id] = held._replace(at_ms=at_ms)
            heappush(self.expiry, (at_ms, event_id))

    def forget_before(self, before_ms: int) -> list[str]:
        gone = []
        while self.expiry and self.expiry[0][0] < before_ms:
            at_ms, event_id = heappop(self.expiry)
            held = self.claims.get(event_id)
            if held is not None and held.at_ms == at_ms:
                del self.claims[event_id]
                gone.append(event_id)
        return gone


def test_forgets_as_the_heap_did() -> None:
    rng = random.Random(13)
    for disorder in (0.0, 0.05, 0.5, 1.0):
        claims, reference = EventClaims(), HeapClaims()
        clock = 0
        for step in range(6_000):
            clock += rng.randrange(0, 40)
            # mostly in order; some late by up to a few hundred ms, some ties of one ms
            at = clock - (rng.randrange(0, 400) if rng.random() < disorder else 0)
            event_id = f"e{rng.randrange(0, 2_500)}"  # ids repeat: later copies move the expiry
            claims.claim(event_id, 7, "k", 0, at)
            reference.claim(event_id, 7, "k", 0, at)
            if step % 37 == 0:
                horizon = clock - rng.randrange(0, 3_000)
                assert claims.forget_before(horizon) == reference.forget_before(horizon)
                assert len(claims) == len(reference.claims)
                # the run's two lists stay side by side (compacted together)
                assert len(claims._expiry_at) == len(claims._expiry_id)
        assert claims.forget_before(clock + 1) == reference.forget_before(clock + 1)
        assert len(claims) == 0


def test_restored_claims_are_forgotten_in_order() -> None:
    claims = EventClaims()
    for event_id, at in (("c", 30), ("a", 50), ("b", 10), ("d", 30)):
        claims.restore_key(event_id, [1, "k", 0, at])
    claims.claim("e", 1, "k", 0, 20)
    assert claims.forget_before(31) == ["b", "e", "c", "d"]
    assert claims.forget_before(51) == ["a"]
