-- Analyst views. Everything reads the latest version of each key (argMax by version), so results
-- are exact after at-least-once delivery and before ReplacingMergeTree merges. Written in the SQL
-- subset that ClickHouse 18.16 and current ClickHouse both accept (no CTEs, no window functions).
-- Aggregates are aliased latest_<column> inside and renamed outside: ClickHouse refuses an alias
-- that shadows the column inside its own aggregate when the column is used again.

-- Latest state of every journey, superseded ones (merged into another journey) left out.
CREATE VIEW IF NOT EXISTS journeys_latest AS
SELECT
    journey_id,
    latest_customer_id AS customer_id,
    latest_keyed_by AS keyed_by,
    latest_status AS status,
    latest_close_reason AS close_reason,
    latest_started_at AS started_at,
    latest_started_at_ms AS started_at_ms,
    latest_ended_at AS ended_at,
    latest_ended_at_ms AS ended_at_ms,
    latest_duration_seconds AS duration_seconds,
    latest_events AS events,
    latest_moments AS moments,
    latest_peak_valence AS peak_valence,
    latest_peak_touchpoint AS peak_touchpoint,
    latest_peak_at AS peak_at,
    latest_peak_at_ms AS peak_at_ms,
    latest_peak_event_id AS peak_event_id,
    latest_best_valence AS best_valence,
    latest_best_touchpoint AS best_touchpoint,
    latest_worst_valence AS worst_valence,
    latest_worst_touchpoint AS worst_touchpoint,
    latest_end_valence AS end_valence,
    latest_end_touchpoint AS end_touchpoint,
    latest_end_channel AS end_channel,
    latest_end_stage AS end_stage,
    latest_end_at AS end_at,
    latest_end_at_ms AS end_at_ms,
    latest_end_event_id AS end_event_id,
    latest_peak_end_score AS peak_end_score,
    latest_mean_valence AS mean_valence,
    latest_outcome AS outcome,
    latest_version AS version
FROM
(
    SELECT
        journey_id,
        argMax(customer_id, version) AS latest_customer_id,
        argMax(keyed_by, version) AS latest_keyed_by,
        argMax(status, version) AS latest_status,
        argMax(close_reason, version) AS latest_close_reason,
        argMax(started_at, version) AS latest_started_at,
        argMax(started_at_ms, version) AS latest_started_at_ms,
        argMax(ended_at, version) AS latest_ended_at,
        argMax(ended_at_ms, version) AS latest_ended_at_ms,
        argMax(duration_seconds, version) AS latest_duration_seconds,
        argMax(events, version) AS latest_events,
        argMax(moments, version) AS latest_moments,
        argMax(peak_valence, version) AS latest_peak_valence,
        argMax(peak_touchpoint, version) AS latest_peak_touchpoint,
        argMax(peak_at, version) AS latest_peak_at,
        argMax(peak_at_ms, version) AS latest_peak_at_ms,
        argMax(peak_event_id, version) AS latest_peak_event_id,
        argMax(best_valence, version) AS latest_best_valence,
        argMax(best_touchpoint, version) AS latest_best_touchpoint,
        argMax(worst_valence, version) AS latest_worst_valence,
        argMax(worst_touchpoint, version) AS latest_worst_touchpoint,
        argMax(end_valence, version) AS latest_end_valence,
        argMax(end_touchpoint, version) AS latest_end_touchpoint,
        argMax(end_channel, version) AS latest_end_channel,
        argMax(end_stage, version) AS latest_end_stage,
        argMax(end_at, version) AS latest_end_at,
        argMax(end_at_ms, version) AS latest_end_at_ms,
        argMax(end_event_id, version) AS latest_end_event_id,
        argMax(peak_end_score, version) AS latest_peak_end_score,
        argMax(mean_valence, version) AS latest_mean_valence,
        argMax(outcome, version) AS latest_outcome,
        max(version) AS latest_version
    FROM journeys
    GROUP BY journey_id
)
WHERE status != 'superseded'
;

-- Latest state of each metric partial: one row per (metric, segment, bucket, source_partition).
CREATE VIEW IF NOT EXISTS metric_partials_latest AS
SELECT
    metric,
    segment_dim,
    segment_value,
    window_start,
    source_partition,
    latest_window_end AS window_end,
    latest_n AS n,
    latest_promoters AS promoters,
    latest_passives AS passives,
    latest_detractors AS detractors,
    latest_total AS total,
    latest_total_sq AS total_sq,
    latest_easy AS easy,
    latest_hard AS hard,
    latest_positives AS positives,
    latest_version AS version
