"""Synthetic journeys with planted driver importances, to check `peakend drivers` recovers them.

Each journey visits every touchpoint of `weights` with probability `visit`; a visit is one moment
with a valence drawn uniformly from [-1, 1] shifted by the touchpoint's `bias` (its
performance), clipped to [-1, 1]. The journey ends with a survey whose NPS answer is

    round(5 + 5 * (sum_j weight_j * valence_j + noise) / scale), clipped to 0..10

(valence_j = 0 where the journey did not visit j, the features' own convention), so a
touchpoint's share of the explained variance grows with its weight^2: the planted ranking of
importance is the order of |weight|. Events are schema v1 dicts, ready for JSON Lines.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.core.timefmt import format_ms

START_MS = 1_788_220_800_000  # 2026-09-01T00:00:00Z, as jobs.generate
CHANNELS = ("web", "app", "phone", "store", "email", "chat")


def planted_events(journeys: int, weights: Mapping[str, float], *, bias: Mapping[str, float]
                   | None = None, visit: float = 0.7, noise: float = 0.3, seed: int = 1
                   ) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    names = list(weights)
    bias = bias or {}
    scale = max(sum(abs(w) for w in weights.values()), 1e-9)
    for j in range(journeys):
        t = START_MS + j * 1_000
        journey_id = f"planted-{seed}-{j}"
        customer = f"pc{seed}-{j}"
        total = 0.0
        k = 0
        for i, name in enumerate(names):
            if rng.random() >= visit:
                continue
            valence = max(-1.0, min(1.0, rng.uniform(-1.0, 1.0) + bias.get(name, 0.0)))
            total += weights[name] * valence
            k += 1
            yield _event(f"{journey_id}-{k}", t + k, customer, journey_id, "interaction", name,
                         CHANNELS[i % len(CHANNELS)], valence=round(valence, 4))
        nps = round(5 + 5 * (total + rng.gauss(0.0, noise)) / scale)
        k += 1
        yield _event(f"{journey_id}-{k}", t + k, customer, journey_id, "survey", "survey",
                     "email", survey={"nps": max(0, min(10, nps))})
        yield _event(f"{journey_id}-end", t + k + 1, customer, journey_id, "journey_end",
                     "survey", "email")


def _event(event_id: str, ms: int, customer: str, journey_id: str, kind: str, touchpoint: str,
           channel: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "schema_version": 1, "occurred_at": format_ms(ms),
            "producer": "peakend-planted", "customer_id": customer, "journey_id": journey_id,
            "type": kind, "touchpoint": touchpoint, "channel": channel, "stage": "use", **extra}
