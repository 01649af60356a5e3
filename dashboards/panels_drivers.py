"""The key-drivers quadrant panel as data, for the dashboard builder to place (issue 18).

A scatter (Grafana's XY chart, table format): x = the driver's share of the explained variance
of the outcome (importance), y = its performance (mean valence of its moments), one point per
driver of the latest `peakend drivers --clickhouse --write` run (view `key_drivers_latest`,
schemas/clickhouse/006_drivers.sql). The quadrant lines: x at the average share (1 / drivers,
returned as `average_share`), y at the expectation (returned per driver). Drivers right of the
line and below their expectation are `fix first`. Template variables: `driver_dim`
(touchpoint, stage, channel) and `driver_outcome` (nps, peak_end_score, outcome:NAME).
tests/integration/test_drivers_clickhouse.py runs the query on the real server as the
read-only user (and on chdb) against data the job wrote.
"""

from __future__ import annotations

from typing import Final

TITLE: Final = "Key drivers: importance vs performance (latest run)"
DESCRIPTION: Final = (
    "Each point is a touchpoint: right = explains more of the outcome (share of R^2, Shapley "
    "decomposition), down = its moments feel worse. Right of the average share and below the "
    "expectation: fix first. Points marked not significant have a bootstrap interval that "
    "holds 0. Correlation, not causation: see the analyst guide, Key drivers.")
VARIABLES: Final = {
    "driver_dim": ("touchpoint", "stage", "channel"),
    "driver_outcome": ("nps", "peak_end_score"),
}
_RUN: Final = "dim = '${driver_dim}' AND outcome = '${driver_outcome}'"
# no window functions on ClickHouse 18.16: the average share is a scalar subquery
SQL: Final = (
    "SELECT driver, share AS importance_share, performance, expectation, gap, priority, "
    "quadrant, significant, visits, journeys, "
    f"1 / (SELECT count() FROM key_drivers_latest WHERE {_RUN}) AS average_share "
    f"FROM key_drivers_latest WHERE {_RUN} ORDER BY rank")
