"""Key drivers: which touchpoints matter most for a journey outcome and perform worst
(importance x gap, docs/design.md 1 "Key drivers"; docs/analyst-guide.md "Key drivers").

    peakend drivers --journeys OUT/journeys.jsonl                 # over replay's output
    peakend drivers EVENTS.jsonl --journeys OUT/journeys.jsonl   # an older replay's output
    peakend drivers --clickhouse                                  # over journeys_latest + events

Over replay's output the rows come from the Parquet files replay writes beside journeys.jsonl
(`pipeline.driver_inputs`: the events it applied, their valence, the journeys), through
`FeatureBuilder.moment` as every other reader: one pass over the events, by replay. An output
directory without them (a replay before them) is read the old way, every event line parsed and
validated again (`features_from_files`).

For every journey (replay's journeys.jsonl or the `journeys_latest` view) the features are the
mean valence of its moments at each touchpoint (or stage, channel: `--by`), 0 (neutral) where
the journey has no moment there; survey answers are not features (the outcome would explain
itself). The outcome is the journey's last NPS answer (default), its peak-end score, or 1/0 for
an outcome event (`--outcome outcome:churn`). An answer or outcome event "after the journey" (a
survey e-mailed the next day: for customer-keyed journeys a journey of its own, with no moment
outside surveys) counts for the customer's journey before it, within `--outcome-within`
(`FeatureBuilder`); journeys without moments outside surveys are no rows. Then, per driver:

- importance: its share of the outcome's variance explained (R^2) by the drivers together,
  split by the Shapley decomposition of R^2 (LMG; exact, all 2^p subsets, up to
  `SHAPLEY_MAX_DRIVERS`) or Johnson's relative weights (more drivers; `--method`), with a
  percentile bootstrap interval over journeys. The interval is of the *signed* importance (the
  sign of the driver's coefficient in the full model): a driver whose interval holds 0 is
  marked not significant (its direction is not even settled by the data).
- performance: the mean valence of its moments, over all journeys, and the share negative;
  gap = performance - expectation (`--expect hotline=0.2`; by default what the scoring rules
  give a contact that resolved the customer's issue, `resolved_expectation`: +0.5 with
  schemas/scoring-rules.v1.json, i.e. customers expect their issue handled, not "not bad").
- priority = importance share x gap: most negative first (the seed method's "matters 9,
  performs -2: -18"). Quadrant: importance above the average share (1/p) or not, gap below 0 or
  not: `fix first`, `keep up`, `watch`, `maintain`.

Correlation is not causation: the numbers say which touchpoints go with the outcome, not that
changing one changes it (docs/analyst-guide.md).

The computation (`analyse`) takes a feature matrix and is pure numpy; the readers build that
matrix from files or ClickHouse. tests/unit/jobs/test_drivers.py checks it against statsmodels
OLS over all subsets, and that planted importances come back in order.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.generate import parse_duration
from pipeline import driver_inputs
from pipeline.contract import Rejected, parse_event
from pipeline.contract.jsonl import NotJsonLines, iter_records, open_binary
from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.scoring import ScoringRules
from pipeline.core.timefmt import parse_ms
from pipeline.core.valence import moment_valence
from pipeline.outputs import OutputError, atomic_file
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings

Array = npt.NDArray[np.float64]
DIMENSIONS = ("touchpoint", "stage", "channel")
METHODS = ("auto", "shapley", "relative_weights")
NO_END_MS = 2**62  # --until not given
DEFAULT_OUTCOME_WITHIN = "7d"  # --outcome-within: an answer e-mailed days after the journey
SHAPLEY_MAX_DRIVERS = 12  # 4,096 subsets per fit; beyond, relative weights (Johnson 2000)
DEFAULT_BOOTSTRAP = 200
QUADRANTS = {(True, True): "fix first", (True, False): "keep up", (False, True): "watch",
             (False, False): "maintain"}


# A signed bootstrap bound this close to 0 is 0 (a driver no journey in the sample has comes out
# at ~1e-30 from the floating-point sums, not at exactly 0).
_ZERO = 1e-9


class DriversError(Exception):
    """A one-line reason the analysis cannot run (bad input, too few journeys)."""


# the computation


def _columns(x: Array, y: Array) -> Array:
    """Drivers and outcome as rows of one contiguous array: the bootstrap's weighted products
    then run as one BLAS call over contiguous memory (3x faster than over the columns)."""
    return np.ascontiguousarray(np.column_stack([x, y]).T)


def _moments(z: Array, weights: Array | None, scratch: Array | None = None
             ) -> tuple[Array, Array]:
    """Correlations among the drivers and with the outcome, from (weighted) sufficient
    statistics of `z` (`_columns`). A driver without variance gets correlation 0 with
    everything (it explains nothing) and 1 with itself, so every subset system stays solvable.
    `scratch`, an array like `z`, saves an allocation per bootstrap resample."""
    if weights is None:
        total = float(z.shape[1])
        sums = z.sum(axis=1)
        gram = z @ z.T
    else:
        total = float(weights.sum())
        weighted = np.multiply(z, weights, out=scratch)
        sums = z @ weights
        gram = weighted @ z.T
    mean = sums / total
    cov = gram / total - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    flat = sd <= 1e-12 * max(1.0, float(sd.max(initial=0.0)))
    safe = np.where(flat, 1.0, sd)
    corr = cov / np.outer(safe, safe)
    corr[flat, :] = 0.0
    corr[:, flat] = 0.0
    np.fill_diagonal(corr, 1.0)
    p = z.shape[0] - 1
    return corr[:p, :p], corr[:p, p]


# Singular values below this fraction of the largest are dropped: drivers that always occur
# together with the same valence (perfectly collinear) then share their effect (the
# minimum-norm solution) instead of getting huge coefficients of arbitrary sign, which made the
# bootstrap's signs, and with them the significance, flip on 1e-15 rounding differences.
_RCOND = 1e-10


def _solve(a: Array, b: Array) -> Array:
    """Minimum-norm least squares of symmetric a (or a stack of them) x = b."""
    solution: Array = np.linalg.pinv(a, rcond=_RCOND, hermitian=True) @ b
    return solution


def _r2(rxx: Array, rxy: Array, index: Sequence[int]) -> float:
    if not index:
        return 0.0
    r = rxy[list(index)]
    return float(r @ _solve(rxx[np.ix_(index, index)], r))


def subset_r2(rxx: Array, rxy: Array) -> Array:
    """R^2 of every subset of the drivers, indexed by bit mask (bit j: driver j in). Subsets of
    one size are solved together (numpy's batched pseudo-inverse)."""
    p = len(rxy)
    out = np.zeros(1 << p)
    for k in range(1, p + 1):
        combos = np.array(list(combinations(range(p), k)), dtype=np.intp)
        sub = rxx[combos[:, :, None], combos[:, None, :]]
        r = rxy[combos]
        beta = _solve(sub, r[:, :, None])[:, :, 0]
        masks = (np.left_shift(1, combos)).sum(axis=1)
        out[masks] = (r * beta).sum(axis=1)
    return out


def shapley(rxx: Array, rxy: Array) -> Array:
    """Shapley decomposition of R^2 (LMG): each driver's mean gain in R^2 over all orders in
    which the drivers can enter. Sums to the full model's R^2."""
    p = len(rxy)
    values = subset_r2(rxx, rxy)
    masks = np.arange(1 << p)
    sizes = np.array([bin(m).count("1") for m in range(1 << p)])
    weight = np.array([math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p)
                       for s in range(p)])
    out = np.zeros(p)
    for j in range(p):
        without = masks[(masks >> j) & 1 == 0]
        out[j] = float((weight[sizes[without]] * (values[without | (1 << j)]
                                                   - values[without])).sum())
    return out


