"""Configuration of the core, separate from its runtime state (bytewax style).

Plain frozen objects with the documented defaults; `pipeline.settings.Settings.core_config()`
builds them from the environment, tests build them directly. Durations are integer milliseconds
because the core computes on integer epoch-ms event time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# A journey with a producer journey_id closes after this long without events, and counts in
# the negative_end bucket of its last event (JourneyConfig.journey_idle_ms, and how long
# WindowConfig.end_hold_ms holds that bucket past final for it).
JOURNEY_IDLE_MS = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class JourneyConfig:
    """Journey keying and life cycle (docs/design.md 1, "Journey moments")."""

    idle_gap_ms: int = 30 * MINUTE_MS  # splits customer-keyed sessions only
    # A journey with a producer journey_id spans days (a stay, a case, a delivery): it closes on
    # journey_end, at max_length_ms, or after this much longer idle timeout, never on idle_gap_ms.
    journey_idle_ms: int = JOURNEY_IDLE_MS
    max_length_ms: int = 30 * DAY_MS
    allowed_lateness_ms: int = DAY_MS
    end_window_ms: int = 0  # 0: end = the last moment only
    segment_attributes: tuple[str, ...] = ("region", "tier")  # for negative_end segments
    scoring_rules_path: str = ""  # empty: schemas/scoring-rules.v1.json (package data)
    # A 1-5 CES answer (ces_scale 5) where a higher answer means more effort (the original
    # 5-point CES wording) rather than less (CES 2.0, the default): PEAKEND_CES_5_HIGHER_MEANS.
    ces_5_more_effort: bool = False
    # As WindowConfig's (one setting sets both). Two copies of an event_id further apart in
    # event time than the lateness and one bucket keep the older, whatever their digests: the
    # claims' reach (pipeline/core/claims.py), which the tracker applies within a key alike.
    bucket_ms: int = MINUTE_MS


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Survey metric buckets and the rolling windows they merge into."""

    bucket_ms: int = MINUTE_MS
    segment_attributes: tuple[str, ...] = ("region", "tier")
    rolling_ms: tuple[int, ...] = (HOUR_MS, DAY_MS, 7 * DAY_MS)
    allowed_lateness_ms: int = DAY_MS
    ces_5_more_effort: bool = False  # as JourneyConfig's (one setting sets both)
    # A negative_end bucket is final a lateness past its end, like every bucket, but a journey
    # with a producer id still closes into it up to `JourneyConfig.journey_idle_ms` after its
    # last event: the bucket (its count and, in the stream, its members) is held that much
    # longer, so a late close adds to it at a higher version instead of making it anew at
    # version 1, which ClickHouse would drop (docs/streaming.md, "Exact results with
    # at-least-once delivery", point 5). One setting sets both (PEAKEND_JOURNEY_IDLE_SECONDS).
    end_hold_ms: int = JOURNEY_IDLE_MS


@dataclass(frozen=True, slots=True)
class DropConfig:
    """Experience-drop detection: window test and CUSUM (docs/design.md 1, "Experience drops")."""

    window_ms: int = HOUR_MS
    baseline_ms: int = 7 * DAY_MS
    min_n: int = 100
    min_baseline_n: int = 100
    p_value: float = 0.01
    min_nps_drop: float = 10.0
    min_ces_drop: float = 0.5
    min_csat_drop: float = 0.10
    min_negative_end_rise: float = 0.10
    hold_ms: int = 30 * MINUTE_MS
    # The window test runs at these boundaries (tumbling by default): testing a sliding window at
    # every bucket boundary scans ~60 overlapping tests an hour and multiplies false alarms.
    evaluate_every_ms: int = HOUR_MS
    # negative_end is counted when a journey closes, up to an idle gap after its last event, so its
    # buckets are evaluated this much later than the survey metrics.
    negative_end_delay_ms: int = 30 * MINUTE_MS
    # CUSUM on the hourly series against a reference level (standardised units).
    cusum_k: float = 0.75
    cusum_h: float = 0.0  # 0: derived from the budget (`thresholds`); > 0: this decision limit
    cusum_min_hour_n: int = 30
    # severity is critical when the effect is this many times the minimum and p passes the
    # critical threshold (below)
    critical_factor: float = 2.0
    # The false-alarm budget of the whole deployment (issue 16, docs/alerts.md): on data with
    # no change, at most this many false warnings (firing episodes) and false critical pages a
    # day over `budget_series` series together. The per-test thresholds are derived from it
    # (`pipeline.core.drops.thresholds`, Bonferroni over the tests of a day: a bound whatever
    # the correlation between series, and computable by each series alone, which the stream
    # needs: its series live on different workers); `p_value` stays a ceiling.
    false_warnings_per_day: float = 0.75
    false_pages_per_day: float = 0.1
    budget_series: int = 50
    cusum_share: float = 0.5  # of the budget: the CUSUM's; the window test has the rest
    # Hysteresis: a firing window_drop resolves only after this many evaluations in a row with
    # enough answers (min_n, baseline min_baseline_n) whose drop, against the baseline frozen
    # when it fired, is under `clear_fraction` x the minimum effect. Thin windows do not count.
    clear_windows: int = 4
    clear_fraction: float = 0.5


@dataclass(frozen=True, slots=True)
class ClockConfig:
    """How far event time is trusted (docs/design.md 1, "Journey moments")."""

    # An event dated further ahead than this of the time it reached us is a dead letter `future`
    # and never moves stream time: one producer with a wrong clock must not make every later
    # on-time event of its partition `late`.
    max_skew_ms: int = 5 * MINUTE_MS
    # Batch runs (replay, backfill): when their events reached us (`--now`), for every event a
    # call does not give its own arrival time; None: trust event clocks (tests, benchmarks).
    now_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CoreConfig:
    clock: ClockConfig = field(default_factory=ClockConfig)
    journeys: JourneyConfig = field(default_factory=JourneyConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    drops: DropConfig = field(default_factory=DropConfig)
