#!/usr/bin/env bash
# The supplier kit: assembles target/supplier-kit/naerdata-supplier-kit.zip and checks it.
#
#   tests/supplier-kit.sh [--workspace-build] KIT_BIN NAERDATA_BIN PYTHON
#
# KIT_BIN is naerdata-validate built on its own (`cargo build -p naerdata-validate`:
# no DataFusion, no AWS SDK). With --workspace-build (what `make test` uses, so CI
# builds the library once) it is the workspace build's copy, which cargo built with
# the workspace's features: the size and linkage checks then read the kit's own
# dependency graph (`cargo tree -p naerdata-validate`) instead of the binary. The check:
#   - the stripped validator is under 30 MB and links neither DataFusion nor the SDK;
#   - its example files (every dataset) are accepted;
#   - on every example, on a careless supplier's files and on the KL guide's example
#     bundles, its receipt equals the platform's (`naerdata ingest`), apart from the
#     delivery id, timestamps, the ledger state, reference versions, where the
#     platform stored the problem list (quarantine) and the outcome of the volume
#     drift checks (they compare with the dataset's history, which the kit lacks).
set -euo pipefail

workspace_build=false
if [ "${1:-}" = --workspace-build ]; then
  workspace_build=true
  shift
fi

abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
kit_bin=$(abs "$1")
cli=$(abs "$2")
py=$(abs "$3")
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/supplier-kit
kit=$out/naerdata-supplier-kit
work=$out/check

rm -rf "$out"
mkdir -p "$kit/bin" "$kit/contracts" "$kit/docs" "$work"

# --- the kit ------------------------------------------------------------------
cp "$kit_bin" "$kit/bin/naerdata-validate"
strip "$kit/bin/naerdata-validate"
if $workspace_build; then
  # The kit's own build: which crates it would link, resolved for it alone.
  deps=$(cd "$root" && cargo tree -p naerdata-validate -e normal --prefix none --locked)
  for crate in datafusion aws-sdk-s3 aws-smithy-runtime; do
    if grep -q "^$crate " <<<"$deps"; then
      echo "FAIL: naerdata-validate depends on $crate" >&2
      exit 1
    fi
  done
  grep -q "^naerdata-shared " <<<"$deps" || { echo "FAIL: cargo tree shows no naerdata-shared" >&2; exit 1; }
  echo "naerdata-validate: its dependency graph has neither DataFusion nor the AWS SDK (size: make supplier-kit)"
else
  size=$(stat -c %s "$kit/bin/naerdata-validate")
  echo "naerdata-validate: $((size / 1024 / 1024)) MiB (stripped)"
  if [ "$size" -ge $((30 * 1024 * 1024)) ]; then
    echo "FAIL: naerdata-validate is $size bytes, over 30 MB" >&2
    exit 1
  fi
  # What the kit must not carry: the SQL engine and the AWS SDK.
  for crate in datafusion aws_sdk_s3 aws_smithy; do
    if strings "$kit_bin" | grep -q "/$crate[-_/]"; then
      echo "FAIL: naerdata-validate links $crate" >&2
      exit 1
    fi
  done
