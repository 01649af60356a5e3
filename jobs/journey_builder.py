"""The synthetic-journey builder: what a persona (`jobs/personas.py`) writes one journey into,
and the survey shifts the generator (`jobs/generate.py`) injects. Both import it; neither imports
the other's internals."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pipeline.core.config import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

# (event time in epoch ms, event dict): personas are generators of these, in event-time order,
# so the generator only builds the events it delivers.
TimedEvent = tuple[int, dict[str, Any]]

# durations in epoch ms: the core's, under the short names the personas read best with
SECOND, MINUTE, HOUR, DAY = SECOND_MS, MINUTE_MS, HOUR_MS, DAY_MS
WEEK = 7 * DAY

_DETRACTOR_SCORES = (0, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6)
_COMMENTS = ("thanks", "took far too long", "friendly staff", "nobody called back",
             "okay I guess", "quick and easy", "never again", "the water was a nice touch")


@dataclass(frozen=True, slots=True)
class Shift:
    """An injected change of survey answers in one segment from `at_ms` on.

    kind `drop`: sudden, NPS falls by `points` at once. kind `decline`: slow, NPS falls by
    `points` per week since `at_ms` (up to 100). Either way, for NPS answers a share of
    points/200 moves from promoters (then passives) to detractors, which lowers the expected NPS
    by exactly `points`; the easy share of CES and the satisfied share of CSAT fall by the same
    points/200.
    """

    kind: str
    dim: str
    value: str
    at_ms: int
    points: float

    def fraction(self, ms: int) -> float:
        """How much to move at `ms`, in NPS points / 100 (0 before `at_ms`)."""
        if ms < self.at_ms:
            return 0.0
        if self.kind == "drop":
            return self.points / 100
        return min(1.0, self.points / 100 * (ms - self.at_ms) / WEEK)



class JourneyBuilder:
    """What a persona writes one journey into: events with ids, time text and survey shifts."""

    __slots__ = ("_k", "attributes", "customer_id", "event_prefix", "journey_id", "producer",
                 "random", "rng", "shifts", "start_ms")

    def __init__(self, rng: random.Random, start_ms: int, event_prefix: str, customer_id: str,
                 journey_id: str | None, attributes: dict[str, str], producer: str,
                 shifts: tuple[Shift, ...]) -> None:
        self.rng = rng
        self.random = rng.random
        self.start_ms = start_ms
        self.event_prefix = event_prefix
        self.customer_id = customer_id
        self.journey_id = journey_id
        self.attributes = attributes
        self.producer = producer
        self.shifts = shifts
        self._k = 0

    def _add(self, ms: int, kind: str, touchpoint: str, channel: str, stage: str,
             valence: float | None = None, signals: dict[str, Any] | None = None,
             survey: dict[str, Any] | None = None, outcome: str | None = None) -> TimedEvent:
        self._k += 1
        event: dict[str, Any] = {
            "event_id": f"{self.event_prefix}-{self._k}",
            "schema_version": 1,
            "occurred_at": ms,  # epoch ms until delivery, then RFC 3339 text
            "producer": self.producer,
            "customer_id": self.customer_id,
        }
        if self.journey_id is not None:
            event["journey_id"] = self.journey_id
        event["type"] = kind
        event["touchpoint"] = touchpoint
        event["channel"] = channel
        event["stage"] = stage
        if valence is not None:
            event["valence"] = valence
        if signals is not None:
            event["signals"] = signals
        if survey is not None:
            event["survey"] = survey
        if outcome is not None:
            event["outcome"] = outcome
        event["attributes"] = self.attributes
        return ms, event

    def ri(self, low: int, high: int) -> int:
        """A uniform integer in [low, high] (cheaper than Random.randint)."""
        return low + int(self.random() * (high - low + 1))

    def uniform(self, low: float, high: float) -> float:
        return round(low + (high - low) * self.random(), 2)

    def interaction(self, ms: int, touchpoint: str, channel: str, stage: str,
                    signals: dict[str, Any]) -> TimedEvent:
        """An operational touchpoint: valence comes from the scoring rules."""
        return self._add(ms, "interaction", touchpoint, channel, stage, signals=signals)

    def moment(self, ms: int, touchpoint: str, channel: str, stage: str, valence: float,
               signals: dict[str, Any] | None = None) -> TimedEvent:
        """A touchpoint whose producer knows how it felt (explicit valence)."""
        return self._add(ms, "interaction", touchpoint, channel, stage, valence=valence,
                  signals=signals)

    def end(self, ms: int, touchpoint: str, channel: str, stage: str) -> TimedEvent:
        """A journey_end marker."""
        return self._add(ms, "journey_end", touchpoint, channel, stage)

    def outcome(self, ms: int, outcome: str, touchpoint: str, channel: str, stage: str
                ) -> TimedEvent:
        """An outcome marker (churn, complaint, referral...)."""
        return self._add(ms, "outcome", touchpoint, channel, stage, outcome=outcome)

    def shift(self, ms: int, touchpoint: str, channel: str, stage: str) -> float:
        """The injected shift for an answer given at this touchpoint and time."""
        total = 0.0
        for s in self.shifts:
            dim = s.dim
            if dim == "all":
                hit = True
            elif dim == "touchpoint":
                hit = touchpoint == s.value
            elif dim == "channel":
                hit = channel == s.value
            elif dim == "stage":
                hit = stage == s.value
            else:
                hit = self.attributes.get(dim) == s.value
            if hit:
                total += s.fraction(ms)
        return total

    def survey(self, ms: int, touchpoint: str, channel: str, stage: str, *,
               nps: tuple[float, float] | None = None, ces: float | None = None,
               csat: float | None = None, so_so: bool = False) -> TimedEvent:
        """A survey answer. nps = (promoter share, detractor share); ces = share answering
        easy (5-7 of 7); csat = share satisfied (4-5). Injected shifts apply. `so_so`: the
        lukewarm answers of a flat journey (detractors answer 5-6, CSAT 3-4)."""
        rng = self.rng
        moved = self.shift(ms, touchpoint, channel, stage) / 2 if self.shifts else 0.0
        answers: dict[str, Any] = {}
        if nps is not None:
            promoters, detractors = nps
            passives = 1.0 - promoters - detractors
            if moved:
                take = min(moved, promoters)
                promoters -= take
                passives = max(0.0, passives - (moved - take))
                detractors = 1.0 - promoters - passives
            u = rng.random()
            if u < promoters:
                answers["nps"] = 9 + (rng.random() < 0.45)  # bool adds as 0/1
            elif u < promoters + passives:
                answers["nps"] = 7 + (rng.random() < 0.5)
            else:
                answers["nps"] = 5 + (rng.random() < 0.5) if so_so else \
                    _DETRACTOR_SCORES[int(rng.random() * len(_DETRACTOR_SCORES))]
        if ces is not None:
            easy = rng.random() < ces - moved
            if rng.random() < 0.2:
                answers["ces"] = 4 + (rng.random() < 0.5) if easy else 1 + int(rng.random() * 3)
                answers["ces_scale"] = 5
            else:
                answers["ces"] = 5 + int(rng.random() * 3) if easy else 1 + int(rng.random() * 4)
                answers["ces_scale"] = 7
        if csat is not None:
            good = rng.random() < csat - moved
            if so_so:
                answers["csat"] = 4 if good else 3
            else:
                answers["csat"] = 4 + (rng.random() < 0.5) if good else 1 + int(rng.random() * 3)
        if rng.random() < 0.05:
            answers["comment"] = _COMMENTS[rng.randrange(len(_COMMENTS))]
        return self._add(ms, "survey", touchpoint, channel, stage, survey=answers)
