"""The contract's value limits (schema v1), declared once.

Both checks of an event read them from here: the row parser (`parser.py`, every stream record)
and backfill's vectorised column checks (`jobs/columns.py`, Parquet batches); so a limit changed
here changes both. The published schema (`schemas/touchpoint-event.v1.json`) states the same
limits for producers; tests/unit/contract/test_limits.py reads them from there and fails when
the two disagree, and test_parquet_limits.py feeds the values just inside and just outside every
limit below through both checks and requires the same verdict. The allowed values of `type`,
`channel`, `stage` and `ces_higher_means` are the core's (`pipeline.core.event`); every limit
fits the column that stores the value (schemas/clickhouse/001_tables.sql).
"""

from __future__ import annotations

from datetime import UTC, datetime

SCHEMA_VERSION = 1

# Strings: characters (code points, as JSON Schema's maxLength counts them).
EVENT_ID_MAX = 200
TEXT_MAX = 200  # producer, customer_id, journey_id, touchpoint
COMMENT_MAX = 2000
# Reserved in a producer's journey_id: the pipeline derives journey ids such as
# <customer_id>@<time>, which must never collide with one a producer sends (docs/contract.md).
JOURNEY_ID_RESERVED = "@"

ATTRIBUTES_MAX = 32
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_VALUE_MAX = 200
# An attribute key, whole (used with fullmatch or anchored): lower-case snake_case.
ATTRIBUTE_KEY_PATTERN = f"[a-z][a-z0-9_]{{0,{ATTRIBUTE_KEY_MAX - 1}}}"

VALENCE_MIN = -1.0
VALENCE_MAX = 1.0
# A year: longer is a unit mistake. Bounded so an integer literal of any length (Python reads
# 10**400 exactly) is rejected instead of overflowing float() in the core.
SECONDS_MAX = 31_536_000  # signals.wait_seconds, signals.handle_seconds; the minimum is 0
TRANSFERS_MAX = 2_147_483_647  # touchpoint_events.transfers is Nullable(Int32); minimum 0

NPS_MIN = 0
NPS_MAX = 10
CSAT_MIN = 1
CSAT_MAX = 5
CES_MIN = 1
# The CES answer scales: `ces` runs from CES_MIN to the event's `ces_scale`.
CES_SCALES = (5, 7)
CES_MAX = max(CES_SCALES)

OUTCOMES = ("churn", "repurchase", "complaint", "referral", "cancellation", "upgrade", "other")

# occurred_at: the UTC years the tables store and `format_ms` handles.
FIRST_YEAR = 2000
LAST_YEAR = 2099
FIRST_MS = int(datetime(FIRST_YEAR, 1, 1, tzinfo=UTC).timestamp()) * 1000
END_MS = int(datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC).timestamp()) * 1000  # first ms after
# The years above as the schema's `pattern` for occurred_at, character for character (a test
# compares them). A regex cannot count years: `_YEARS_BETWEEN` spells out the years between the
# two above, the one limit this module states twice (test_limits.py tries every year around
# them, and the first and last instants with their neighbours).
# Upper-case T and Z only; 1-9 fraction digits (Go's RFC3339Nano writes 9; datetime keeps 6, the
# rest is truncated); no leap second. The years apply after the offset: local years
# FIRST_YEAR-LAST_YEAR, and on the two edge days only offsets that keep the instant inside (a
# regex cannot subtract an offset; the exact rule would need one alternative per minute of the
# day). The calendar check (no 2026-02-30) is datetime's.
_MONTH = "(?:0[1-9]|1[0-2])"
_DAY = "(?:0[1-9]|[12][0-9]|3[01])"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_OFFSET = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_YEARS_BETWEEN = "20(?:0[1-9]|[1-8][0-9]|9[0-8])"  # FIRST_YEAR + 1 .. LAST_YEAR - 1
OCCURRED_AT_PATTERN = (
    f"^(?:(?:{_YEARS_BETWEEN}-{_MONTH}-{_DAY}"
    f"|{FIRST_YEAR}-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[2-9]|1[0-2])-{_DAY})"
    f"|{LAST_YEAR}-(?:(?:0[1-9]|1[01])-{_DAY}|12-(?:0[1-9]|[12][0-9]|30)))"
    f"T{_TIME}(?:Z|[+-]{_OFFSET})"
    f"|{FIRST_YEAR}-01-01T{_TIME}(?:Z|\\+00:00|-{_OFFSET})"
    f"|{LAST_YEAR}-12-31T{_TIME}(?:Z|-00:00|\\+{_OFFSET}))$"
)
# Only to explain a failure: the same form with any year.
OCCURRED_AT_ANY_YEAR_PATTERN = f"[0-9]{{4}}-{_MONTH}-{_DAY}T{_TIME}(?:Z|[+-]{_OFFSET})"
