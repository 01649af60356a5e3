"""Personas of the synthetic journey generator (docs/design.md 1, domain literature scenarios).

Each persona is a generator that writes one journey through a `JourneyBuilder`, yielding each
event as it is made, in event-time order: its touchpoints with
operational signals (most of the volume), sparse survey answers (NPS/CES/CSAT), `journey_end`
markers and outcomes. The builder owns randomness, ids, time formatting and the injected survey
shifts (drops and declines), so personas only say what happens when.

| persona      | keyed by    | shape (through the core)                                          |
|--------------|-------------|-------------------------------------------------------------------|
| ecommerce    | customer    | many neutral clicks, rare errors, surveys on ~1% of sessions      |
| hotel        | journey_id  | middling stay, a bad room moment, water at checkout: positive end |
| invest       | journey_id  | 1 h wait, 4 transfers, unresolved for a month: deep negative peak |
| bank         | either      | answered at first ring, resolved in 2 min: positive peak and end  |
| telecom      | journey_id  | hotline, account manager, store all "so-so": flat, no peak        |
| recovery     | journey_id  | an error, a complaint, resolved well: negative worst, strong end  |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from jobs.journey_builder import DAY, HOUR, MINUTE, SECOND, JourneyBuilder, TimedEvent

_PAGES = ("home", "search", "product_page", "product_page", "product_page", "category", "cart")


def ecommerce(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """Browsing sessions of one visitor (customer-keyed: journeys split by the idle gap)."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    channel = "app" if r() < 0.4 else "web"
    sessions = 1 if r() < 0.7 else ri(2, 3)
    for session in range(sessions):
        if session:
            t += ri(45 * MINUTE, 8 * HOUR)  # beyond the idle gap: a new journey
        clicks = 2 + int(j.rng.expovariate(1 / 7))
        for _ in range(clicks):
            page = _PAGES[int(r() * 7)]
            stage = "purchase" if page == "cart" else "pre_purchase"
            if r() < 0.02:
                yield j.interaction(t, page, channel, stage, {"error": True})
            else:
                yield j.interaction(t, page, channel, stage,
                              {"wait_seconds": j.uniform(0.1, 2.5)})
            t += ri(3 * SECOND, 3 * MINUTE)
        if r() < 0.008:  # under 1% contact support
            wait = ri(20, 900)
            yield j.interaction(t, "support_chat", "chat", "after_sales",
                          {"wait_seconds": float(wait), "resolved": r() < 0.7})
            t += ri(MINUTE, 10 * MINUTE)
        if r() < 0.3:
            if r() < 0.03:
                yield j.interaction(t, "checkout", channel, "purchase", {"error": True})
            else:
                yield j.interaction(t, "checkout", channel, "purchase",
                              {"handle_seconds": float(ri(20, 240)), "resolved": True})
                if r() < 0.01:  # very sparse surveys
                    yield j.survey(t + ri(SECOND, 5 * MINUTE), "checkout", channel,
                             "purchase", csat=0.8)
            t += ri(SECOND, 2 * MINUTE)
            if r() < 0.5:
                yield j.end(t, "checkout", channel, "purchase")


def hotel(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """A hotel stay: the fruit basket surprise (or forgotten promise), water at checkout."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    yield j.moment(t, "booking", "web", "pre_purchase", j.uniform(0.1, 0.3))
    t += ri(2 * DAY // 24, 3 * DAY)
    yield j.interaction(t, "check_in", "store", "purchase",
                  {"wait_seconds": float(ri(30, 600)), "resolved": True})
    t += ri(20 * MINUTE, 2 * HOUR)
    basket = r()
    if basket < 0.25:
        yield j.moment(t, "fruit_basket", "store", "use", 0.9)  # a surprise delights
    elif basket < 0.4:
        yield j.moment(t, "fruit_basket", "store", "use", -0.6)  # advertised, then forgotten
    t += ri(2 * HOUR, 8 * HOUR)
    yield j.moment(t, "room", "store", "use", j.uniform(-0.5, 0.1))
    t += ri(8 * HOUR, 14 * HOUR)
    yield j.moment(t, "breakfast", "store", "use", j.uniform(-0.1, 0.2))
    t += ri(HOUR, 3 * HOUR)
    yield j.moment(t, "checkout", "store", "after_sales", j.uniform(0.7, 0.9))  # water
    if r() < 0.4:
        forgotten = 0.4 <= basket < 0.4 + 0.15
        yield j.survey(t + ri(MINUTE, 5 * MINUTE), "checkout", "store", "after_sales",
                 nps=(0.2, 0.45) if forgotten else (0.55, 0.12))
    yield j.end(t + 10 * MINUTE, "checkout", "store", "after_sales")


def invest(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """Investment-firm hotline: 1 h to get through, 4 transfers, still unresolved a month on."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    yield j.interaction(t, "hotline", "phone", "after_sales",
                  {"wait_seconds": float(ri(3000, 4200)), "transfers": 4,
                   "handle_seconds": float(ri(600, 1800)), "resolved": False})
    if r() < 0.3:
        yield j.survey(t + ri(2 * MINUTE, 20 * MINUTE), "hotline", "phone", "after_sales",
                 nps=(0.02, 0.85), ces=0.1)
    t += ri(2 * DAY, 5 * DAY)
    yield j.interaction(t, "email_support", "email", "after_sales", {"resolved": False})
    t += ri(4 * DAY, 8 * DAY)
    yield j.interaction(t, "hotline", "phone", "after_sales",
                  {"wait_seconds": float(ri(900, 2400)),
                   "transfers": ri(1, 3), "resolved": False})
    t += ri(20 * DAY, 25 * DAY)
    u = r()
    if u < 0.25:
        yield j.outcome(t, "complaint", "email_support", "email", "after_sales")
    elif u < 0.45:
        yield j.outcome(t, "churn", "account", "other", "after_sales")
    else:
        yield j.interaction(t, "account", "email", "after_sales", {"resolved": False})


