-- CES intervals that hold their coverage at small n (issue 16): the mean's 95% interval in
-- `metrics_hourly` and `metrics_daily` uses Student's t with n - 1 degrees of freedom instead of
-- 1.96 (the normal one covered 0.68-0.88 at n = 2-5). The quantile is the core's
-- (pipeline.core.stats.t95): the table for 1-30 degrees of freedom, then the Cornish-Fisher
-- expansion around the normal quantile, with the same constants
-- (tests/unit/storage/test_windows_offline.py checks they are the core's, and that views and
-- core give the same rows). Below two answers the interval is the mean, as before.
-- Everything else in the two views is as in 002. A view cannot be altered: each is dropped and
-- created again (running this again after an interruption does the same).
-- Views are dropped with DROP TABLE: ClickHouse 18.16 has no DROP VIEW.

DROP TABLE IF EXISTS metrics_hourly;

-- NPS / CES / CSAT / negative_end per segment and hour (UTC), with 95% intervals from the summed counts: NPS adjusted Wald (Rocks 2016), CES mean Student t, CSAT and negative_end Wilson. value is NULL when n = 0.
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
        metric = 'ces', greatest(1, total / n - ces_t * sqrt(ces_var / n)),
        greatest(0, (share + 1.9208 / n - 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_low,
    multiIf(
        n = 0, NULL,
        metric = 'nps', least(100, 100 * ((nps_p - nps_d) + 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', least(7, total / n + ces_t * sqrt(ces_var / n)),
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
        greatest(n - 1, 1) AS ces_df,
        toFloat64(greatest(n - 1, 1)) AS ces_v,
        if(ces_df <= 30, arrayElement([12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934, 2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166, 2.262157162798205, 2.228138851986274, 2.200985160091639, 2.1788128296672284, 2.1603686564627913, 2.144786687917804, 2.131449545559776, 2.1199052992212546, 2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864, 2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245, 2.0595385527532972, 2.0555294386428735, 2.0518305164802846, 2.0484071417952454, 2.045229642132703, 2.0422724563012378], toUInt64(ces_df)),
            1.959963984540054 + 2.372271230298562 / ces_v + 2.8224986157396112 / (ces_v * ces_v)
            + 2.555849679507722 / (ces_v * ces_v * ces_v) + 1.5895340533938225 / (ces_v * ces_v * ces_v * ces_v)) AS ces_t,
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

DROP TABLE IF EXISTS metrics_daily;

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
        metric = 'ces', greatest(1, total / n - ces_t * sqrt(ces_var / n)),
        greatest(0, (share + 1.9208 / n - 1.96 * sqrt(greatest(0, share * (1 - share) / n + 0.9604 / (n * n)))) / (1 + 3.8416 / n))) AS ci_low,
    multiIf(
        n = 0, NULL,
        metric = 'nps', least(100, 100 * ((nps_p - nps_d) + 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (n + 3))))),
        metric = 'ces', least(7, total / n + ces_t * sqrt(ces_var / n)),
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
        greatest(n - 1, 1) AS ces_df,
        toFloat64(greatest(n - 1, 1)) AS ces_v,
        if(ces_df <= 30, arrayElement([12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934, 2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166, 2.262157162798205, 2.228138851986274, 2.200985160091639, 2.1788128296672284, 2.1603686564627913, 2.144786687917804, 2.131449545559776, 2.1199052992212546, 2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864, 2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245, 2.0595385527532972, 2.0555294386428735, 2.0518305164802846, 2.0484071417952454, 2.045229642132703, 2.0422724563012378], toUInt64(ces_df)),
            1.959963984540054 + 2.372271230298562 / ces_v + 2.8224986157396112 / (ces_v * ces_v)
            + 2.555849679507722 / (ces_v * ces_v * ces_v) + 1.5895340533938225 / (ces_v * ces_v * ces_v * ces_v)) AS ces_t,
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
