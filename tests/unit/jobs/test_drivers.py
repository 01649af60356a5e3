"""`peakend drivers`: the numbers against an independent reference (statsmodels OLS over every
subset, Shapley by brute force), planted importances recovered end to end through replay, the
hotline as the demo's top negative driver, and one-line errors."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm

from jobs import drivers
from jobs.planted import planted_events
from pipeline.cli import main
from pipeline.core.event import EventType, Survey, TouchpointEvent
from pipeline.settings import Settings
from tests.unit.cli_util import ROOT, cli

# Stated tolerances: the decomposition equals the brute-force reference to 1e-10 in R^2 units
# (both are exact; only floating-point rounding differs); relative weights, an approximation of
# Shapley by design (Johnson 2000), within 0.03 of it (R^2 units) on these correlated drivers.
EXACT = 1e-10
RW_VS_SHAPLEY = 0.03
NOW = "2030-01-01T00:00:00Z"


def correlated_sample(n: int = 600, p: int = 5, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(p, p)) * 0.4 + np.eye(p)
    x = rng.normal(size=(n, p)) @ mix
    x[:, -1] = np.where(rng.random(n) < 0.4, 0.0, x[:, -1])  # a touchpoint not always visited
    y = x @ np.linspace(1.0, 0.1, p) + rng.normal(scale=1.5, size=n)
    return x, y


def ols_r2(x: np.ndarray, y: np.ndarray, subset: tuple[int, ...]) -> float:
    if not subset:
        return 0.0
    return float(sm.OLS(y, sm.add_constant(x[:, list(subset)], has_constant="add")).fit()
                 .rsquared)


def brute_force_shapley(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shapley of R^2 straight from its definition, every subset fitted by statsmodels."""
    p = x.shape[1]
    r2 = {s: ols_r2(x, y, s) for k in range(p + 1) for s in combinations(range(p), k)}
    out = np.zeros(p)
    for j in range(p):
        for s, value in r2.items():
            if j in s:
                continue
            weight = math.factorial(len(s)) * math.factorial(p - len(s) - 1) / math.factorial(p)
            out[j] += weight * (r2[tuple(sorted((*s, j)))] - value)
    return out


def test_shapley_equals_statsmodels_over_all_subsets() -> None:
    x, y = correlated_sample()
    got, _, r2 = drivers.importances(x, y, "shapley")
    want = brute_force_shapley(x, y)
    assert np.allclose(got, want, rtol=0, atol=EXACT), (got, want)
    full = ols_r2(x, y, tuple(range(x.shape[1])))
    assert math.isclose(r2, full, abs_tol=EXACT) and math.isclose(got.sum(), full, abs_tol=EXACT)
    assert got.max() - got.min() > 0.1  # the drivers differ: not trivially equal


def test_relative_weights_sum_to_r2_and_approximate_shapley() -> None:
    x, y = correlated_sample(seed=11)
    weights, _, r2 = drivers.importances(x, y, "relative_weights")
    assert math.isclose(weights.sum(), ols_r2(x, y, tuple(range(x.shape[1]))), abs_tol=EXACT)
    assert np.abs(weights - brute_force_shapley(x, y)).max() < RW_VS_SHAPLEY
    assert r2 > 0.2


