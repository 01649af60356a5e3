-- peakend tables: one per output record (docs/records.md) plus the raw validated events.
-- Written in the SQL subset that ClickHouse 18.16 and current ClickHouse (chdb) both accept.
-- Times: DateTime (UTC, seconds) plus an *_ms Int64 column (epoch milliseconds).
-- Upserts: ReplacingMergeTree(version) keeps the highest version per ORDER BY key after merges;
-- queries must still use argMax(..., version) (or the latest_* views) because merges are lazy.
-- `-- shard_key:` lines name the Distributed sharding key used when PEAKEND_CLICKHOUSE_CLUSTER is
-- set (rows of one key must live on one shard for argMax to be exact).

CREATE TABLE IF NOT EXISTS journeys
(
    journey_id String COMMENT 'journey key: event journey_id, or <customer_id>@<started_at> for customer-keyed journeys',
    customer_id String COMMENT 'customer (pseudonymised when PEAKEND_PSEUDONYMISE_KEY is set)',
    keyed_by String COMMENT 'journey_id or customer_gap',
    status String COMMENT 'open, closed, or superseded (merged into another journey: ignore)',
    close_reason String COMMENT 'journey_end, idle_gap, max_length, or empty while open',
    started_at DateTime COMMENT 'first event time (UTC)',
    started_at_ms Int64 COMMENT 'started_at in epoch milliseconds',
    ended_at DateTime COMMENT 'last event time (UTC)',
    ended_at_ms Int64 COMMENT 'ended_at in epoch milliseconds',
    duration_seconds Float64 COMMENT 'ended_at - started_at',
    events UInt32 COMMENT 'events applied, markers included, duplicates not counted',
    moments UInt32 COMMENT 'events that carry a valence',
    peak_valence Nullable(Float64) COMMENT 'valence of the moment with the largest |valence| (ties: negative, then earliest)',
    peak_touchpoint String COMMENT 'touchpoint of the peak',
    peak_at Nullable(DateTime) COMMENT 'time of the peak',
    peak_at_ms Nullable(Int64) COMMENT 'peak_at in epoch milliseconds',
    peak_event_id String COMMENT 'event_id of the peak',
    best_valence Nullable(Float64) COMMENT 'most positive moment',
    best_touchpoint String COMMENT 'touchpoint of the best moment',
    worst_valence Nullable(Float64) COMMENT 'most negative moment',
    worst_touchpoint String COMMENT 'touchpoint of the worst moment',
    end_valence Nullable(Float64) COMMENT 'valence of the last moment (or mean over the end window)',
    end_touchpoint String COMMENT 'touchpoint of the end',
    end_channel String COMMENT 'channel of the end',
    end_stage String COMMENT 'stage of the end',
    end_at Nullable(DateTime) COMMENT 'time of the end',
    end_at_ms Nullable(Int64) COMMENT 'end_at in epoch milliseconds',
    end_event_id String COMMENT 'event_id of the end',
    peak_end_score Nullable(Float64) COMMENT '(peak + end) / 2 in [-1, 1]',
    mean_valence Nullable(Float64) COMMENT 'mean valence of the moments',
    outcome String COMMENT 'last outcome recorded (churn, repurchase...) or empty',
    version UInt64 COMMENT 'grows with every update of the journey'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY journey_id
-- shard_key: cityHash64(journey_id)
;

CREATE TABLE IF NOT EXISTS metric_buckets
(
    metric String COMMENT 'nps, ces, csat, negative_end',
    segment_dim String COMMENT 'all, touchpoint, channel, stage, or a configured attribute key',
    segment_value String COMMENT 'value of the dimension (all for all)',
    window_start DateTime COMMENT 'bucket start (UTC, inclusive)',
    window_start_ms Int64 COMMENT 'window_start in epoch milliseconds',
    window_end DateTime COMMENT 'bucket end (UTC, exclusive)',
    window_end_ms Int64 COMMENT 'window_end in epoch milliseconds',
    source_partition Int32 COMMENT 'input partition of this partial; sum the latest version of each partial',
    n UInt64 COMMENT 'answers (closed journeys for negative_end)',
    value Nullable(Float64) COMMENT 'bucket value: NPS points, CES mean 1-7, CSAT share, negative-end share',
    ci_low Nullable(Float64) COMMENT '95% interval of the bucket alone, low',
    ci_high Nullable(Float64) COMMENT '95% interval of the bucket alone, high',
    promoters UInt64 COMMENT 'NPS answers 9-10',
    passives UInt64 COMMENT 'NPS answers 7-8',
    detractors UInt64 COMMENT 'NPS answers 0-6',
    total Float64 COMMENT 'CES sum (1-7 scale)',
    total_sq Float64 COMMENT 'CES sum of squares (1-7 scale)',
    easy UInt64 COMMENT 'CES answers >= 5',
    hard UInt64 COMMENT 'CES answers <= 3',
    positives UInt64 COMMENT 'CSAT satisfied (4-5) / negative ends',
    version UInt64 COMMENT 'grows with every update of this partial'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, segment_dim, segment_value, window_start, source_partition)
-- shard_key: cityHash64(metric, segment_dim, segment_value)
;

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String COMMENT '<rule>:<metric>:<segment_dim>=<segment_value>:<fired_at>',
    rule String COMMENT 'window_drop or cusum_drift',
    metric String COMMENT 'nps, ces, csat, negative_end',
    segment_dim String COMMENT 'segment dimension',
    segment_value String COMMENT 'segment value',
    state String COMMENT 'firing or resolved',
    severity String COMMENT 'warning or critical',
    fired_at DateTime COMMENT 'when the alert fired (event time)',
    fired_at_ms Int64 COMMENT 'fired_at in epoch milliseconds',
    resolved_at Nullable(DateTime) COMMENT 'when it resolved',
    resolved_at_ms Nullable(Int64) COMMENT 'resolved_at in epoch milliseconds',
    window_start DateTime COMMENT 'current window that fired, start',
    window_start_ms Int64 COMMENT 'window_start in epoch milliseconds',
    window_end DateTime COMMENT 'current window that fired, end',
    window_end_ms Int64 COMMENT 'window_end in epoch milliseconds',
    value Float64 COMMENT 'current value',
    baseline Float64 COMMENT 'baseline value',
    n UInt64 COMMENT 'current sample size',
    baseline_n UInt64 COMMENT 'baseline sample size',
    ci_low Float64 COMMENT '95% interval of the current value, low',
    ci_high Float64 COMMENT '95% interval of the current value, high',
    effect Float64 COMMENT 'value - baseline in the metric unit (negative is worse; negative_end: positive is worse)',
    p_value Float64 COMMENT 'two-sample test p-value (1.0 for CUSUM)',
    version UInt64 COMMENT 'grows with every state change'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fired_at)
