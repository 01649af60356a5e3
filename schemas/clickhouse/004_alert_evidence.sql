-- Evidence on every alert (issue 16): the corrected threshold the alert passed and the plain
-- sentence on-call reads become columns of `alerts` and of `alerts_latest`.
--   threshold: the one-sided p threshold the false-alarm budget gave for the alert's severity
--              (pipeline.core.drops.thresholds); its p_value is below it.
--   message:   pipeline.core.drops.describe(alert), e.g. 'NPS on channel=phone fell from 28.4
--              to -19.2 over the last 1 h (n=146, p=3e-10 < 4.2e-05, critical)'.
-- Rows stored before this migration read threshold NULL and message '' (the sink of a worker
-- not yet upgraded writes them the same way); Grafana's rules and panels show '' for them.
-- The `-- unless_column:` lines make each ALTER run only while it is still needed
-- (pipeline/storage/migrate.py); the view is dropped and created again, so a migration
-- interrupted half-way can be run again.
-- Views are dropped with DROP TABLE: ClickHouse 18.16 has no DROP VIEW.

-- unless_column: alerts.threshold
ALTER TABLE alerts ADD COLUMN threshold Nullable(Float64) COMMENT 'one-sided p threshold of the false-alarm budget for this severity, which p_value passed; NULL before migration 004';

-- unless_column: alerts.message
ALTER TABLE alerts ADD COLUMN message String DEFAULT '' COMMENT 'the plain sentence for the page (pipeline.core.drops.describe); empty before migration 004';

DROP TABLE IF EXISTS alerts_latest;

-- alerts_latest again, with the two new columns (a view cannot be altered: dropped and created).
CREATE VIEW IF NOT EXISTS alerts_latest AS
SELECT
    alert_id,
    latest_rule AS rule,
    latest_metric AS metric,
    latest_segment_dim AS segment_dim,
    latest_segment_value AS segment_value,
    latest_state AS state,
    latest_severity AS severity,
    latest_fired_at AS fired_at,
    latest_fired_at_ms AS fired_at_ms,
    latest_resolved_at AS resolved_at,
    latest_resolved_at_ms AS resolved_at_ms,
    latest_window_start AS window_start,
    latest_window_start_ms AS window_start_ms,
    latest_window_end AS window_end,
    latest_window_end_ms AS window_end_ms,
    latest_value AS value,
    latest_baseline AS baseline,
    latest_n AS n,
    latest_baseline_n AS baseline_n,
    latest_ci_low AS ci_low,
    latest_ci_high AS ci_high,
    latest_effect AS effect,
    latest_p_value AS p_value,
    latest_version AS version,
    latest_threshold AS threshold,
    latest_message AS message
FROM
(
    SELECT
        alert_id,
        argMax(rule, version) AS latest_rule,
        argMax(metric, version) AS latest_metric,
        argMax(segment_dim, version) AS latest_segment_dim,
        argMax(segment_value, version) AS latest_segment_value,
        argMax(state, version) AS latest_state,
        argMax(severity, version) AS latest_severity,
        argMax(fired_at, version) AS latest_fired_at,
        argMax(fired_at_ms, version) AS latest_fired_at_ms,
        argMax(resolved_at, version) AS latest_resolved_at,
        argMax(resolved_at_ms, version) AS latest_resolved_at_ms,
        argMax(window_start, version) AS latest_window_start,
        argMax(window_start_ms, version) AS latest_window_start_ms,
        argMax(window_end, version) AS latest_window_end,
        argMax(window_end_ms, version) AS latest_window_end_ms,
        argMax(value, version) AS latest_value,
        argMax(baseline, version) AS latest_baseline,
        argMax(n, version) AS latest_n,
        argMax(baseline_n, version) AS latest_baseline_n,
        argMax(ci_low, version) AS latest_ci_low,
        argMax(ci_high, version) AS latest_ci_high,
        argMax(effect, version) AS latest_effect,
        argMax(p_value, version) AS latest_p_value,
        max(version) AS latest_version,
        argMax(threshold, version) AS latest_threshold,
        argMax(message, version) AS latest_message
    FROM alerts
    GROUP BY alert_id
)
;
