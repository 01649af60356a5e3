"""Hypothesis strategies: valid touchpoint events and mutations of them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

IDS = st.text(min_size=1, max_size=20)
JOURNEY_IDS = IDS.filter(lambda text: "@" not in text)  # '@' is reserved (docs/contract.md)
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-20, 20) | st.floats(allow_nan=False,
                                                                  allow_infinity=False)
    | st.sampled_from([9.0, 1.0, 0.0, -1.0, 7.0, 5.0]) | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


@st.composite
def occurred_at(draw: st.DrawFn) -> str:
    # 2000-01-02..2099-12-30 local: inside the schema's UTC years for every offset
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    zone = timezone(timedelta(minutes=minutes))
    text = moment.replace(tzinfo=zone).isoformat()
    if draw(st.booleans()) and minutes == 0:
        text = text[:-6] + "Z"
    return text


@st.composite
def signals(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["wait_seconds"] = draw(st.integers(0, 10**6) | st.floats(0, 31_536_000))
    if draw(st.booleans()):
        out["handle_seconds"] = draw(st.floats(0, 1e6))
    if draw(st.booleans()):
        out["transfers"] = draw(st.integers(0, 10) | st.just(2_147_483_647))
    if draw(st.booleans()):
        out["resolved"] = draw(st.booleans())
    if draw(st.booleans()):
        out["error"] = draw(st.booleans())
    return out


@st.composite
def survey(draw: st.DrawFn, scored: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while True:
        if draw(st.booleans()):
            out["nps"] = draw(st.integers(0, 10))
        if draw(st.booleans()):
            scale = draw(st.sampled_from([5, 7]))
            out["ces_scale"] = scale
            out["ces"] = draw(st.integers(1, scale))
        if draw(st.booleans()):
            out["csat"] = draw(st.integers(1, 5))
        if not scored or out:
            break
    if draw(st.booleans()):
        out["comment"] = draw(st.text(max_size=50))
    return out


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["interaction", "survey", "journey_end", "outcome"]))
    out: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=200)),
        "schema_version": 1,
        "occurred_at": draw(occurred_at()),
        "producer": draw(IDS),
        "customer_id": draw(IDS),
        "type": kind,
        "touchpoint": draw(IDS),
        "channel": draw(st.sampled_from(
            ["web", "app", "phone", "store", "email", "chat", "social", "other"])),
        "stage": draw(st.sampled_from(["pre_purchase", "purchase", "use", "after_sales"])),
    }
    if draw(st.booleans()):
        out["journey_id"] = draw(JOURNEY_IDS)
    if draw(st.booleans()):
        out["valence"] = draw(st.floats(-1, 1) | st.integers(-1, 1))
    if draw(st.booleans()):
        out["signals"] = draw(signals())
    if kind == "survey" or draw(st.booleans()):
        out["survey"] = draw(survey(scored=kind == "survey"))
    if kind == "outcome":
        out["outcome"] = draw(st.sampled_from(
            ["churn", "repurchase", "complaint", "referral", "cancellation", "upgrade", "other"]))
    if draw(st.booleans()):
        out["attributes"] = draw(st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), st.text(max_size=20),
            max_size=5))
    return out


def _paths(obj: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in obj.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths.extend((key, sub) for sub in value)
    return paths


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one to three changes that may or may not break it."""
    out = draw(valid_events())
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(out)
        action = draw(st.sampled_from(["replace", "delete", "add", "nudge"]))
        path = draw(st.sampled_from(paths)) if paths else ("event_id",)
        parent = out if len(path) == 1 else out.get(path[0])
        if not isinstance(parent, dict):
            continue
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "delete":
            parent.pop(key, None)
        elif action == "add":
            name = draw(st.sampled_from(["nps", "ces", "ces_scale", "csat", "outcome",
                                         "survey", "signals", "valence", "transfers",
                                         "journey_id", "colour"]) | st.text(max_size=5))
            parent[name] = draw(JSON_VALUES)
        elif isinstance(parent.get(key), int | float) and not isinstance(parent.get(key), bool):
            parent[key] = parent[key] + draw(st.sampled_from([-11, -1, 1, 0.5, 3, 11]))
        elif isinstance(parent.get(key), str):
            parent[key] = draw(st.sampled_from(["", parent[key] + "x", parent[key][:-1],
                                                parent[key].upper(), parent[key] + "\n"]))
    return out
