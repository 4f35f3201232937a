#!/usr/bin/env bash
# End-to-end: a full demo run on the embedded platform, then an independent reader
# (pyarrow + DuckDB, not our Rust code) checks the lake against the receipts and
# scans everything written for the input CPRs.
set -euo pipefail
bin=$1
py=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --careless mixes in a careless supplier's deliveries (no header, swapped columns,
# CPR numbers in ids, codes and file names, CSV and FHIR): rejected, never stored.
# Logs at info level, so the scan below sees everything a Lambda would log. Each
# supplier's first delivery carries 60 days of history (its initial load).
NAERDATA_LOG=info "$bin" --home "$work/home" --log-json demo --persons 1500 --days 5 --history-days 60 --careless \
  2> "$work/home-demo.log" > "$work/demo.out"
cp "$work/home-demo.log" "$work/home/demo.log"
cp "$work/demo.out" "$work/home/demo.out"
"$bin" --home "$work/home" status > "$work/home/status.out"
# The platform's own scan must find nothing outside landing (exit 3 if it does)...
"$bin" --home "$work/home" privacy scan > "$work/home/privacy-scan.out" || {
  cat "$work/home/privacy-scan.out"; exit 1; }
tail -n 1 "$work/home/privacy-scan.out"
"$py" "$(dirname "$0")/independent/check_lake.py" --home "$work/home" --input "$work/home-input"
# One SQL for two engines: every statement publish runs transpiles to Trino (Athena)
# with sqlglot, and every mart gives DataFusion's cells on DuckDB too.
"$bin" --home "$work/home" infra sql --out "$work/sql"
"$py" "$(dirname "$0")/independent/check_sql.py" "$work/sql"
# Maintenance compacts the Delta tables; a retraction takes one accepted delivery back
# out (its receipt says why). The independent reader then finds every table equal to
# the receipts again, reading through the Delta log with deltalake and polars.
"$bin" --home "$work/home" maintain > "$work/home/maintain.out"
retracted=$("$py" - "$work/home/ledger.sqlite" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(
    "SELECT delivery_id FROM deliveries WHERE state IN ('accepted', 'accepted_with_warnings') "
    "AND dataset = 'almenpraksis.diagnose' ORDER BY delivery_id LIMIT 1").fetchone()[0])
PY
)
"$bin" --home "$work/home" retract "$retracted" --reason "e2e: sent by mistake" > "$work/home/retract.out"
grep -q "retracted" "$work/home/retract.out"
# The next publication (the demo's reference date again) leaves the retracted rows out.
publish_day=$(grep -o 'marts as of [0-9-]*' "$work/home-demo.log" | head -n 1 | awk '{print $4}')
"$bin" --home "$work/home" publish --date "$publish_day" > "$work/home/republish.out"
"$py" "$(dirname "$0")/independent/check_lake.py" --home "$work/home" --input "$work/home-input"
# The operator page the demo published, opened in headless Chromium: charts and
# tables rendered, no console errors; the screenshot is kept for people to look at.
mkdir -p target
"$py" "$(dirname "$0")/independent/check_page.py" "$work/home/lake/reports/operator/index.html" \
  target/operator-page.png --expect-units
# København's own page, likewise: its deliveries and indicators, nothing of another
# municipality (not even Frederiksberg, 147, in the same health cluster).
"$py" "$(dirname "$0")/independent/check_page.py" "$work/home/lake/kommuner/101/index.html" \
  target/kommune-page.png --kommune --kommune-name "København" \
  --other-name "(147)" --other-name Aarhus --other-name Ballerup
# The demo loads a register of its GP clinics with one that never delivers (ydernummer
# 010296 for 1,500 persons): the page lists it as missing.
grep -q '<td>almenpraksis.diagnose</td><td>010296</td>' "$work/home/lake/reports/operator/index.html" ||
  { echo "FAIL: the registered clinic that never delivered is not on the operator page" >&2; exit 1; }
echo "reception: the registered clinic that never delivered is shown missing"
# The lake key rotated: every table rebuilt from landing with key version 2 (and no
# row of version 1 left), and the independent reader finds the lake as before.
"$bin" --home "$work/home" keys rotate --publish-date 2026-10-05 > "$work/rotate.out"
"$bin" --home "$work/home" keys show > "$work/keys.out"
grep -q "current version 2 fingerprint" "$work/keys.out"
"$py" "$(dirname "$0")/independent/check_lake.py" --home "$work/home" --input "$work/home-input"
"$py" - "$work/home/lake" <<'PY'
import sys, duckdb
rows = duckdb.sql(
    f"SELECT DISTINCT person_key_version FROM read_parquet('{sys.argv[1]}/curated/*/*/*/*.parquet',"
    " union_by_name = true) WHERE person_key_version IS NOT NULL").fetchall()
assert rows == [(2,)], f"key versions in the lake after rotation: {rows}"
print("rotation: every curated row has key version 2")
PY
