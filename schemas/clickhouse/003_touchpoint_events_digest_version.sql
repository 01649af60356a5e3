-- touchpoint_events keeps the copy the core keeps (issue 14): of two copies of one event_id with
-- different content, the one with the smaller content digest (pipeline.core.event.content_digest,
-- a crc32), whatever the order they were inserted in. Until now the table was a
-- ReplacingMergeTree() on (toDate(occurred_at), event_id): it kept the copy inserted last, and
-- kept both when they fell on different days.
--
-- ClickHouse cannot change a table's engine or its ORDER BY key in place, so this migration builds
-- the new table beside the old one and swaps the two names:
--   version = 4294967296 - digest (1 .. 2^32): ReplacingMergeTree(version) keeps the highest
--   version, i.e. the smallest digest; ORDER BY event_id (the event's identity, not its time);
--   partitions stay monthly (retention drops whole months, docs/privacy.md), so two copies whose
--   occurred_at lie in different months stay two rows (a merge never crosses partitions).
-- Rows already stored are carried over with version 0: their digest is not stored and cannot be
-- computed in SQL, so any copy written after the migration replaces them (the old rule: the copy
-- inserted last wins), and among themselves the one the old table kept (FINAL) is carried.
--
-- The `-- unless_column:` / `-- if_table:` lines make each statement run only while it is still
-- needed (pipeline/storage/migrate.py), so a migration interrupted half-way can be run again.
-- Rows a not yet upgraded sink inserts into the new table without `version` get version 0, like
-- the carried-over rows. Readers see the table fill up again while the rows are copied.

-- unless_column: touchpoint_events.version
CREATE TABLE IF NOT EXISTS touchpoint_events_next
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
    attribute_values Array(String) COMMENT 'attribute values, parallel to attribute_keys',
    version UInt64 COMMENT '4294967296 - content digest (crc32): of two copies of an event_id the smaller digest wins, as in the core; 0 for rows stored before migration 003'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY event_id
-- shard_key: cityHash64(event_id)
;

-- unless_column: touchpoint_events.version
-- shard_key: cityHash64(event_id)
RENAME TABLE touchpoint_events TO touchpoint_events_before_003, touchpoint_events_next TO touchpoint_events;

-- if_table: touchpoint_events_before_003
INSERT INTO touchpoint_events (event_id, schema_version, occurred_at, occurred_at_ms, producer,
    customer_id, journey_id, type, touchpoint, channel, stage, valence, wait_seconds,
    handle_seconds, transfers, resolved, error, nps, ces, ces_scale, csat, comment, outcome,
    attribute_keys, attribute_values, version)
SELECT event_id, schema_version, occurred_at, occurred_at_ms, producer, customer_id, journey_id,
    type, touchpoint, channel, stage, valence, wait_seconds, handle_seconds, transfers, resolved,
    error, nps, ces, ces_scale, csat, comment, outcome, attribute_keys, attribute_values,
    toUInt64(0) AS version
FROM touchpoint_events_before_003 FINAL;

DROP TABLE IF EXISTS touchpoint_events_before_003;
