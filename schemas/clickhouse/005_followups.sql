-- Follow-up cases (closed loop, docs/followups.md): one row per case version from the topic
-- cx.followups; the views read the latest version of each case (argMax by version), withdrawn
-- cases left out. Written in the SQL subset ClickHouse 18.16 and current ClickHouse both accept.
-- No PARTITION BY time: a case's opened_at can move (its journey's peak moves), and versions of one
-- case in two partitions would never merge.

CREATE TABLE IF NOT EXISTS followups
(
    case_id String COMMENT 'fu-<digest of customer and source>: deterministic, redelivery upserts',
    customer_id String COMMENT 'customer (pseudonymised when PEAKEND_PSEUDONYMISE_KEY is set)',
    journey_id String COMMENT 'the journey of the trigger, empty when not known yet',
    source_id String COMMENT 'journey:<journey_id> or event:<event_id>: what opened the case',
    trigger String COMMENT 'the trigger that names the case (schemas/followup-rules.v1.json)',
    triggers String COMMENT 'every trigger the source matched, comma-separated',
    priority String COMMENT 'high, medium, low',
    opened_at DateTime COMMENT 'event time of the trigger (UTC)',
    opened_at_ms Int64 COMMENT 'opened_at in epoch milliseconds',
    due_at DateTime COMMENT 'opened_at + the trigger SLA',
    due_at_ms Int64 COMMENT 'due_at in epoch milliseconds',
    silent UInt8 COMMENT '1: no survey answer in the journey (the customer did not tell us)',
    status String COMMENT 'open, closed, withdrawn (an earlier case of the customer took its place)',
    closed_at Nullable(DateTime) COMMENT 'time of the outcome event that closed it',
    closed_at_ms Nullable(Int64) COMMENT 'closed_at in epoch milliseconds',
    result String COMMENT 'followup_result of the closing event (else its outcome)',
    peak_valence Nullable(Float64) COMMENT 'evidence: peak of the journey',
    peak_touchpoint String COMMENT 'evidence: touchpoint of the peak',
    peak_at Nullable(DateTime) COMMENT 'evidence: time of the peak',
    peak_at_ms Nullable(Int64) COMMENT 'peak_at in epoch milliseconds',
    end_valence Nullable(Float64) COMMENT 'evidence: end of the journey',
    end_touchpoint String COMMENT 'evidence: touchpoint of the end',
    end_at Nullable(DateTime) COMMENT 'evidence: time of the end',
    end_at_ms Nullable(Int64) COMMENT 'end_at in epoch milliseconds',
    peak_end_score Nullable(Float64) COMMENT 'evidence: (peak + end) / 2',
    survey_event_id String COMMENT 'evidence: the survey answer, if any',
    survey_nps Nullable(UInt8) COMMENT 'evidence: NPS answer 0-10',
    survey_ces Nullable(Float64) COMMENT 'evidence: CES answer on 1-7',
    survey_csat Nullable(UInt8) COMMENT 'evidence: CSAT answer 1-5',
    outcome String COMMENT 'outcome of the event that opened it (complaint...), else empty',
    suppressed UInt32 COMMENT 'later candidates this case held back (cooldown, still open)',
    recovery_journey_id String COMMENT 'the customer''s first journey after the case closed (not closed: after it opened)',
    recovery_peak_end_score Nullable(Float64) COMMENT 'peak-end score of that journey',
    rules_version UInt32 COMMENT 'version of the follow-up rules',
    version UInt64 COMMENT 'grows with every change of the customer''s inputs'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY case_id
-- shard_key: cityHash64(case_id)
;

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
        max(version) AS latest_version
    FROM followups
    GROUP BY case_id
)
WHERE latest_status != 'withdrawn';

-- Open cases with their age and how far past due they are (now(): the wall clock; opened_at and
-- due_at are event time, which a live stream keeps close to it). priority_rank sorts high first.
CREATE VIEW IF NOT EXISTS followups_open AS
SELECT
    case_id,
    customer_id,
    journey_id,
    trigger,
    priority,
    multiIf(priority = 'high', 1, priority = 'medium', 2, 3) AS priority_rank,
    opened_at,
    due_at,
    silent,
    peak_touchpoint,
    peak_valence,
    end_valence,
    survey_nps,
    (toInt64(now()) - toInt64(opened_at)) / 3600 AS age_hours,
    toInt64(now()) > toInt64(due_at) AS overdue
FROM followups_latest
WHERE status = 'open';

-- SLA breaches: open past due, or closed after due. breach_hours: how late (so far).
CREATE VIEW IF NOT EXISTS followups_sla_breaches AS
SELECT
    case_id,
    customer_id,
    trigger,
    priority,
    status,
    opened_at,
    due_at,
    closed_at,
    (if(status = 'open', toInt64(now()), toInt64(assumeNotNull(closed_at))) - toInt64(due_at))
        / 3600 AS breach_hours
FROM followups_latest
WHERE (status = 'open' AND toInt64(now()) > toInt64(due_at))
   OR (status = 'closed' AND toInt64(assumeNotNull(closed_at)) > toInt64(due_at));

-- Recovery by trigger: contacted (closed) cases against cases not contacted, by the customer's
-- next journey. recovered = that journey's peak-end score is not negative.
CREATE VIEW IF NOT EXISTS followups_recovery AS
SELECT
    trigger,
    status = 'closed' AS contacted,
    count() AS cases,
    countIf(recovery_journey_id != '') AS with_next_journey,
    avgIf(recovery_peak_end_score, recovery_journey_id != '') AS next_peak_end_score,
    countIf(recovery_journey_id != '' AND recovery_peak_end_score >= 0) AS recovered,
    if(with_next_journey = 0, NULL, recovered / with_next_journey) AS recovery_rate
FROM followups_latest
GROUP BY trigger, contacted;
