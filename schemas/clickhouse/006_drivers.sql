-- Key drivers (issue 18): what `peakend drivers --clickhouse --write` computed, one row per
-- driver and run (jobs/drivers.py, docs/analyst-guide.md "Key drivers"). Runs are kept (a
-- trend of importance and performance over time); `key_drivers_latest` shows the latest run of
-- each (dim, outcome). Column meanings: the JSON Lines fields of `peakend drivers`.
-- ReplacingMergeTree on (dim, outcome, run, driver): a run inserted twice is one run.
CREATE TABLE IF NOT EXISTS key_drivers
(
    run_at DateTime COMMENT 'when the job ran (UTC)',
    run_at_ms Int64 COMMENT 'run_at in epoch milliseconds; identifies the run',
    since_ms Int64 COMMENT 'journeys ending at or after this time (epoch ms) were analysed',
    until_ms Int64 COMMENT '... and starting before this time',
    dim String COMMENT 'what a driver is: touchpoint, stage or channel',
    driver String COMMENT 'the touchpoint (stage, channel)',
    outcome String COMMENT 'nps (last NPS answer of the journey), peak_end_score or outcome:NAME',
    method String COMMENT 'shapley (exact Shapley decomposition of R^2) or relative_weights',
    journeys UInt64 COMMENT 'journeys with the outcome (the regression sample)',
    visits UInt64 COMMENT 'of them, journeys with a moment at this driver',
    moments UInt64 COMMENT 'moments at this driver, all journeys (performance sample)',
    importance Float64 COMMENT 'its part of R^2 (the parts sum to r2)',
    importance_low Float64 COMMENT '95% bootstrap interval of the signed importance, low',
    importance_high Float64 COMMENT '95% bootstrap interval of the signed importance, high',
    share Float64 COMMENT 'importance / r2',
    direction Int8 COMMENT '+1: better moments here go with a better outcome, -1 the reverse',
    significant UInt8 COMMENT '1 when the signed interval excludes 0',
    performance Nullable(Float64) COMMENT 'mean valence of its moments (-1..1)',
    share_negative Nullable(Float64) COMMENT 'share of its moments with valence < 0',
    expectation Float64 COMMENT 'expected valence',
    gap Nullable(Float64) COMMENT 'performance - expectation',
    priority Nullable(Float64) COMMENT 'share x gap; most negative = fix first',
    quadrant String COMMENT 'fix first, keep up, watch, maintain',
    r2 Float64 COMMENT 'R^2 of all drivers together',
    bootstrap UInt32 COMMENT 'bootstrap resamples',
    rank UInt32 COMMENT 'by priority within the run, 1 = fix first'
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(run_at)
ORDER BY (dim, outcome, run_at_ms, driver)
-- shard_key: cityHash64(dim, outcome)
;

-- The latest run of each (dim, outcome): the quadrant (share or importance against performance)
-- and the fix-first list (ORDER BY rank).
CREATE VIEW IF NOT EXISTS key_drivers_latest AS
SELECT
    run_at,
    run_at_ms,
    since_ms,
    until_ms,
    dim,
    driver,
    outcome,
    method,
    journeys,
    visits,
    moments,
    importance,
    importance_low,
    importance_high,
    share,
    direction,
    significant,
    performance,
    share_negative,
    expectation,
    gap,
    priority,
    quadrant,
    r2,
    bootstrap,
    rank
FROM key_drivers
WHERE (dim, outcome, run_at_ms) IN
(
    SELECT dim, outcome, max(run_at_ms)
    FROM key_drivers
    GROUP BY dim, outcome
)
;