def bank(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """A bank that answers at the first ring and resolves within 2 minutes."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    if r() < 0.5:
        yield j.interaction(t, "app_login", "app", "use", {"wait_seconds": 0.5})
        t += ri(30 * SECOND, 5 * MINUTE)
    yield j.interaction(t, "hotline", "phone", "after_sales",
                  {"wait_seconds": float(ri(1, 8)),
                   "handle_seconds": float(ri(60, 120)), "resolved": True})
    if r() < 0.2:
        yield j.survey(t + ri(MINUTE, 10 * MINUTE), "hotline", "phone", "after_sales",
                 nps=(0.75, 0.05), ces=0.9)
    if r() < 0.6:
        yield j.end(t + 11 * MINUTE, "hotline", "phone", "after_sales")
    if r() < 0.1:
        yield j.outcome(t + 12 * MINUTE, "referral", "hotline", "phone", "after_sales")


def telecom(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """Hotline, account manager and store visits, all "okay / so-so": a flat journey."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    steps = (("hotline", "phone", "after_sales"), ("account_manager", "email", "use"),
             ("store_visit", "store", "use"), ("hotline", "phone", "after_sales"))
    for touchpoint, channel, stage in steps[: ri(2, 4)]:
        yield j.moment(t, touchpoint, channel, stage, j.uniform(-0.1, 0.1))
        if r() < 0.15:
            yield j.survey(t + ri(MINUTE, 30 * MINUTE), touchpoint, channel, stage,
                     nps=(0.12, 0.35), csat=0.45, so_so=True)
        t += ri(4 * HOUR, 2 * DAY)
    yield j.end(t, "store_visit", "store", "use")


def recovery(j: JourneyBuilder) -> Iterator[TimedEvent]:
    """Service recovery: a failed delivery, a complaint, resolved well; loyalty ends higher."""
    r, ri = j.rng.random, j.ri
    t = j.start_ms
    yield j.interaction(t, "checkout", "web", "purchase",
                  {"handle_seconds": float(ri(30, 200)), "resolved": True})
    t += ri(DAY, 3 * DAY)
    yield j.interaction(t, "delivery", "other", "use", {"error": True})
    t += ri(10 * MINUTE, 6 * HOUR)
    yield j.interaction(t, "complaint", "chat", "after_sales",
                  {"wait_seconds": float(ri(60, 600)), "transfers": ri(0, 1)})
    t += ri(HOUR, DAY)
    yield j.moment(t, "resolution", "phone", "after_sales", j.uniform(0.8, 1.0),
             {"wait_seconds": float(ri(1, 30)), "resolved": True})
    if r() < 0.4:
        yield j.survey(t + ri(MINUTE, HOUR), "resolution", "phone", "after_sales",
                 nps=(0.8, 0.05), csat=0.9)
    yield j.end(t + HOUR + MINUTE, "resolution", "phone", "after_sales")
    if r() < 0.33:
        yield j.outcome(t + 2 * HOUR, "repurchase" if r() < 0.6 else "referral",
                  "checkout", "web", "purchase")


Persona = Callable[[JourneyBuilder], Iterator[TimedEvent]]

# name -> (function, how journeys are keyed: "journey" | "customer" | "either",
#          default share of journeys)
PERSONAS: dict[str, tuple[Persona, str, float]] = {
    "ecommerce": (ecommerce, "customer", 0.62),
    "bank": (bank, "either", 0.12),
    "telecom": (telecom, "journey", 0.09),
    "hotel": (hotel, "journey", 0.06),
    "recovery": (recovery, "journey", 0.06),
    "invest": (invest, "journey", 0.05),
}