def johnson_relative_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Johnson's (2000) relative weights as his paper computes them, from the data: the
    standardised drivers' singular value decomposition X = P D Q', their best orthonormal
    approximation Z = P Q', the outcome regressed on Z by statsmodels (beta), Z's loadings on the
    drivers L = Z'X (= Q D Q'), and weight_j = sum_k L_jk^2 beta_k^2. The job instead takes the
    square root of the correlation matrix by an eigen decomposition: the same quantity by
    another road."""
    xs = (x - x.mean(axis=0)) / (x.std(axis=0) * math.sqrt(len(y)))  # X'X = correlations
    ys = (y - y.mean()) / (y.std() * math.sqrt(len(y)))
    p_, _, qt = np.linalg.svd(xs, full_matrices=False)
    z = p_ @ qt
    beta = sm.OLS(ys, z).fit().params
    loadings = z.T @ xs
    weights: np.ndarray = (loadings ** 2) @ (beta ** 2)
    return weights


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_relative_weights_equal_johnsons_computation(seed: int) -> None:
    x, y = correlated_sample(n=500, p=6, seed=seed)
    got, _, r2 = drivers.importances(x, y, "relative_weights")
    want = johnson_relative_weights(x, y)
    assert np.allclose(got, want, rtol=0, atol=EXACT), (got, want)
    assert math.isclose(r2, ols_r2(x, y, tuple(range(x.shape[1]))), abs_tol=EXACT)
    assert want.max() - want.min() > 0.05  # the drivers differ: not trivially equal


def test_auto_takes_relative_weights_past_the_shapley_limit() -> None:
    """Past SHAPLEY_MAX_DRIVERS the job switches to relative weights (2^p subsets would not
    finish): the numbers are then Johnson's, to the same tolerance."""
    p = drivers.SHAPLEY_MAX_DRIVERS + 2
    x, y = correlated_sample(n=800, p=p, seed=5)
    assert drivers.choose_method("auto", p) == "relative_weights"
    got, _, _ = drivers.importances(x, y, drivers.choose_method("auto", p))
    assert np.allclose(got, johnson_relative_weights(x, y), rtol=0, atol=EXACT)


def test_bootstrap_weights_equal_repeated_rows() -> None:
    """A bootstrap resample is given as counts per journey: the same as repeating the rows."""
    x, y = correlated_sample(n=200, p=4)
    counts = np.random.default_rng(3).integers(0, 3, len(y)).astype(np.float64)
    weighted, signs, r2 = drivers.importances(x, y, "shapley", counts)
    rows = np.repeat(np.arange(len(y)), counts.astype(int))
    repeated, signs2, r2b = drivers.importances(x[rows], y[rows], "shapley")
    assert np.allclose(weighted, repeated, atol=EXACT) and math.isclose(r2, r2b, abs_tol=EXACT)
    assert (signs == signs2).all()


def test_a_driver_without_variance_explains_nothing() -> None:
    x, y = correlated_sample(p=3)
    x = np.column_stack([x, np.zeros(len(y))])
    got, _, _ = drivers.importances(x, y, "shapley")
    assert got[-1] == 0.0 and got[:-1].sum() > 0


PLANTED = {"hotline": 0.9, "delivery": 0.6, "checkout": 0.35, "app": 0.15, "newsletter": 0.0}


