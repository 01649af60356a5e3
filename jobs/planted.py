"""Synthetic journeys with planted driver importances, to check `peakend drivers` recovers them.

Each journey visits every touchpoint of `weights` with probability `visit`; a visit is one moment
with a valence drawn uniformly from [-1, 1] shifted by the touchpoint's `bias` (its
performance), clipped to [-1, 1]. The journey ends with a survey whose NPS answer is

    round(5 + 5 * (sum_j weight_j * valence_j + noise) / scale), clipped to 0..10

(valence_j = 0 where the journey did not visit j, the features' own convention), so a
touchpoint's share of the explained variance grows with its weight^2: the planted ranking of
importance is the order of |weight|. Events are schema v1 dicts, ready for JSON Lines.

Variants (defaults: as above, every event with the journey's id, the survey right after the
moments): `journey_ids=False` sends no journey id (the core keys the journey by customer and idle
gap); `answer_after_ms` sends the survey that long after the last moment (without journey ids
and past the 30-minute gap, the answer is then a journey of its own, as an NPS survey e-mailed
the next day); `churn_at_or_below` adds an outcome event `churn` beside the survey when the NPS
answer is at most that (for `--outcome outcome:churn`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.core.timefmt import format_ms

START_MS = 1_788_220_800_000  # 2026-09-01T00:00:00Z, as jobs.generate
CHANNELS = ("web", "app", "phone", "store", "email", "chat")


def planted_events(journeys: int, weights: Mapping[str, float], *, bias: Mapping[str, float]
                   | None = None, visit: float = 0.7, noise: float = 0.3, seed: int = 1,
                   journey_ids: bool = True, answer_after_ms: int = 0,
                   churn_at_or_below: int | None = None) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    deferred: list[tuple[int, int, dict[str, Any]]] = []  # answers sent later, in time order
    names = list(weights)
    bias = bias or {}
    scale = max(sum(abs(w) for w in weights.values()), 1e-9)
    for j in range(journeys):
        t = START_MS + j * 1_000
        journey_id = f"planted-{seed}-{j}"
        customer = f"pc{seed}-{j}"
        sent_id = journey_id if journey_ids else None
        while deferred and deferred[0][0] <= t:
            yield heapq.heappop(deferred)[2]
        total = 0.0
        k = 0
        for i, name in enumerate(names):
            if rng.random() >= visit:
                continue
            valence = max(-1.0, min(1.0, rng.uniform(-1.0, 1.0) + bias.get(name, 0.0)))
            total += weights[name] * valence
            k += 1
            yield _event(f"{journey_id}-{k}", t + k, customer, sent_id, "interaction", name,
                         CHANNELS[i % len(CHANNELS)], valence=round(valence, 4))
        nps = max(0, min(10, round(5 + 5 * (total + rng.gauss(0.0, noise)) / scale)))
        k += 1
        at = t + k + answer_after_ms
        if answer_after_ms:
            yield _event(f"{journey_id}-end", t + k, customer, sent_id, "journey_end", "survey",
                         "email")
        answers = [_event(f"{journey_id}-{k}", at, customer, sent_id, "survey", "survey",
                          "email", survey={"nps": nps})]
        if churn_at_or_below is not None and nps <= churn_at_or_below:
            answers.append(_event(f"{journey_id}-churn", at + 1, customer, sent_id, "outcome",
                                  "account", "web", outcome="churn"))
        if answer_after_ms:
            for n, event in enumerate(answers):  # 2j + n: a unique tie-breaker
                heapq.heappush(deferred, (at + n, 2 * j + n, event))
        else:
            yield from answers
            yield _event(f"{journey_id}-end", at + 1 + (churn_at_or_below is not None),
                         customer, sent_id, "journey_end", "survey", "email")
    while deferred:
        yield heapq.heappop(deferred)[2]


def _event(event_id: str, ms: int, customer: str, journey_id: str | None, kind: str,
           touchpoint: str, channel: str, **extra: Any) -> dict[str, Any]:
    event = {"event_id": event_id, "schema_version": 1, "occurred_at": format_ms(ms),
             "producer": "peakend-planted", "customer_id": customer, "journey_id": journey_id,
             "type": kind, "touchpoint": touchpoint, "channel": channel, "stage": "use", **extra}
    if journey_id is None:
        del event["journey_id"]
    return event
