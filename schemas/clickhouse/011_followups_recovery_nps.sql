-- NPS after contact (issue 17, docs/followups.md "Closing the loop"): each case carries the
-- customer's first NPS answer after the case closed (not closed: after it opened), in any
-- journey, so recovery is measured by the peak-end score of the next journey *and* by the NPS
-- of the next answer, contacted against not contacted. The two views that show it are made
-- again (a view cannot be altered; views are dropped with DROP TABLE: ClickHouse 18.16 has no
-- DROP VIEW); everything else in them is as in 005. followups_open and followups_sla_breaches
-- read followups_latest by name and need no change. Rows written before this migration have
-- no answer (NULL) until their customer's next input re-sends the case.

-- unless_column: followups.recovery_nps
ALTER TABLE followups ADD COLUMN recovery_nps Nullable(UInt8) COMMENT 'the customer''s first NPS answer after the case closed (not closed: after it opened)';

DROP TABLE IF EXISTS followups_latest;

-- Latest state of every case, withdrawn ones left out.
CREATE VIEW IF NOT EXISTS followups_latest AS
SELECT
    case_id,
    latest_customer_id AS customer_id,
    latest_journey_id AS journey_id,
    latest_source_id AS source_id,
    latest_trigger AS trigger,
    latest_triggers AS triggers,
    latest_priority AS priority,
    latest_opened_at AS opened_at,
    latest_opened_at_ms AS opened_at_ms,
    latest_due_at AS due_at,
    latest_due_at_ms AS due_at_ms,
    latest_silent AS silent,
    latest_status AS status,
    latest_closed_at AS closed_at,
    latest_closed_at_ms AS closed_at_ms,
    latest_result AS result,
    latest_peak_valence AS peak_valence,
    latest_peak_touchpoint AS peak_touchpoint,
    latest_end_valence AS end_valence,
    latest_end_touchpoint AS end_touchpoint,
    latest_peak_end_score AS peak_end_score,
    latest_survey_nps AS survey_nps,
    latest_survey_ces AS survey_ces,
    latest_outcome AS outcome,
    latest_suppressed AS suppressed,
    latest_recovery_journey_id AS recovery_journey_id,
    latest_recovery_peak_end_score AS recovery_peak_end_score,
    latest_recovery_nps AS recovery_nps,
    latest_version AS version
FROM
(
    SELECT
        case_id,
        argMax(customer_id, version) AS latest_customer_id,
        argMax(journey_id, version) AS latest_journey_id,
        argMax(source_id, version) AS latest_source_id,
        argMax(trigger, version) AS latest_trigger,
        argMax(triggers, version) AS latest_triggers,
        argMax(priority, version) AS latest_priority,
        argMax(opened_at, version) AS latest_opened_at,
        argMax(opened_at_ms, version) AS latest_opened_at_ms,
        argMax(due_at, version) AS latest_due_at,
        argMax(due_at_ms, version) AS latest_due_at_ms,
        argMax(silent, version) AS latest_silent,
        argMax(status, version) AS latest_status,
        argMax(closed_at, version) AS latest_closed_at,
        argMax(closed_at_ms, version) AS latest_closed_at_ms,
        argMax(result, version) AS latest_result,
        argMax(peak_valence, version) AS latest_peak_valence,
        argMax(peak_touchpoint, version) AS latest_peak_touchpoint,
        argMax(end_valence, version) AS latest_end_valence,
        argMax(end_touchpoint, version) AS latest_end_touchpoint,
        argMax(peak_end_score, version) AS latest_peak_end_score,
        argMax(survey_nps, version) AS latest_survey_nps,
        argMax(survey_ces, version) AS latest_survey_ces,
        argMax(outcome, version) AS latest_outcome,
        argMax(suppressed, version) AS latest_suppressed,
        argMax(recovery_journey_id, version) AS latest_recovery_journey_id,
        argMax(recovery_peak_end_score, version) AS latest_recovery_peak_end_score,
        argMax(recovery_nps, version) AS latest_recovery_nps,
        max(version) AS latest_version
    FROM followups
    GROUP BY case_id
)
WHERE latest_status != 'withdrawn';

DROP TABLE IF EXISTS followups_recovery;

-- Recovery by trigger: contacted (closed) cases against cases not contacted, by the customer's
-- next journey (recovered = its peak-end score is not negative) and by the customer's next NPS
-- answer: next_nps = 100 x (promoters - detractors) / answers, with the adjusted-Wald 95%
-- interval (Rocks 2016, as metrics_hourly): a handful of answers says little.
CREATE VIEW IF NOT EXISTS followups_recovery AS
SELECT
    trigger,
    contacted,
    cases,
    with_next_journey,
    next_peak_end_score,
    recovered,
    recovery_rate,
    with_next_nps,
    if(with_next_nps = 0, NULL, 100 * (nps_promoters - nps_detractors) / with_next_nps) AS next_nps,
    if(with_next_nps = 0, NULL, greatest(-100, 100 * ((nps_p - nps_d) - 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (with_next_nps + 3)))))) AS next_nps_ci_low,
    if(with_next_nps = 0, NULL, least(100, 100 * ((nps_p - nps_d) + 1.96 * sqrt(greatest(0, (nps_p + nps_d - (nps_p - nps_d) * (nps_p - nps_d)) / (with_next_nps + 3)))))) AS next_nps_ci_high
FROM
(
    SELECT
        trigger,
        status = 'closed' AS contacted,
        count() AS cases,
        countIf(recovery_journey_id != '') AS with_next_journey,
        avgIf(recovery_peak_end_score, recovery_journey_id != '') AS next_peak_end_score,
        countIf(recovery_journey_id != '' AND recovery_peak_end_score >= 0) AS recovered,
        if(with_next_journey = 0, NULL, recovered / with_next_journey) AS recovery_rate,
        countIf(isNotNull(recovery_nps)) AS with_next_nps,
        countIf(isNotNull(recovery_nps) AND assumeNotNull(recovery_nps) >= 9) AS nps_promoters,
        countIf(isNotNull(recovery_nps) AND assumeNotNull(recovery_nps) <= 6) AS nps_detractors,
        (nps_promoters + 0.75) / (with_next_nps + 3) AS nps_p,
        (nps_detractors + 0.75) / (with_next_nps + 3) AS nps_d
    FROM followups_latest
    GROUP BY trigger, contacted
);