FROM
(
    SELECT
        metric,
        segment_dim,
        segment_value,
        window_start,
        source_partition,
        argMax(window_end, version) AS latest_window_end,
        argMax(n, version) AS latest_n,
        argMax(promoters, version) AS latest_promoters,
        argMax(passives, version) AS latest_passives,
        argMax(detractors, version) AS latest_detractors,
        argMax(total, version) AS latest_total,
        argMax(total_sq, version) AS latest_total_sq,
        argMax(easy, version) AS latest_easy,
        argMax(hard, version) AS latest_hard,
        argMax(positives, version) AS latest_positives,
        max(version) AS latest_version
    FROM metric_buckets
    GROUP BY metric, segment_dim, segment_value, window_start, source_partition
)
;

-- NPS / CES / CSAT / negative_end per segment and hour (UTC), with 95% intervals from the summed counts: NPS adjusted Wald (Rocks 2016), CES mean normal approximation, CSAT and negative_end Wilson. value is NULL when n = 0.
CREATE VIEW IF NOT EXISTS metrics_hourly AS
SELECT
    metric,
    segment_dim,
    segment_value,
    hour,
    n,
    multiIf(
        metric = 'nps', 100 * (promoters - detractors) / nullIf(n, 0),
        metric = 'ces', total / nullIf(n, 0),
        positives / nullIf(n, 0)) AS value,
    multiIf(
        n = 0, NULL,
        metric = 'nps', greatest(-100, 100 * ((nps_p - nps_d) - 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', greatest(1, total / n - 1.96 * sqrt(ces_var / n)),
        greatest(0, (share + 1.9208 / n - 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_low,
    multiIf(
        n = 0, NULL,
        metric = 'nps', least(100, 100 * ((nps_p - nps_d) + 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', least(7, total / n + 1.96 * sqrt(ces_var / n)),
        least(1, (share + 1.9208 / n + 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_high,
    promoters,
    passives,
    detractors,
    total,
    total_sq,
    easy,
    hard,
    positives,
    if(metric = 'ces', easy / nullIf(n, 0), NULL) AS share_easy,
    if(metric = 'ces', hard / nullIf(n, 0), NULL) AS share_hard,
    partials
FROM
(
    SELECT
        metric,
        segment_dim,
        segment_value,
        hour,
        n,
        promoters,
        passives,
        detractors,
        total,
        total_sq,
        easy,
        hard,
        positives,
        partials,
        (promoters + 0.75) / (n + 3) AS nps_p,
        (detractors + 0.75) / (n + 3) AS nps_d,
        if(n < 2, 0, greatest(0, (total_sq - total * total / n) / (n - 1))) AS ces_var,
        positives / greatest(n, 1) AS share
    FROM
    (
        SELECT
            metric,
            segment_dim,
            segment_value,
            toStartOfHour(window_start) AS hour,
            toInt64(sum(n)) AS n,
            toInt64(sum(promoters)) AS promoters,
            toInt64(sum(passives)) AS passives,
            toInt64(sum(detractors)) AS detractors,
            sum(total) AS total,
            sum(total_sq) AS total_sq,
            toInt64(sum(easy)) AS easy,
            toInt64(sum(hard)) AS hard,
            toInt64(sum(positives)) AS positives,
            count() AS partials
        FROM metric_partials_latest
        GROUP BY metric, segment_dim, segment_value, hour
    )
)
;

-- The same per segment and day (UTC).
CREATE VIEW IF NOT EXISTS metrics_daily AS
SELECT
    metric,
    segment_dim,
    segment_value,
    day,
    n,
    multiIf(
        metric = 'nps', 100 * (promoters - detractors) / nullIf(n, 0),
        metric = 'ces', total / nullIf(n, 0),
        positives / nullIf(n, 0)) AS value,
    multiIf(
        n = 0, NULL,
        metric = 'nps', greatest(-100, 100 * ((nps_p - nps_d) - 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', greatest(1, total / n - 1.96 * sqrt(ces_var / n)),
        greatest(0, (share + 1.9208 / n - 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_low,
    multiIf(
        n = 0, NULL,
        metric = 'nps', least(100, 100 * ((nps_p - nps_d) + 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', least(7, total / n + 1.96 * sqrt(ces_var / n)),
        least(1, (share + 1.9208 / n + 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_high,
    promoters,
    passives,
    detractors,
    total,
    total_sq,
    easy,
    hard,
    positives,
    if(metric = 'ces', easy / nullIf(n, 0), NULL) AS share_easy,
    if(metric = 'ces', hard / nullIf(n, 0), NULL) AS share_hard,
    partials
FROM
(
    SELECT
        metric,
        segment_dim,
        segment_value,
        day,
        n,
        promoters,
        passives,
        detractors,
        total,
        total_sq,
        easy,
        hard,
        positives,
        partials,
        (promoters + 0.75) / (n + 3) AS nps_p,
        (detractors + 0.75) / (n + 3) AS nps_d,
        if(n < 2, 0, greatest(0, (total_sq - total * total / n) / (n - 1))) AS ces_var,
        positives / greatest(n, 1) AS share
    FROM
    (
        SELECT
            metric,
            segment_dim,
            segment_value,
            toStartOfDay(window_start) AS day,
            toInt64(sum(n)) AS n,
            toInt64(sum(promoters)) AS promoters,
            toInt64(sum(passives)) AS passives,
            toInt64(sum(detractors)) AS detractors,
            sum(total) AS total,
            sum(total_sq) AS total_sq,
            toInt64(sum(easy)) AS easy,
            toInt64(sum(hard)) AS hard,
            toInt64(sum(positives)) AS positives,
            count() AS partials
        FROM metric_partials_latest
        GROUP BY metric, segment_dim, segment_value, day
    )
)
;

-- Per touchpoint and day (of the journey end): how often it was the peak / the end of a journey,
-- and how often that moment was negative. Sum over days for any range.
CREATE VIEW IF NOT EXISTS touchpoint_peak_end_daily AS
SELECT
    touchpoint,
    day,
    toInt64(sum(is_peak)) AS peaks,
    toInt64(sum(is_peak * (valence < 0))) AS negative_peaks,
    toInt64(sum(is_end)) AS ends,
    toInt64(sum(is_end * (valence < 0))) AS negative_ends,
    sumIf(valence, is_peak = 1) / nullIf(sum(is_peak), 0) AS avg_peak_valence,
    sumIf(valence, is_end = 1) / nullIf(sum(is_end), 0) AS avg_end_valence
FROM
(
    SELECT peak_touchpoint AS touchpoint, toStartOfDay(ended_at) AS day, 1 AS is_peak, 0 AS is_end,
        assumeNotNull(peak_valence) AS valence
    FROM journeys_latest
    WHERE peak_valence IS NOT NULL
    UNION ALL
    SELECT end_touchpoint AS touchpoint, toStartOfDay(ended_at) AS day, 0 AS is_peak, 1 AS is_end,
        assumeNotNull(end_valence) AS valence
    FROM journeys_latest
    WHERE end_valence IS NOT NULL
)
GROUP BY touchpoint, day
;

-- Touchpoints ranked by the negative peaks and negative ends they caused, over all time.
CREATE VIEW IF NOT EXISTS touchpoint_ranking AS
SELECT
    touchpoint,
    sum_peaks AS peaks,
    sum_negative_peaks AS negative_peaks,
    sum_ends AS ends,
    sum_negative_ends AS negative_ends,
    sum_negative_peaks + sum_negative_ends AS negative_moments
FROM
(
    SELECT
        touchpoint,
        toInt64(sum(peaks)) AS sum_peaks,
        toInt64(sum(negative_peaks)) AS sum_negative_peaks,
        toInt64(sum(ends)) AS sum_ends,
        toInt64(sum(negative_ends)) AS sum_negative_ends
    FROM touchpoint_peak_end_daily
    GROUP BY touchpoint
)
ORDER BY negative_moments DESC, negative_peaks DESC, touchpoint ASC
;

-- Journeys that peaked well (peak valence >= 0.5) and ended badly (end valence < 0): the moments
-- a good experience was thrown away at the end.
CREATE VIEW IF NOT EXISTS journeys_peak_good_end_bad AS
SELECT
    journey_id,
    customer_id,
    started_at,
    ended_at,
    peak_valence,
    peak_touchpoint,
    peak_at,
    end_valence,
    end_touchpoint,
    end_channel,
    end_stage,
    end_at,
    peak_end_score,
    mean_valence,
    outcome,
    status
FROM journeys_latest
WHERE peak_valence >= 0.5 AND end_valence < 0
;

-- Latest state of every experience-drop alert.
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
    latest_version AS version
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
        max(version) AS latest_version
    FROM alerts
    GROUP BY alert_id
)
;