def write_events(path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_planted_importances_come_back_in_order(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, list(planted_events(
        3000, PLANTED, bias={"delivery": -0.4, "app": 0.3}, seed=5)))
    out = tmp_path / "out"
    assert main(["replay", str(events), "--output", str(out), "--now", NOW]) == 0
    rows_file = tmp_path / "drivers.jsonl"
    result = cli(capsys, "drivers", str(events), "--journeys", str(out / "journeys.jsonl"),
                 "--output", str(rows_file), "--bootstrap", "100", "--expect-default", "0",
                 "--expect", "checkout=0.5")
    assert result.status == 0, result.err
    rows = {r["driver"]: r for r in map(json.loads, rows_file.read_text().splitlines())}
    assert set(rows) == set(PLANTED)
    by_importance = sorted(rows, key=lambda d: -rows[d]["importance"])
    assert by_importance == list(PLANTED)  # the planted ranking, |weight| descending
    assert all(rows[d]["significant"] for d in ("hotline", "delivery", "checkout", "app"))
    assert not rows["newsletter"]["significant"]
    assert rows["newsletter"]["importance_low"] <= 0 <= rows["newsletter"]["importance_high"]
    assert all(rows[d]["direction"] == 1 for d in ("hotline", "delivery", "checkout"))
    assert math.isclose(sum(r["importance"] for r in rows.values()), rows["hotline"]["r2"])
    # performance: the planted bias shows as the mean valence (uniform in [-1, 1] + bias, clipped)
    assert rows["delivery"]["performance"] < -0.25 < rows["hotline"]["performance"]
    assert rows["app"]["performance"] > 0.15
    # against a neutral expectation delivery (important, performing worst) is to fix first;
    # checkout (expected +0.5, performing about 0) comes next
    assert rows["delivery"]["rank"] == 1 and rows["delivery"]["quadrant"] == "fix first"
    assert rows["checkout"]["rank"] == 2 and rows["checkout"]["expectation"] == 0.5
    assert rows["hotline"]["quadrant"] == "keep up" and rows["hotline"]["expectation"] == 0.0
    # the regression's rows: journeys with a moment outside surveys (0.3^5 visit nothing)
    visited = {e["journey_id"] for e in map(json.loads, events.read_text().splitlines())
               if e["type"] == "interaction"}
    assert rows["hotline"]["journeys"] == len(visited) > 2950
    assert rows["hotline"]["visits"] > 1800
    assert "delivery" in result.out.splitlines()[2]  # the table's first row


DAY_MS = 86_400_000


def replay_and_drive(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                     events: list[dict[str, object]], *options: str
                     ) -> tuple[dict[str, dict[str, Any]], str, int]:
    """Replay `events`, then `peakend drivers` over the output: rows by driver (JSON objects
    of `drivers.Driver`'s fields), the table's text, the status."""
    path = tmp_path / f"{name}.jsonl"
    write_events(path, events)
    out = tmp_path / name
    assert main(["replay", str(path), "--output", str(out), "--now", NOW]) == 0
    rows_file = tmp_path / f"{name}-drivers.jsonl"
    result = cli(capsys, "drivers", str(path), "--journeys", str(out / "journeys.jsonl"),
                 "--output", str(rows_file), "--bootstrap", "60", "--expect-default", "0",
                 *options)
    if result.status != 0:
        return {}, result.err, result.status
    rows = {r["driver"]: r for r in map(json.loads, rows_file.read_text().splitlines())}
    return rows, result.out, result.status


def test_an_answer_given_after_the_journey_is_its_outcome(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Customer-keyed journeys whose NPS survey comes a day later (a journey of its own after
    the 30-minute gap): the answer counts for the journey before it, so the importances equal
    those of the same answers given within the journeys."""
    within, _, _ = replay_and_drive(tmp_path, capsys, "within", list(planted_events(
        1500, PLANTED, seed=8)))
    after_events = list(planted_events(1500, PLANTED, seed=8, journey_ids=False,
                                       answer_after_ms=DAY_MS))
    after, table_text, status = replay_and_drive(tmp_path, capsys, "after", after_events)
    assert status == 0, table_text
    journeys = (tmp_path / "after" / "journeys.jsonl").read_text().splitlines()
    assert len(journeys) == 3000  # each answer is a journey of its own in replay's output
    assert set(after) == set(within) == set(PLANTED)
    for name, row in after.items():
        # 0.3^5 of them visit no touchpoint: a survey alone is no row
        assert row["journeys"] == within[name]["journeys"] > 1480
        assert row["visits"] == within[name]["visits"]
        assert math.isclose(row["importance"], within[name]["importance"], abs_tol=1e-12)
        assert row["performance"] == within[name]["performance"]
    assert sorted(after, key=lambda d: -after[d]["importance"]) == list(PLANTED)
    rows_n = after["hotline"]["journeys"]
    assert (f"{3000 - rows_n} journeys without moments outside surveys are no rows; {rows_n} "
            "of them gave their outcome") in table_text
    # answers later than --outcome-within are not the journey's: here none is left
    _, err, status = replay_and_drive(tmp_path, capsys, "after", after_events,
                                      "--outcome-within", "23h")
    assert status == 2 and "0 journeys with outcome 'nps': too few" in err


def test_churn_as_the_outcome_within_and_after_the_journey(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--outcome outcome:churn` (1 when the journey, or an outcome event on its own within
    --outcome-within after it, names churn): the planted ranking. (Not asserted: newsletter,
    planted at 0, not significant; with this seed OLS too finds it at p = 0.03 for churn, the
    5% of samples where a null driver passes a 5% test.)"""
    within, _, status = replay_and_drive(tmp_path, capsys, "churn", list(planted_events(
        3000, PLANTED, seed=9, churn_at_or_below=3)), "--outcome", "outcome:churn")
    assert status == 0
    after, _, status = replay_and_drive(tmp_path, capsys, "churn-after", list(planted_events(
        3000, PLANTED, seed=9, churn_at_or_below=3, journey_ids=False,
        answer_after_ms=3 * DAY_MS)), "--outcome", "outcome:churn")
    assert status == 0
    for rows in (within, after):
        # the planted ranking; better moments go with less churn
        assert sorted(rows, key=lambda d: -rows[d]["importance"]) == list(PLANTED)
        assert all(rows[d]["significant"] and rows[d]["direction"] == -1
                   for d in ("hotline", "delivery", "checkout"))
        assert rows["hotline"]["outcome"] == "outcome:churn"
        assert rows["hotline"]["journeys"] == within["hotline"]["journeys"] > 2950
    for name in PLANTED:
        assert math.isclose(after[name]["importance"], within[name]["importance"], abs_tol=1e-12)


def test_by_stage_and_channel_and_peak_end_score(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Drivers by channel (the planted touchpoints sit on channels by position: hotline on web,
    delivery on app ...) and by stage; the peak-end score as the outcome."""
    events = list(planted_events(2000, PLANTED, seed=4))
    by_channel, _, status = replay_and_drive(tmp_path, capsys, "channel", events, "--by",
                                             "channel")
    assert status == 0
    assert set(by_channel) == {"web", "app", "phone", "store", "email"}
    assert sorted(by_channel, key=lambda d: -by_channel[d]["importance"])[:3] == [
        "web", "app", "phone"]  # hotline, delivery, checkout
    assert by_channel["web"]["dim"] == "channel"
    by_stage, _, status = replay_and_drive(tmp_path, capsys, "stage", events, "--by", "stage")
    # one stage: one driver, all of R^2
    assert status == 0 and list(by_stage) == ["use"]
    assert math.isclose(by_stage["use"]["share"], 1.0)
    score, _, status = replay_and_drive(tmp_path, capsys, "score", events, "--outcome",
                                        "peak_end_score")
    assert status == 0 and score["hotline"]["outcome"] == "peak_end_score"
    visited = {e["journey_id"] for e in events if e["type"] == "interaction"}
    assert score["hotline"]["journeys"] == len(visited) > 1950 and score["hotline"]["r2"] > 0.3
    assert all(score[d]["significant"] and score[d]["direction"] == 1 for d in PLANTED)


def test_events_replay_rejected_as_late_are_no_moments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Valid events that replay dead-lettered (`late`: more than a day behind stream time) are
    not in its journeys, nor in ClickHouse's touchpoint_events: drivers leaves them out too
    (the lines of dead_letters.jsonl), so the rows equal those of the file without them."""
    events = list(planted_events(1200, PLANTED, seed=6))
    late = [{**events[i * 40], "event_id": f"late-{i}", "touchpoint": "newsletter",
             "valence": -1.0, "occurred_at": "2026-08-28T00:00:00.000Z"} for i in range(30)]
    with_late, _, status = replay_and_drive(tmp_path, capsys, "late", events + late)
    assert status == 0
    letters = [json.loads(line) for line in
               (tmp_path / "late" / "dead_letters.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in letters] == ["late"] * 30
    without, _, _ = replay_and_drive(tmp_path, capsys, "clean", events)
    for name in PLANTED:
        assert with_late[name]["moments"] == without[name]["moments"]
        assert with_late[name]["importance"] == without[name]["importance"]
        assert with_late[name]["performance"] == without[name]["performance"]


def _event(event_id: str, day: float, customer: str, kind: EventType = "interaction",
           nps: int | None = None, outcome: str | None = None) -> TouchpointEvent:
    ms = int(day * DAY_MS)
    return TouchpointEvent(event_id, datetime.fromtimestamp(ms / 1000, UTC), "t", customer, kind,
                           "hotline" if kind == "interaction" else "survey", "phone", "use",
                           valence=-0.5 if kind == "interaction" else None,
                           survey=None if nps is None else Survey(nps=nps), outcome=outcome,
                           occurred_ms=ms)


def test_outcome_only_journeys_go_to_the_journey_before() -> None:
    """The rules, journey by journey: the answer at the journey wins over one after it; of the
    answers after it, the first; one past --outcome-within counts for nothing; journeys without
    moments are no rows; an outcome event on its own gives its outcome to the journey before."""
    spans = {"c@0": ("c", 0.0, 0.1), "c@1": ("c", 1.0, 1.1), "c@0.5": ("c", 0.5, 0.5),
             "c@0.6": ("c", 0.6, 0.6), "c@1.5": ("c", 1.5, 1.5), "c@2": ("c", 2.0, 2.0),
             "d@0": ("d", 0.0, 0.1), "d@9": ("d", 9.0, 9.0)}
    events = [_event("c1", 0.05, "c"), _event("c2", 1.05, "c"),
              _event("c3", 1.1, "c", "survey", nps=9),  # at c@1
              _event("c4", 0.5, "c", "survey", nps=4),  # after c@0: its answer
              _event("c5", 0.6, "c", "survey", nps=10),  # after c@0 too, but later
              _event("c6", 1.5, "c", "survey", nps=2),  # after c@1, which has its own
              _event("c7", 2.0, "c", "outcome", outcome="churn"),  # after c@1
              _event("d1", 0.05, "d"), _event("d2", 9.0, "d", "survey", nps=0)]  # 8.9 days on

    def build(outcome: str) -> tuple[drivers.FeatureBuilder, list[float]]:
        builder = drivers.FeatureBuilder(outcome=outcome)
        for jid, (customer, start, end) in spans.items():
            builder.journey(jid, "customer_gap", customer, int(start * DAY_MS),
                            int(end * DAY_MS), "closed", None,
                            "churn" if jid == "c@2" else "")
        for event in events:
            builder.event(event, {"interaction": event.valence, "survey": 0.1}.get(event.type))
        return builder, builder.build().y.tolist()

    builder, nps = build("nps")
    assert builder.unmatched == 0
    assert nps == [4.0, 9.0]  # c@0 (first answer after it), c@1 (its own); d@0: none in 7 days
    assert (builder.outcome_only, builder.followed) == (5, 1)
    builder, churn = build("outcome:churn")
    assert churn == [0.0, 1.0, 0.0] and builder.followed == 1  # c@0, c@1, d@0
    builder.follow_ms = 9 * DAY_MS
    assert builder.build().y.tolist() == [0.0, 1.0, 0.0]
    builder, _ = build("nps")
    builder.follow_ms = 9 * DAY_MS
    assert builder.build().y.tolist() == [4.0, 9.0, 0.0] and builder.followed == 2


# `make demo`'s generator arguments (pipeline/demo.py): the test reads them from there too, so a
# change of the demo shows here.
DEMO_ARGS = ["--events", "60000", "--seed", "42", "--span", "36h", "--invalid-fraction", "0.005",
             "--mix", "bank=0.45,invest=0.1,recovery=0.1,hotel=0.15,telecom=0.1,ecommerce=0.1",
             "--drop", "segment=channel:phone,at=28h,points=40"]


def test_the_demo_names_the_hotline_as_top_negative_driver(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = (ROOT / "pipeline" / "demo.py").read_text()
    for value in DEMO_ARGS[5::2]:
        assert f'"{value}"' in demo, f"make demo no longer generates with {value}"
    assert 'default=42' in demo and '"--events", str(args.events)' in demo
    events = tmp_path / "events.jsonl"
    assert main(["generate", *DEMO_ARGS, "--output", str(events), "--quiet"]) == 0
    out = tmp_path / "out"
    assert main(["replay", str(events), "--output", str(out), "--now", NOW]) == 0
    result = cli(capsys, "drivers", str(events), "--journeys", str(out / "journeys.jsonl"),
                 "--json", "--bootstrap", "50")
    assert result.status == 0, result.err
    rows = [drivers.Driver(**json.loads(line)) for line in result.out.splitlines()]
    top = drivers.top_negative(rows)
    assert top is not None and top.driver == "hotline", rows[:3]
    assert top.rank == 1 and top.quadrant == "fix first" and top.share > 0.5


@pytest.mark.parametrize(("argv", "message"), [
    (["drivers"], "give the events file and --journeys"),
    (["drivers", "e.jsonl", "--journeys", "j.jsonl", "--clickhouse"], "either EVENTS"),
    (["drivers", "missing.jsonl", "--journeys", "missing-j.jsonl"], "missing-j.jsonl"),
    (["drivers", "e.jsonl", "--journeys", "j.jsonl", "--expect", "hotline=2"], "hotline=2"),
    (["drivers", "e.jsonl", "--journeys", "j.jsonl", "--outcome", "churn"], "outcome:NAME"),
    (["drivers", "e.jsonl", "--journeys", "j.jsonl", "--outcome-within", "7x"],
     "--outcome-within: '7x' is not a duration"),
    (["drivers", "e.jsonl", "--journeys", "j.jsonl", "--outcome-within=-1d"],
     "--outcome-within: '-1d' is not a duration"),
])
def test_bad_input_is_one_line(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, *argv)
    assert result.status == 2
    assert message in result.one_line_error()


def test_too_few_journeys_is_one_line(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, list(planted_events(5, PLANTED)))
    out = tmp_path / "out"
    assert main(["replay", str(events), "--output", str(out), "--now", NOW]) == 0
    result = cli(capsys, "drivers", str(events), "--journeys", str(out / "journeys.jsonl"))
    assert result.status == 2 and "too few" in result.one_line_error()


def test_key_drivers_columns_match_the_migration() -> None:
    from pipeline.storage import migrate
    (migration,) = [m for m in migrate.load() if m.name == "006_drivers.sql"]
    body = migration.text.split("CREATE TABLE IF NOT EXISTS key_drivers", 1)[1]
    body = body[body.index("(") + 1 : body.index("\nENGINE")]
    columns = tuple(line.split()[0] for line in body.splitlines()
                    if line.strip() and line.strip() != ")")
    assert columns == drivers.DRIVER_COLUMNS


def test_files_that_are_not_replays_output_are_one_line_naming_file_and_line(
        tmp_path: Path) -> None:
    journeys = tmp_path / "journeys.jsonl"
    journeys.write_text('{"journey_id": "j1", "keyed_by": "journey_id"}\n')
    with pytest.raises(drivers.DriversError, match=(
            r"journeys.jsonl line 1: not a journey record of peakend replay \(KeyError")):
        drivers.features_from_files(str(tmp_path / "none.jsonl"), str(journeys),
                                    drivers.FeatureBuilder(), Settings.from_env({}))
    (tmp_path / "dead_letters.jsonl").write_text('{"source_offset": 3}\n{"reason": "late"}\n')
    with pytest.raises(drivers.DriversError, match=(
            r"dead_letters.jsonl line 2: not a dead letter of peakend replay \(KeyError")):
        drivers.rejected_lines(str(journeys))
    with pytest.raises(drivers.DriversError, match=r"cannot read .*missing.jsonl"):
        drivers.read_records(str(tmp_path / "missing.jsonl"), "a journey record", print)