def relative_weights(rxx: Array, rxy: Array) -> Array:
    """Johnson's (2000) relative weights: the drivers' R^2 through their best orthogonal
    approximation (R^(1/2) from the eigen decomposition). Sums to the full model's R^2."""
    eigenvalues, vectors = np.linalg.eigh(rxx)
    root = vectors @ np.diag(np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T
    beta = np.linalg.pinv(root, rcond=_RCOND, hermitian=True) @ rxy
    weights: Array = (root ** 2) @ (beta ** 2)
    return weights


def _direction(rxx: Array, rxy: Array) -> Array:
    """Sign of each driver's standardised coefficient in the full model (0 when it has none)."""
    signs: Array = np.sign(np.round(_solve(rxx, rxy), 12))
    return signs


def importances(x: Array, y: Array, method: str, weights: Array | None = None
                ) -> tuple[Array, Array, float]:
    """(importance per driver, direction per driver, R^2) of one (weighted) sample."""
    return _importances(_columns(x, y), method, weights)


def _importances(z: Array, method: str, weights: Array | None, scratch: Array | None = None
                 ) -> tuple[Array, Array, float]:
    rxx, rxy = _moments(z, weights, scratch)
    values = shapley(rxx, rxy) if method == "shapley" else relative_weights(rxx, rxy)
    return values, _direction(rxx, rxy), _r2(rxx, rxy, list(range(len(rxy))))


def choose_method(method: str, drivers: int) -> str:
    if method == "auto":
        return "shapley" if drivers <= SHAPLEY_MAX_DRIVERS else "relative_weights"
    if method == "shapley" and drivers > SHAPLEY_MAX_DRIVERS:
        raise DriversError(f"--method shapley: {drivers} drivers, at most "
                           f"{SHAPLEY_MAX_DRIVERS} (2^p subsets); use relative_weights")
    return method


@dataclass(frozen=True)
class Features:
    """One row per journey with an outcome: the drivers' mean valence (0 where none) and the
    outcome; per driver, its moments over all journeys (performance)."""

    dim: str
    outcome: str
    drivers: list[str]
    x: Array  # journeys x drivers
    y: Array  # journeys
    visits: Array  # journeys x drivers: 1 where the journey has a moment there
    moments: list[int]  # per driver, over all journeys
    valence_sum: list[float]
    negatives: list[int]


@dataclass(frozen=True)
class Driver:
    """One row of the result (JSON Lines field names; docs/analyst-guide.md "Key drivers")."""

    dim: str
    driver: str
    outcome: str
    method: str
    journeys: int  # journeys with the outcome (the regression's sample)
    visits: int  # of them, journeys with a moment at this driver
    moments: int  # moments at this driver, all journeys
    importance: float  # its part of R^2
    importance_low: float  # 95% bootstrap interval of the signed importance
    importance_high: float
    share: float  # importance / R^2
    direction: int  # +1: better moments go with a better outcome
    significant: bool  # the signed interval excludes 0
    performance: float | None  # mean valence of its moments
    share_negative: float | None
    expectation: float
    gap: float | None  # performance - expectation
    priority: float | None  # share x gap; most negative = fix first
    quadrant: str
    r2: float  # of the full model
    bootstrap: int
    rank: int  # by priority, 1 = fix first


def analyse(features: Features, *, method: str = "auto",
            expectations: dict[str, float] | None = None, default_expectation: float = 0.0,
            bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 1) -> list[Driver]:
    """Importance, performance, gap and priority of every driver, sorted by priority."""
    x, y = features.x, features.y
    n, p = x.shape
    if p == 0:
        raise DriversError("no drivers: the journeys have no moments outside surveys")
    if n < max(10, p + 2):
        raise DriversError(f"{n} journeys with outcome {features.outcome!r}: too few for "
                           f"{p} drivers (need at least {max(10, p + 2)})")
    if float(np.var(y)) == 0.0:
        raise DriversError(f"outcome {features.outcome!r} is the same for all {n} journeys")
    chosen = choose_method(method, p)
    z = _columns(x, y)
    values, direction, r2 = _importances(z, chosen, None)
    signed = np.zeros((bootstrap, p))
    rng = np.random.default_rng(seed)
    scratch = np.empty_like(z)
    for b in range(bootstrap):
        # resampling n journeys with replacement = multinomial counts as weights
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        got, signs, _ = _importances(z, chosen, weights, scratch)
        signed[b] = got * np.where(signs == 0, 1.0, signs)
    if bootstrap:
        low, high = np.percentile(signed, [2.5, 97.5], axis=0)
    else:
        low = high = np.full(p, math.nan)
    expectations = expectations or {}
    rows = []
    visits = features.visits.sum(axis=0)
    for j, name in enumerate(features.drivers):
        moments = features.moments[j]
        performance = features.valence_sum[j] / moments if moments else None
        expectation = expectations.get(name, default_expectation)
        gap = None if performance is None else performance - expectation
        share = float(values[j] / r2) if r2 > 0 else 0.0
        priority = None if gap is None else share * gap
        important = share >= 1.0 / p
        quadrant = QUADRANTS[(important, gap is not None and gap < 0)]
        rows.append(Driver(
            features.dim, name, features.outcome, chosen, n, int(visits[j]), moments,
            float(values[j]), float(low[j]), float(high[j]), share, int(direction[j]),
            bool(bootstrap and (low[j] > _ZERO or high[j] < -_ZERO)),
            performance, None if not moments else features.negatives[j] / moments,
            expectation, gap, priority, quadrant, r2, bootstrap, 0))
    rows.sort(key=lambda d: (math.inf if d.priority is None else d.priority, d.driver))
    return [Driver(**{**asdict(d), "rank": i + 1}) for i, d in enumerate(rows)]


def top_negative(results: Iterable[Driver]) -> Driver | None:
    """The driver to fix first: the most negative priority among significant drivers."""
    candidates = [d for d in results if d.significant and d.priority is not None
                  and d.priority < 0]
    return min(candidates, key=lambda d: d.priority or 0.0, default=None)


# building the features


@dataclass
class _Journey:
    row: int
    peak_end_score: float | None
    outcome: str
    customer: str
    started_ms: int
    ended_ms: int
    answer: tuple[int, str, int] | None = None  # (occurred_ms, event_id, nps): the last
    # outcome-only journeys after it (`FeatureBuilder.attribute_followers`): the first NPS
    # answer, and the outcomes they name
    answer_after: int | None = None
    outcomes_after: set[str] | None = None


@dataclass
class FeatureBuilder:
    """Journeys first (`journey`), then their events (`event`); `build()` the matrix.

    An event belongs to the journey with its `journey_id`; an event without one to its
    customer's customer-keyed journey whose [started_at, ended_at] holds it (the core's
    sessions never overlap). Events that match no journey are counted, not used.

    Outcome-only journeys: a journey with no moment outside surveys (an NPS survey e-mailed the
    next day, a churn marker weeks later: customer-keyed, each is a journey of its own) is no row
    of the regression (it has no drivers). Its outcome counts for the same customer's journey
    with moments that ended last before it started, if it started within `follow_ms` of that
    end: the first such NPS answer when that journey has none of its own (the answer "given at
    or after the journey"), and any outcome it names (`outcome:NAME`)."""

    dim: str = "touchpoint"
    outcome: str = "nps"
    follow_ms: int = field(default_factory=lambda: parse_duration(DEFAULT_OUTCOME_WITHIN))
    journeys: dict[str, _Journey] = field(default_factory=dict)
    by_customer: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    # one entry per moment (journey row, driver column, valence): compact typed arrays, summed
    # per cell by numpy in `build` (a dict of cells took ~1 GB for a million journeys)
    cell_rows: array[int] = field(default_factory=lambda: array("q"))
    cell_columns: array[int] = field(default_factory=lambda: array("q"))
    cell_valences: array[float] = field(default_factory=lambda: array("d"))
    drivers: dict[str, int] = field(default_factory=dict)
    moments: list[int] = field(default_factory=list)
    valence_sum: list[float] = field(default_factory=list)
    negatives: list[int] = field(default_factory=list)
    unmatched: int = 0
    # set by build(): outcome-only journeys left out of the regression, and of them those
    # whose outcome counted for the journey before
    outcome_only: int = 0
    followed: int = 0
    _followed: list[_Journey] = field(default_factory=list)  # the journeys given an outcome
    _sorted: bool = False

    def __post_init__(self) -> None:
        if self.dim not in DIMENSIONS:
            raise DriversError(f"--by {self.dim!r}: choose one of {', '.join(DIMENSIONS)}")
        if self.outcome not in ("nps", "peak_end_score") and not (
                self.outcome.startswith("outcome:") and len(self.outcome) > len("outcome:")):
            raise DriversError(f"--outcome {self.outcome!r}: choose nps, peak_end_score or "
                               "outcome:NAME (e.g. outcome:churn)")
        if self.follow_ms < 0:
            raise DriversError(f"--outcome-within {self.follow_ms} ms: not negative")

    def journey(self, journey_id: str, keyed_by: str, customer_id: str, started_ms: int,
                ended_ms: int, status: str, peak_end_score: float | None, outcome: str) -> None:
        if status == "superseded":
            return
        self.journeys[journey_id] = _Journey(len(self.journeys), peak_end_score, outcome,
                                             customer_id, started_ms, ended_ms)
        if keyed_by != "journey_id":
            self.by_customer.setdefault(customer_id, []).append(
                (started_ms, ended_ms, journey_id))
            self._sorted = False

    def _find(self, journey_id: str | None, customer_id: str, ms: int) -> _Journey | None:
        if journey_id is not None:
            return self.journeys.get(journey_id)
        spans = self.by_customer.get(customer_id)
        if not spans:
            return None
        if not self._sorted:
            for items in self.by_customer.values():
                items.sort()
            self._sorted = True
        i = bisect.bisect_right(spans, (ms, math.inf, "")) - 1
        if i >= 0 and spans[i][0] <= ms <= spans[i][1]:
            return self.journeys.get(spans[i][2])
        return None

    def event(self, event: TouchpointEvent, valence: float | None) -> None:
        """One event with its valence (`moment_valence`)."""
        survey = event.type == "survey"
        self.moment(event.journey_id, event.customer_id, event.occurred_ms, event.event_id,
                    survey, event.survey.nps if survey and event.survey is not None else None,
                    getattr(event, self.dim), valence)

    def moment(self, journey_id: str | None, customer_id: str, occurred_ms: int,
               event_id: str | None, survey: bool, nps: int | None, name: str,
               valence: float | None) -> None:
        """`event` in the columns replay writes (`pipeline.driver_inputs`): `name` is the
        event's touchpoint, stage or channel (this builder's `dim`)."""
        journey = self._find(journey_id, customer_id, occurred_ms)
        if journey is None:
            self.unmatched += 1
            return
        if survey:
            if nps is not None:
                answer = (occurred_ms, event_id or "", nps)
                if journey.answer is None or answer[:2] > journey.answer[:2]:
                    journey.answer = answer
            return
        if valence is None:  # a marker
            return
        column = self.drivers.get(name)
        if column is None:
            column = self.drivers[name] = len(self.drivers)
            self.moments.append(0)
            self.valence_sum.append(0.0)
            self.negatives.append(0)
        self.moments[column] += 1
        self.valence_sum[column] += valence
        if valence < 0:
            self.negatives[column] += 1
        self.cell_rows.append(journey.row)
        self.cell_columns.append(column)
        self.cell_valences.append(valence)

    def _outcome_of(self, journey: _Journey) -> float | None:
        if self.outcome == "nps":
            if journey.answer is not None:
                return float(journey.answer[2])
            return None if journey.answer_after is None else float(journey.answer_after)
        if self.outcome == "peak_end_score":
            return journey.peak_end_score
        name = self.outcome.removeprefix("outcome:")
        return 1.0 if journey.outcome == name or (
            journey.outcomes_after is not None and name in journey.outcomes_after) else 0.0

    def _has_outcome(self, journey: _Journey) -> bool:
        """Whether an outcome-only journey has something to pass on to the journey before."""
        if self.outcome == "nps":
            return journey.answer is not None
        return self.outcome.startswith("outcome:") and bool(journey.outcome)

    def attribute_followers(self, with_moments: npt.NDArray[np.bool_]) -> None:
        """Outcome-only journeys' outcomes to the journey before them (class docstring);
        `with_moments[row]`: the journey has a moment outside surveys."""
        for journey in self._followed:  # a build before, maybe with another window
            journey.answer_after = journey.outcomes_after = None
        self._followed.clear()
        rows = [j for j in self.journeys.values() if not with_moments[j.row]]
        self.outcome_only = len(rows)
        followers = [j for j in rows if self._has_outcome(j)]
        if not followers:
            return
        customers = {j.customer for j in followers}
        ends: dict[str, list[tuple[int, int, int]]] = {}  # customer -> (ended, started, row)
        by_row: dict[int, _Journey] = {}
        for journey in self.journeys.values():
            if with_moments[journey.row] and journey.customer in customers:
                ends.setdefault(journey.customer, []).append(
                    (journey.ended_ms, journey.started_ms, journey.row))
                by_row[journey.row] = journey
        for items in ends.values():
            items.sort()
        for follower in sorted(followers, key=lambda j: (j.started_ms, j.row)):
            items = ends.get(follower.customer, [])
            i = bisect.bisect_right(items, (follower.started_ms, math.inf, math.inf)) - 1
            if i < 0 or follower.started_ms - items[i][0] > self.follow_ms:
                continue
            before = by_row[items[i][2]]
            if self.outcome == "nps":
                if before.answer is not None or before.answer_after is not None:
                    continue  # the answer at the journey, or the first one after it, counts
                assert follower.answer is not None
                before.answer_after = follower.answer[2]
            else:
                before.outcomes_after = (before.outcomes_after or set()) | {follower.outcome}
            self._followed.append(before)
            self.followed += 1

    def build(self) -> Features:
        names = sorted(self.drivers)
        p = len(names)
        order = np.zeros(p, dtype=np.int64)  # column as added -> column sorted by name
        for i, name in enumerate(names):
            order[self.drivers[name]] = i
        all_rows = np.frombuffer(self.cell_rows, dtype=np.int64) if self.cell_rows else (
            np.zeros(0, dtype=np.int64))
        with_moments = np.bincount(all_rows, minlength=len(self.journeys)) > 0
        self.outcome_only = self.followed = 0
        self.attribute_followers(with_moments)
        at = np.full(len(self.journeys), -1, dtype=np.int64)  # journey row -> sample row
        ys: list[float] = []
        for journey in self.journeys.values():
            if not with_moments[journey.row]:
                continue
            value = self._outcome_of(journey)
            if value is not None:
                at[journey.row] = len(ys)
                ys.append(value)
        rows = at[all_rows]
        kept = rows >= 0
        cells = rows[kept] * p + order[np.frombuffer(self.cell_columns, dtype=np.int64)[kept]]
        valences = np.frombuffer(self.cell_valences, dtype=np.float64)[kept]
        size = len(ys) * p
        totals = np.bincount(cells, weights=valences, minlength=size)
        counts = np.bincount(cells, minlength=size).astype(np.float64)
        x = (np.divide(totals, counts, out=np.zeros(size), where=counts > 0)
             .reshape(len(ys), p))
        visits = (counts > 0).astype(np.float64).reshape(len(ys), p)
        back = [self.drivers[name] for name in names]
        return Features(self.dim, self.outcome, names, x, np.array(ys, dtype=np.float64),
                        visits, [self.moments[c] for c in back],
                        [self.valence_sum[c] for c in back], [self.negatives[c] for c in back])


def rejected_lines(journeys: str) -> set[int]:
    """Line numbers of the events file that replay dead-lettered, from the dead_letters.jsonl
    beside `journeys` (none if it is not there): also valid events replay did not apply (`late`,
    `future`, the second copy of a `conflict`), which the contract alone would let through."""
    path = Path(journeys).with_name("dead_letters.jsonl")
    if journeys == "-" or not path.is_file():
        return set()
    lines: set[int] = set()
    read_records(str(path), "a dead letter",
                 lambda raw: lines.add(int(json.loads(raw)["source_offset"])))
    return lines


def read_records(path: str, what: str, use: Callable[[bytes], object]) -> None:
    """`use(raw)` for every record of a JSON Lines file replay wrote; a record it cannot use, or
    a file that cannot be read, is one DriversError naming the file (and line)."""
    try:
        with open_binary(path) as handle:
            for number, raw in iter_records(handle, path):
                try:
                    use(raw)
                except (ValueError, KeyError, TypeError) as exc:
                    raise DriversError(f"{path} line {number}: not {what} of peakend replay "
                                       f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DriversError(str(exc) if isinstance(exc, NotJsonLines)
                           else f"cannot read {path}: {exc.strerror or exc}") from None


def features_from_files(events: str, journeys: str, builder: FeatureBuilder,
                        settings: Settings) -> FeatureBuilder:
    """Replay's journeys.jsonl and the events file replay read (same settings: the
    pseudonymisation key must match, else no event finds its customer's journey). The lines
    replay dead-lettered (`rejected_lines`) are left out, so the moments are those replay
    applied, as in ClickHouse's `touchpoint_events`."""
    def journey(raw: bytes) -> None:
        j = json.loads(raw)
        builder.journey(j["journey_id"], j["keyed_by"], j["customer_id"],
                        parse_ms(j["started_at"]), parse_ms(j["ended_at"]), j["status"],
                        j["peak_end_score"], j["outcome"] or "")

    read_records(journeys, "a journey record", journey)
    privacy = PersonalData.from_settings(settings)
    rules = load_scoring_rules(settings.core_config().journeys.scoring_rules_path)
    ces_5_more_effort = settings.core_config().journeys.ces_5_more_effort
    seen: set[str] = set()
    rejected = rejected_lines(journeys)
    try:
        with open_binary(events) as handle:
            for number, raw in iter_records(handle, events):
                if number in rejected:
                    continue
                try:
                    event = privacy.scrub(parse_event(raw, max_bytes=settings.max_event_bytes))
                except Rejected:
                    continue  # replay made it a dead letter
                if event.event_id in seen:
                    continue
                seen.add(event.event_id)
                builder.event(event, moment_valence(event, rules, ces_5_more_effort))
    except OSError as exc:
        raise DriversError(str(exc) if isinstance(exc, NotJsonLines)
                           else f"cannot read {events}: {exc.strerror or exc}") from None
    return builder


def replay_inputs(journeys: str) -> tuple[Path, Path] | None:
    """drivers_journeys.parquet and drivers_events.parquet beside `journeys` when replay wrote
    them in the same run (`pipeline.driver_inputs`; not a replay from before them, not stdin).
    Files beside a journeys.jsonl of another run are a DriversError."""
    if journeys == "-":
        return None
    directory = Path(journeys).parent
    paths = directory / driver_inputs.JOURNEYS_FILE, directory / driver_inputs.EVENTS_FILE
    if not all(p.is_file() for p in paths):
        return None
    try:
        metadata = pq.read_schema(paths[0]).metadata or {}
        size = Path(journeys).stat().st_size
    except (OSError, pa.ArrowException) as exc:
        raise DriversError(f"cannot read {paths[0]}: {exc}") from None
    written = metadata.get(driver_inputs.JOURNEYS_JSONL_BYTES.encode())
    if written is None or int(written) != size:
        raise DriversError(f"{paths[0]} is not from the replay that wrote {journeys} (another "
                           f"size of it: {written and int(written)} bytes, now {size}); run "
                           "peakend replay again, or remove the drivers_*.parquet files and "
                           "give the events file")
    return paths


def _read_batches(path: Path, names: Sequence[str]) -> Iterator[list[list[Any]]]:
    """Columns of a Parquet file replay wrote, a record batch at a time (memory stays that of
    the builder), as Python lists; DriversError naming the file."""
    try:
        parquet = pq.ParquetFile(path, read_dictionary=[
            n for n in names if n in driver_inputs.DICTIONARY_COLUMNS])
        for batch in parquet.iter_batches(batch_size=65_536, columns=list(names)):
            yield [_as_list(batch.column(name)) for name in names]
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()
        raise DriversError(f"cannot read {path}: {first[0] if first else type(exc).__name__}"
                           " (not a file of peakend replay?)") from None


def _as_list(column: pa.Array) -> list[Any]:
    """Python values, nulls as None. Through numpy where that is exact (~10x faster than
    `to_pylist`); a dictionary-encoded column as one Python string per distinct value, shared
    by its rows (their hashes computed once for the builder's dict look-ups)."""
    if isinstance(column, pa.DictionaryArray):
        values = np.append(column.dictionary.to_numpy(zero_copy_only=False),
                           np.array([None], dtype=object))  # the value of a null index
        indices = pc.fill_null(column.indices, len(values) - 1).to_numpy()
        shared: list[Any] = values[indices].tolist()
        return shared
    if pa.types.is_string(column.type) or column.null_count == 0:
        plain: list[Any] = column.to_numpy(zero_copy_only=False).tolist()
        return plain
    as_python: list[Any] = column.to_pylist()
    return as_python


def features_from_replay(paths: tuple[Path, Path], builder: FeatureBuilder) -> FeatureBuilder:
    """The journeys and the applied events from replay's Parquet files (`replay_inputs`) into
    `builder`: the same rows `features_from_files` makes from the events file, without reading
    and validating every event line again."""
    journeys_path, events_path = paths
    journey = builder.journey
    for columns in _read_batches(journeys_path, driver_inputs.JOURNEY_SCHEMA.names):
        for row in zip(*columns, strict=True):
            journey(*row)
    moment = builder.moment
    names = ("journey_id", "customer_id", "occurred_ms", "event_id", "survey", "nps",
             builder.dim, "valence")
    for columns in _read_batches(events_path, names):
        for row in zip(*columns, strict=True):
            moment(*row)
    return builder


JOURNEYS_SQL = (
    "SELECT journey_id, keyed_by, customer_id, started_at_ms, ended_at_ms, status, "
    "peak_end_score, outcome FROM journeys_latest "
    "WHERE ended_at_ms >= %(since_ms)s AND started_at_ms < %(until_ms)s ORDER BY journey_id")
EVENTS_SQL = (
    "SELECT event_id, occurred_at_ms, customer_id, journey_id, type, touchpoint, channel, "
    "stage, valence, wait_seconds, handle_seconds, transfers, resolved, error, nps, ces, "
    "ces_scale, ces_higher_means, csat, outcome FROM touchpoint_events FINAL "
    "WHERE occurred_at_ms >= %(since_ms)s - 3000000000 AND occurred_at_ms < %(until_ms)s "
    "ORDER BY occurred_at_ms, event_id")


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def event_of_row(row: Sequence[Any]) -> TouchpointEvent:
    """A `touchpoint_events` row (EVENTS_SQL's columns) as the core's event, for its valence."""
    (event_id, ms, customer, journey, kind, touchpoint, channel, stage, valence, wait, handle,
     transfers, resolved, error, nps, ces, scale, direction, csat, outcome) = row
    signals = Signals(wait, handle, transfers, _optional_bool(resolved), _optional_bool(error))
    survey = Survey(nps, ces, scale, csat, None, direction)
    return TouchpointEvent(
        event_id, datetime.fromtimestamp(ms / 1000, UTC), "", customer, kind, touchpoint,
        channel, stage, journey, 1, valence, None if signals.is_empty() else signals,
        survey if survey.has_score() else None, outcome, {}, int(ms))


def features_from_clickhouse(warehouse: Any, builder: FeatureBuilder, settings: Settings,
                             since_ms: int, until_ms: int) -> FeatureBuilder:
    """`journeys_latest` and `touchpoint_events` (journeys overlapping [since, until); their
    events, read from 30 days before `since` at most: the core's longest journey)."""
    params = {"since_ms": since_ms, "until_ms": until_ms}
    for row in warehouse.query(JOURNEYS_SQL, params):
        jid, keyed_by, customer, started, ended, status, score, outcome = row
        builder.journey(jid, keyed_by, customer, int(started), int(ended), status, score,
                        outcome or "")
    rules = load_scoring_rules(settings.core_config().journeys.scoring_rules_path)
    ces_5_more_effort = settings.core_config().journeys.ces_5_more_effort
    for row in warehouse.query(EVENTS_SQL, params):
        event = event_of_row(row)
        builder.event(event, moment_valence(event, rules, ces_5_more_effort))
    return builder


# output


# `key_drivers` (schemas/clickhouse/006_drivers.sql): the run, then the Driver fields in order.
RUN_COLUMNS = ("run_at", "run_at_ms", "since_ms", "until_ms")
DRIVER_COLUMNS = (*RUN_COLUMNS, *(f.name for f in fields(Driver)))


def write_results(warehouse: Any, results: Sequence[Driver], run_at_ms: int, since_ms: int,
                  until_ms: int) -> int:
    """Insert one run into `key_drivers` (sent as data, as every insert); the rows."""
    run_at = run_at_ms // 1000  # DateTime as epoch seconds, in any zone (pipeline.storage.tables)
    rows = [(run_at, run_at_ms, since_ms, until_ms,
             *(int(v) if isinstance(v, bool) else v for v in astuple(d))) for d in results]
    return int(warehouse.insert("key_drivers", DRIVER_COLUMNS, rows))


def to_json(driver: Driver) -> dict[str, Any]:
    return asdict(driver)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: Sequence[Driver]) -> str:
    """A readable table, fix-first at the top."""
    if not results:
        return "no drivers"
    first = results[0]
    head = (f"drivers by {first.dim}, outcome {first.outcome}: {first.journeys} journeys, "
            f"R^2 {first.r2:.3f}, {first.method}, {first.bootstrap} bootstrap resamples")
    columns = ("rank", "driver", "importance [95% CI]", "share", "dir", "perf", "neg",
               "expect", "gap", "priority", "quadrant", "visits")
    lines = [[str(d.rank), d.driver + ("" if d.significant else " (n.s.)"),
              f"{d.importance:.4f} [{d.importance_low:+.4f}, {d.importance_high:+.4f}]",
              f"{d.share:.0%}", f"{d.direction:+d}", _fmt(d.performance, "+.2f"),
              _fmt(d.share_negative, ".0%"), f"{d.expectation:+.2f}", _fmt(d.gap, "+.2f"),
              _fmt(d.priority, "+.3f"), d.quadrant, str(d.visits)] for d in results]
    widths = [max(len(c), *(len(r[i]) for r in lines)) for i, c in enumerate(columns)]
    out = [head, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in lines]
    out.append("(n.s.: the bootstrap interval of the signed importance holds 0; "
               "priority = share x gap, most negative = fix first; correlation, not causation)")
    return "\n".join(out)


def _write_jsonl(handle: BinaryIO, results: Iterable[Driver]) -> None:
    for d in results:
        handle.write(json.dumps(to_json(d), separators=(",", ":")).encode() + b"\n")


# command line


def parse_expectation(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or not math.isfinite(number) or not -1.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give DRIVER=VALENCE with a valence in [-1, 1], e.g. hotline=0.2")
    return name, number


def _valence(text: str) -> float:
    return parse_expectation(f"default={text}")[1]


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", nargs="?",
                        help="JSONL events replay read ('-' for stdin); needed only for a "
                             "replay without drivers_*.parquet beside journeys.jsonl (older "
                             "than them), else not read")
    parser.add_argument("--journeys", help="replay's journeys.jsonl (its drivers_events.parquet "
                                           "and drivers_journeys.parquet beside it are read)")
    parser.add_argument("--clickhouse", action="store_true",
                        help="read journeys_latest and touchpoint_events from ClickHouse "
                             "(PEAKEND_CLICKHOUSE_READER_URL, else PEAKEND_CLICKHOUSE_URL)")
    parser.add_argument("--since", help="--clickhouse: journeys ending at or after (RFC 3339)")
    parser.add_argument("--until", help="--clickhouse: journeys starting before (RFC 3339)")
    parser.add_argument("--write", action="store_true",
                        help="--clickhouse: also insert the rows into the table key_drivers "
                             "(as the writer, PEAKEND_CLICKHOUSE_URL; view key_drivers_latest)")
    add_analysis_arguments(parser)
    parser.add_argument("--output", help="also write the rows as JSON Lines to this file")
    parser.add_argument("--json", action="store_true",
                        help="print JSON Lines instead of the table")


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", choices=DIMENSIONS, default="touchpoint",
                        help="what a driver is (default touchpoint)")
    parser.add_argument("--outcome", default="nps",
                        help="nps (the NPS answer given at or after the journey, default), "
                             "peak_end_score, or outcome:NAME (1 when the journey, or an outcome "
                             "event after it, has that outcome, e.g. outcome:churn)")
    parser.add_argument("--outcome-within", type=_duration, default=DEFAULT_OUTCOME_WITHIN,
                        metavar="DURATION",
                        help="a journey with no moment outside surveys (an NPS survey or an "
                             "outcome event on its own) that starts within this time after the "
                             "customer's journey before gives that journey its outcome: the "
                             "answer given after the journey (default 7d; 0: only at)")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help=f"auto (Shapley up to {SHAPLEY_MAX_DRIVERS} drivers, else relative "
                             "weights), shapley, relative_weights")
    parser.add_argument("--expect", type=parse_expectation, action="append", default=[],
                        metavar="DRIVER=VALENCE",
                        help="expected valence of a driver's moments (repeat); gap = mean "
                             "valence - expectation")
    parser.add_argument("--expect-default", type=_valence, default=None, metavar="VALENCE",
                        help="expectation of the other drivers (default: the valence the "
                             "scoring rules give a resolved contact, +0.5 with the shipped "
                             "rules)")
    parser.add_argument("--bootstrap", type=_nonnegative, default=DEFAULT_BOOTSTRAP,
                        help=f"bootstrap resamples for the intervals (default "
                             f"{DEFAULT_BOOTSTRAP}; 0: none)")
    parser.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")


