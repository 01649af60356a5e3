"""PEAKEND_CES_5_HIGHER_MEANS (issue 16): a deployment whose 1-5 CES runs "higher = more
effort" gets, from the same answers, exactly what the default gives for the reversed answers
(6 - x): in the engine (replay, backfill), in the stream's stages, in valences and follow-ups;
1-7 answers are untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline.contract import parse_event
from pipeline.core.followups import FollowupEvent
from pipeline.settings import Settings
from tests.unit.stream.simulate import SimulatedStream
from tests.unit.stream.test_stages import assert_same, engine_results, lines, summed


def rewrite_ces(data: list[bytes], change: Callable[[dict[str, Any]], None]
                ) -> tuple[list[bytes], int]:
    """The lines with `change` applied to every survey that has a CES answer on 5 or 7; how many
    answers there were."""
    out, changed = [], 0
    for line in data:
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        survey = record.get("survey") if isinstance(record, dict) else None
        if (isinstance(survey, dict) and isinstance(survey.get("ces"), int)
                and survey.get("ces_scale") in (5, 7)):
            change(survey)
            changed += 1
            line = json.dumps(record).encode()
        out.append(line)
    return out, changed


def five_point(data: list[bytes], reverse: bool) -> tuple[list[bytes], int]:
    """The lines with every CES answer on 1-5 (a 1-7 answer c becomes round((c - 1) / 1.5) + 1),
    reversed (6 - x) when `reverse`; how many answers there were."""

    def change(survey: dict[str, Any]) -> None:
        ces = survey["ces"]
        if survey["ces_scale"] == 7:
            ces = min(5, max(1, round((ces - 1) / 1.5) + 1))
        survey["ces"], survey["ces_scale"] = (6 - ces if reverse else ces), 5

    return rewrite_ces(data, change)


def test_more_effort_equals_the_default_on_reversed_answers_in_engine_and_stream() -> None:
    more = Settings.from_env({"PEAKEND_CES_5_HIGHER_MEANS": "MORE_EFFORT"}).core_config()
    default = Settings.from_env({}).core_config()
    assert default.windows.ces_5_more_effort is default.journeys.ces_5_more_effort is False
    data, changed = five_point(lines(16, events=3000), reverse=False)
    flipped, _ = five_point(lines(16, events=3000), reverse=True)
    assert changed >= 15  # surveys are sparse, as in the domain (docs/design.md)
    journeys, metrics = engine_results(data, 3, more)
    want_journeys, want_metrics = engine_results(flipped, 3, default)
    assert journeys == want_journeys
    assert summed(metrics) == summed(want_metrics)
    # the direction matters: read the default way, the same answers give other CES sums
    _, as_default = engine_results(data, 3, default)
    assert summed(as_default) != summed(metrics)
    # the stream's stages read the setting the same way (stream equals replay)
    assert_same(SimulatedStream(more, 3, 200).run(data), journeys, metrics)


def test_follow_up_signals_read_the_direction() -> None:
    line = {"event_id": "e1", "schema_version": 1, "occurred_at": "2026-11-30T10:00:00Z",
            "producer": "p", "customer_id": "c1", "type": "survey", "touchpoint": "hotline",
            "channel": "phone", "stage": "after_sales", "survey": {"ces": 5, "ces_scale": 5}}
    event = parse_event(json.dumps(line).encode())
    assert FollowupEvent.from_event(event) is not None
    easy = FollowupEvent.from_event(event)
    hard = FollowupEvent.from_event(event, ces_5_more_effort=True)
    assert easy is not None and hard is not None and (easy.ces, hard.ces) == (7.0, 1.0)
    seven = parse_event(json.dumps({**line, "survey": {"ces": 5, "ces_scale": 7}}).encode())
    a, b = FollowupEvent.from_event(seven), FollowupEvent.from_event(seven, True)
    assert a is not None and b is not None and a.ces == b.ces == 5.0


def declared_reversed(data: list[bytes]) -> tuple[list[bytes], int]:
    """The lines with every CES answer reversed (scale + 1 - x) on its own scale and declared
    `"ces_higher_means": "more_effort"`; how many answers there were."""

    def change(survey: dict[str, Any]) -> None:
        survey["ces"] = survey["ces_scale"] + 1 - survey["ces"]
        survey["ces_higher_means"] = "more_effort"

    return rewrite_ces(data, change)


def test_the_direction_an_event_declares_wins_over_the_deployment_default() -> None:
    """survey.ces_higher_means: reversed answers that say so give exactly what the original
    answers give, on 1-5 and 1-7, whatever PEAKEND_CES_5_HIGHER_MEANS says, in the engine and
    in the stream's stages."""
    more = Settings.from_env({"PEAKEND_CES_5_HIGHER_MEANS": "MORE_EFFORT"}).core_config()
    default = Settings.from_env({}).core_config()
    original, _ = five_point(lines(17, events=3000), reverse=False)
    mixed = lines(17, events=3000)  # the generator's own mix of 1-5 and 1-7 answers
    for data in (original, mixed):
        declared, changed = declared_reversed(data)
        assert changed >= 15
        journeys, metrics = engine_results(data, 3, default)
        for config in (default, more):
            got_journeys, got_metrics = engine_results(declared, 3, config)
            assert got_journeys == journeys
            assert summed(got_metrics) == summed(metrics)
        # undeclared, the same reversed answers read otherwise: the declaration is what counts
        stripped = [line.replace(b', "ces_higher_means": "more_effort"', b"")
                    for line in declared]
        assert sum(b"ces_higher_means" in line for line in stripped) == 0
        _, undeclared = engine_results(stripped, 3, default)
        assert summed(undeclared) != summed(metrics)
        assert_same(SimulatedStream(more, 3, 200).run(declared), journeys, metrics)


def test_follow_up_signals_read_the_declared_direction() -> None:
    line = {"event_id": "e1", "schema_version": 1, "occurred_at": "2026-11-30T10:00:00Z",
            "producer": "p", "customer_id": "c1", "type": "survey", "touchpoint": "hotline",
            "channel": "phone", "stage": "after_sales",
            "survey": {"ces": 5, "ces_scale": 5, "ces_higher_means": "more_effort"}}
    hard = parse_event(json.dumps(line).encode())
    for deployment_more_effort in (False, True):
        signal = FollowupEvent.from_event(hard, deployment_more_effort)
        assert signal is not None and signal.ces == 1.0
    seven = parse_event(json.dumps({**line, "survey": {
        "ces": 6, "ces_scale": 7, "ces_higher_means": "more_effort"}}).encode())
    signal = FollowupEvent.from_event(seven)
    assert signal is not None and signal.ces == 2.0