ORDER BY alert_id
-- shard_key: cityHash64(alert_id)
;

CREATE TABLE IF NOT EXISTS dead_letters
(
    reason String COMMENT 'not_utf8, not_json, not_object, invalid, too_large, late, duplicate_key...',
    error String COMMENT 'human-readable message naming the field and the rule',
    source_topic String COMMENT 'topic (or file for replay) the record came from',
    source_partition Int32 COMMENT 'partition (0 for files)',
    source_offset Int64 COMMENT 'offset (line number for files)',
    received_at DateTime COMMENT 'when the pipeline rejected it (UTC)',
    received_at_ms Int64 COMMENT 'received_at in epoch milliseconds',
    event_id String COMMENT 'event_id when readable, else empty',
    original_b64 String COMMENT 'original bytes, base64 (may contain personal data)'
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, source_partition, source_offset)
-- shard_key: cityHash64(source_topic, source_partition, source_offset)
;

CREATE TABLE IF NOT EXISTS touchpoint_events
(
    event_id String COMMENT 'unique event id (idempotency key)',
    schema_version UInt8 COMMENT 'event schema version (1)',
    occurred_at DateTime COMMENT 'event time (UTC)',
    occurred_at_ms Int64 COMMENT 'occurred_at in epoch milliseconds',
    producer String COMMENT 'emitting service',
    customer_id String COMMENT 'customer (pseudonymised when configured)',
    journey_id Nullable(String) COMMENT 'journey id given by the producer, if any',
    type String COMMENT 'interaction, survey, journey_end, outcome',
    touchpoint String COMMENT 'touchpoint (checkout, hotline, delivery...)',
    channel String COMMENT 'web, app, phone, store, email, chat, social, other',
    stage String COMMENT 'pre_purchase, purchase, use, after_sales',
    valence Nullable(Float64) COMMENT 'valence given by the producer (-1..1), if any',
    wait_seconds Nullable(Float64) COMMENT 'signals.wait_seconds',
    handle_seconds Nullable(Float64) COMMENT 'signals.handle_seconds',
    transfers Nullable(Int32) COMMENT 'signals.transfers',
    resolved Nullable(UInt8) COMMENT 'signals.resolved (1/0)',
    error Nullable(UInt8) COMMENT 'signals.error (1/0)',
    nps Nullable(UInt8) COMMENT 'survey.nps 0-10',
    ces Nullable(UInt8) COMMENT 'survey.ces as answered (see ces_scale)',
    ces_scale Nullable(UInt8) COMMENT 'survey.ces_scale 5 or 7',
    csat Nullable(UInt8) COMMENT 'survey.csat 1-5',
    comment Nullable(String) COMMENT 'survey.comment (personal data; NULL unless PEAKEND_KEEP_COMMENTS)',
    outcome Nullable(String) COMMENT 'outcome of an outcome event (churn, repurchase...)',
    attribute_keys Array(String) COMMENT 'attribute names, sorted',
    attribute_values Array(String) COMMENT 'attribute values, parallel to attribute_keys'
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id)
-- shard_key: cityHash64(event_id)
;