fi
cp "$root"/contracts/*.yaml "$kit/contracts/"
"$kit/bin/naerdata-validate" guide --lang da >"$kit/docs/indberetningsvejledning.md"
"$kit/bin/naerdata-validate" guide --lang en >"$kit/docs/reporting-guide.md"
"$kit/bin/naerdata-validate" receipt-schema >"$kit/docs/receipt.schema.json"
cmp -s "$kit/docs/receipt.schema.json" "$root/docs/receipt.schema.json" ||
  { echo "FAIL: the kit's receipt schema differs from docs/receipt.schema.json" >&2; exit 1; }
cmp -s "$kit/docs/indberetningsvejledning.md" "$root/docs/reporting-guide.md" ||
  { echo "FAIL: the kit's guide differs from docs/reporting-guide.md" >&2; exit 1; }
cp "$root/docs/kl-gateway-input.md" "$kit/docs/"
"$kit/bin/naerdata-validate" examples --out "$kit/examples" >/dev/null
cat >"$kit/LÆSMIG.txt" <<'EOF'
naerdata - leverandørpakke / supplier kit

bin/naerdata-validate   kontrollér en fil før levering / check a file before sending it:
                          bin/naerdata-validate check examples/almenpraksis/diagnose/<dag>/<fil>
                          (datasæt og dag læses af stien <kilde>/<datasæt>/<åååå-mm-dd>/<fil>,
                          ellers --dataset og --date; returkode 0 godkendt, 2 afvist)
contracts/              datasættenes kontrakter (ODCS v3) / the dataset contracts
docs/                   indberetningsvejledning (dansk), reporting guide (English),
                        receipt.schema.json (kvitteringens JSON Schema), kl-gateway-input.md
examples/               eksempelfiler for hvert datasæt (syntetiske personer) / example files

Kvitteringen er den samme, som platformen giver den samme fil, bortset fra leverance-id,
tidspunkter, tilstand i platformens register og referencedataversioner. Værktøjet bruger de
indbyggede referencedata (SOR, FSIII, SKS); platformen kan have nyere.
EOF
(cd "$out" && "$py" -m zipfile -c naerdata-supplier-kit.zip naerdata-supplier-kit)
echo "supplier kit: $out/naerdata-supplier-kit.zip"

# --- the files compared -----------------------------------------------------------
files=$work/files
mkdir -p "$files"
cp -r "$kit/examples/." "$files/"
# A careless supplier's deliveries (swapped columns, no header, CPR in ids, codes and
# file names) and the KL guide's example bundles (whose SOR code the built-in map lacks).
"$cli" generate --out "$work/careless" --persons 60 --days 2 --start 2026-11-01 --careless >/dev/null
cp -r "$work/careless/." "$files/"
ig=$files/kommune/gateway/2021-02-25
mkdir -p "$ig"
cp "$root"/shared/tests/fixtures/kl-ig/jens-hansen/*.json "$ig/"
# Hostile files of the test suite's families: empty, header only, wrong encoding, a
# CSV where a bundle is expected, a truncated gzip.
hostile=$files/almenpraksis/diagnose/2026-10-03
mkdir -p "$hostile"
: >"$hostile/empty.csv"
head -1 "$(find "$kit/examples/almenpraksis/diagnose" -name '*.csv' | head -1)" >"$hostile/header-only.csv"
printf 'record_id;cpr\n\xff\xfe\x00bad\n' >"$hostile/not-utf8.csv"
printf 'record_id;cpr;ydernummer\n1;2;3\n' | gzip | head -c 20 >"$hostile/truncated.csv.gz"
mkdir -p "$files/kommune/gateway/2026-10-03"
printf 'a;b\n1;2\n' >"$files/kommune/gateway/2026-10-03/not-fhir.ndjson"

# --- the validator's receipts --------------------------------------------------------
mkdir -p "$work/kit-receipts"
n=0
while IFS= read -r f; do
  n=$((n + 1))
  rel=${f#"$files/"}
  code=0
  "$kit/bin/naerdata-validate" check "$f" >"$work/kit-receipts/$n.json" 2>"$work/kit-receipts/$n.err" || code=$?
  if [ "$code" -ne 0 ] && [ "$code" -ne 2 ]; then
    echo "FAIL: naerdata-validate could not check $rel: $(cat "$work/kit-receipts/$n.err")" >&2
    exit 1
  fi
  printf '%s\t%s\n' "$rel" "$n" >>"$work/kit-receipts/index.tsv"
done < <(find "$files" -type f | sort)

# --- the platform's receipts ---------------------------------------------------------
home=$work/home
"$cli" --home "$home" ingest "$files" >/dev/null 2>"$work/ingest.err" || true

"$py" - "$work" "$files" "$home" <<'PY'
import json, pathlib, sys

work, files, home = map(pathlib.Path, sys.argv[1:])
# Fields that differ by nature: the kit stores nothing and registers nothing.
VOLATILE = {"delivery_id", "received_at", "processed_at", "state", "reference_versions", "quarantine", "duplicate_of"}

platform = {}
for p in (home / "receipts").rglob("*.json"):
    r = json.loads(p.read_text())
    platform.setdefault(r["object_key"], []).append(r)

def strip(r):
    r = {k: v for k, v in r.items() if k not in VOLATILE}
    # Drift compares a delivery's volume with the dataset's history, which only the
    # platform has: the volume checks' outcome (and so the pass/fail counts) is left out.
    q = r.get("quality")
    if q:
        r["quality"] = {
            "checks": q["checks"],
            "errors": q["errors"],
            "failing": [f for f in q.get("failing", []) if f.get("category") != "volume"],
        }
    return r

failures, compared, skipped, accepted_examples = [], 0, 0, 0
for line in (work / "kit-receipts" / "index.tsv").read_text().splitlines():
    rel, n = line.split("\t")
    kit = json.loads((work / "kit-receipts" / f"{n}.json").read_text())
    mine = platform.get(kit["object_key"], [])
    if len(mine) != 1:
        failures.append(f"{rel}: {len(mine)} platform receipts for {kit['object_key']}")
        continue
    # A file identical to an earlier one is stored once by the platform (a duplicate
    # with outcome ok); the kit cannot know what was sent before.
    if mine[0].get("state") == "duplicate" and mine[0]["outcome"] == "ok":
        skipped += 1
        continue
    compared += 1
    a, b = strip(kit), strip(mine[0])
    if a != b:
        diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        failures.append(f"{rel}: kit and platform differ: {json.dumps(diff, ensure_ascii=False)[:1500]}")
for example in (work.parent / "naerdata-supplier-kit" / "examples").rglob("*"):
    if example.is_file():
        rel = str(example.relative_to(work.parent / "naerdata-supplier-kit" / "examples"))
        n = next(l.split("\t")[1] for l in (work / "kit-receipts" / "index.tsv").read_text().splitlines() if l.split("\t")[0] == rel)
        r = json.loads((work / "kit-receipts" / f"{n}.json").read_text())
        if r["outcome"] == "rejected":
            failures.append(f"example {rel} is rejected: {r.get('reason')}")
        accepted_examples += 1
if failures:
    print("\n".join(failures))
    sys.exit(f"FAIL: {len(failures)} difference(s) between naerdata-validate and the platform")
print(f"supplier kit: {compared} files give the platform's receipt ({skipped} identical to an earlier file skipped); {accepted_examples} examples accepted")
PY
