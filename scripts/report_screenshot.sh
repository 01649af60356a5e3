#!/usr/bin/env bash
# The README's picture of the HTML report (docs/img/report.png), without servers: the demo's
# synthetic journeys (same generator settings as `make demo`, phone NPS drop included) run through
# the core by `peakend backfill` into an embedded chdb, the report from its views
# (pipeline/report_html.py), then a screenshot by headless chromium (scripts/setup-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/img/report.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PEAKEND_CLICKHOUSE_URL="" PEAKEND_CLICKHOUSE_READER_URL="" PEAKEND_CHDB_PATH="$work/chdb" \
  PEAKEND_PARTITIONS=4 \
  PEAKEND_ALERT_WINDOW_SECONDS=7200 PEAKEND_ALERT_BASELINE_SECONDS=86400
.venv/bin/peakend generate --events 60000 --seed 42 --span 36h --invalid-fraction 0.005 \
  --mix bank=0.45,invest=0.1,recovery=0.1,hotel=0.15,telecom=0.1,ecommerce=0.1 \
  --drop segment=channel:phone,at=28h,points=40 --to parquet --output "$work/events.parquet" --quiet
.venv/bin/peakend backfill --partitions 4 --workers 1 --no-checkpoint --quiet "$work/events.parquet"
.venv/bin/peakend report --output "$work/report.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$work/profile" --window-size=1280,2300 --virtual-time-budget=15000 \
  --screenshot="$PWD/$out" "file://$work/report.html"
echo "$out"
