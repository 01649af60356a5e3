-- Dead letters without raw personal data (issue 21, docs/privacy.md): with
-- PEAKEND_PSEUDONYMISE_KEY set, `original_b64` holds the rejected record encrypted with the
-- operators' PEAKEND_DEAD_LETTER_KEY (AES-256-GCM), or nothing when no such key is set; beside it
-- the SHA-256 of the record as received and a redacted copy (customer_id pseudonymised, comments
-- as PEAKEND_COMMENTS says, fields outside the schema blanked). Letters stored before this
-- migration, and letters written without a pseudonymisation key, are `raw`.
--
-- No TTL: ClickHouse 18.16 has no table TTL (it came in 19.6); retention is
-- `peakend purge-dead-letters`, which drops whole monthly partitions (docs/privacy.md).

-- unless_column: dead_letters.original_form
ALTER TABLE dead_letters ADD COLUMN original_form String DEFAULT 'raw' COMMENT 'what original_b64 holds: raw, encrypted (AES-GCM, PEAKEND_DEAD_LETTER_KEY) or dropped';

-- unless_column: dead_letters.original_sha256
ALTER TABLE dead_letters ADD COLUMN original_sha256 String DEFAULT '' COMMENT 'SHA-256 (hex) of the record as received, when protected';

-- unless_column: dead_letters.redacted
ALTER TABLE dead_letters ADD COLUMN redacted String DEFAULT '' COMMENT 'the record with personal data pseudonymised or removed (JSON), when protected';
