"""Valence of a moment (docs/design.md 1): given, else from survey answers, else signals, else 0.

`journey_end` and `outcome` events without any of these are markers (valence `None`): they close
a journey or record an outcome but never become its peak or end.
"""

from __future__ import annotations

from typing import Final

from pipeline.core.event import MARKER_TYPES, CesDirection, Survey, TouchpointEvent
from pipeline.core.scoring import ScoringRules


def ces_on_7(ces: int, scale: int | None, five_more_effort: bool = False,
             declared: CesDirection | None = None) -> float:
    """CES on the 1-7 scale, higher = easier (CES 2.0). An answer on a scale that runs "higher =
    more effort" is reversed first (scale + 1 - ces); 1-5 answers then map by 1 + (x-1) * 1.5.
    Which way a scale runs is what the event declares (`declared`, survey.ces_higher_means);
    undeclared, 1-7 is CES 2.0 and 1-5 is the deployment's default (`five_more_effort`,
    PEAKEND_CES_5_HIGHER_MEANS=MORE_EFFORT: the original 5-point CES asked how much effort it
    took). A missing scale means 7.

    >>> [ces_on_7(x, 5) for x in range(1, 6)]
    [1.0, 2.5, 4.0, 5.5, 7.0]
    >>> [ces_on_7(x, 5, five_more_effort=True) for x in range(1, 6)]
    [7.0, 5.5, 4.0, 2.5, 1.0]
    >>> ces_on_7(6, 7), ces_on_7(6, 7, five_more_effort=True)
    (6.0, 6.0)
    >>> ces_on_7(6, 7, declared="more_effort"), ces_on_7(1, 5, True, declared="less_effort")
    (2.0, 1.0)
    """
    if declared is not None:
        more_effort = declared == "more_effort"
    else:
        more_effort = five_more_effort and scale == 5
    if scale == 5:
        return 1.0 + ((6 - ces if more_effort else ces) - 1) * 1.5
    return float(8 - ces if more_effort else ces)


def survey_ces_on_7(survey: Survey, five_more_effort: bool = False) -> float | None:
    """The survey's CES answer on 1-7, higher = easier (`ces_on_7`), or None without one."""
    ces = survey.ces
    if ces is None:
        return None
    return ces_on_7(ces, survey.ces_scale, five_more_effort, survey.ces_higher_means)


# Valence of each NPS answer 0..10, by its class (issue 16). (s-5)/5 made a detractor's 6 a
# positive moment (+0.2) and a 5 neutral, so a journey ending with a detractor answer was not a
# negative end. Detractors (0-6) are negative, from -1 at 0 to -0.25 at 6 in even steps (a 6
# is still a detractor, the mildest); passives (7-8) near zero (satisfied, not enthusiastic);
# promoters (9-10) clearly positive, 10 the best moment there is.
NPS_VALENCE: Final = (-1.0, -0.875, -0.75, -0.625, -0.5, -0.375, -0.25, 0.0, 0.1, 0.6, 1.0)


def survey_valence(survey: Survey, ces_5_more_effort: bool = False) -> float | None:
    """Mean of the answers' valences: NPS by class (`NPS_VALENCE`), CES (c-4)/3 on 1-7, CSAT
    (c-3)/2.

    >>> survey_valence(Survey(nps=10)), survey_valence(Survey(nps=6)), survey_valence(Survey(nps=7))
    (1.0, -0.25, 0.0)
    >>> survey_valence(Survey(nps=0, csat=5))
    0.0
    >>> all(NPS_VALENCE[s] < 0 for s in range(7)) and all(NPS_VALENCE[s] > 0.5 for s in (9, 10))
    True
    >>> survey_valence(Survey(ces=1, ces_scale=5))
    -1.0
    >>> survey_valence(Survey(comment="hi")) is None
    True
    """
    total = 0.0
    count = 0
    if survey.nps is not None:
        total += NPS_VALENCE[survey.nps]
        count += 1
    ces = survey_ces_on_7(survey, ces_5_more_effort)
    if ces is not None:
        total += (ces - 4.0) / 3.0
        count += 1
    if survey.csat is not None:
        total += (survey.csat - 3) / 2
        count += 1
    return total / count if count else None


def moment_valence(event: TouchpointEvent, rules: ScoringRules,
                   ces_5_more_effort: bool = False) -> float | None:
    """The event's valence, or `None` when it is a marker (not a moment)."""
    if event.valence is not None:
        return event.valence
    survey = event.survey
    if survey is not None:
        from_survey = survey_valence(survey, ces_5_more_effort)
        if from_survey is not None:
            return from_survey
    signals = event.signals
    if signals is not None and not signals.is_empty():
        return rules.score(signals)
    if event.type in MARKER_TYPES:
        return None
    return 0.0