def resolved_expectation(rules: ScoringRules) -> float:
    """The default expectation: the valence of a contact that resolved the issue, no wait, no
    transfer, no error, by the scoring rules (one rule, declared in schemas/).

    >>> resolved_expectation(load_scoring_rules())
    0.5
    """
    return rules.score(Signals(resolved=True))


def run_analysis(builder: FeatureBuilder, args: argparse.Namespace, settings: Settings
                 ) -> list[Driver]:
    default = args.expect_default
    if default is None:
        default = resolved_expectation(
            load_scoring_rules(settings.core_config().journeys.scoring_rules_path))
    return analyse(builder.build(), method=args.method, expectations=dict(args.expect),
                   default_expectation=default, bootstrap=args.bootstrap, seed=args.seed)


def _time_arg(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    try:
        return parse_ms(text)
    except ValueError:
        raise DriversError(f"{name} {text!r} is not an RFC 3339 time with an offset, e.g. "
                           "2026-11-22T17:10:00Z") from None


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    started = time.perf_counter()
    try:
        builder = FeatureBuilder(args.by, args.outcome, args.outcome_within)
        if args.clickhouse:
            if args.events or args.journeys:
                raise DriversError("give either EVENTS --journeys JOURNEYS or --clickhouse")
            from pipeline.storage.warehouse import connect
            url = settings.clickhouse_url if args.write else (
                settings.clickhouse_reader_url or settings.clickhouse_url)
            since = _time_arg(args.since, "--since", 0)
            until = _time_arg(args.until, "--until", NO_END_MS)
            warehouse = connect(url, chdb_path=settings.chdb_path,
                                database=settings.clickhouse_database,
                                ca_file=settings.clickhouse_ssl_cafile)
            try:
                features_from_clickhouse(warehouse, builder, settings, since, until)
                results = run_analysis(builder, args, settings)
                if args.write:
                    written = write_results(warehouse, results, time.time_ns() // 1_000_000,
                                            since, until)
                    print(f"wrote {written} rows to key_drivers", file=sys.stderr)
            finally:
                warehouse.close()
        else:
            if args.write:
                raise DriversError("--write needs --clickhouse (files are analysed offline)")
            columnar = replay_inputs(args.journeys) if args.journeys else None
            if columnar is None and (not args.events or not args.journeys):
                raise DriversError("give the events file and --journeys OUT/journeys.jsonl "
                                   "from `peakend replay`, or --clickhouse")
            if columnar is not None:
                features_from_replay(columnar, builder)  # the events file is not read
            else:
                features_from_files(args.events, args.journeys, builder, settings)
            results = run_analysis(builder, args, settings)
    except DriversError as exc:
        print(f"peakend drivers: {exc}", file=sys.stderr)
        return 2
    if args.output:
        try:
            with atomic_file(Path(args.output), [p for p in (args.events, args.journeys) if p]
                             ) as handle:
                _write_jsonl(handle, results)
        except OutputError as exc:
            print(f"peakend drivers: {exc}", file=sys.stderr)
            return exc.status
    if args.json:
        for d in results:
            print(json.dumps(to_json(d), separators=(",", ":")))
    else:
        print(table(results))
        if builder.unmatched:
            print(f"({builder.unmatched} events matched no journey and were left out)")
        if builder.outcome_only:
            print(f"({builder.outcome_only} journeys without moments outside surveys are no "
                  f"rows; {builder.followed} of them gave their outcome to the customer's "
                  "journey before, within --outcome-within)")
        print(f"({time.perf_counter() - started:.1f} s)")
    return 0
