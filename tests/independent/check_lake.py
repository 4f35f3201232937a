#!/usr/bin/env python3
"""Independent check of a naerdata run: is the lake readable, consistent and CPR-free?

Why this exists: the Rust tests can only show that the Rust code agrees with itself.
This script is a second, independent reader (pyarrow + DuckDB, no naerdata code) that
looks at what an end-to-end run left on disk and checks that

  1. the curated Parquet files are readable, and the rows per delivery match the
     receipts (accepted deliveries have exactly `rows.accepted` rows; rejected,
     duplicate and failed deliveries have none; every lake delivery has an accepted
     receipt), and the ledger agrees with the receipts;
  2. `lake/catalog.sql` works in a fresh DuckDB and its views see the same rows,
     with the Hive partition columns `year` and `month`;
  3. no CPR number from the generator's input appears anywhere outside `landing/`
     (the raw deliveries) and `keys/`: not in Parquet values, receipts, quarantine
     files, the ledger, the catalog, logs or spool leftovers;
  4. the run is not empty (an empty home must not pass).

CPR values are never printed: only file paths and hit counts.

Usage: check_lake.py --home HOME --input GENERATOR_OUTPUT_DIR
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import csv
import gzip
import io
import json
import os
import re
import sqlite3
import sys
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ACCEPTED = {"accepted", "accepted_with_warnings"}
NOT_IN_LAKE = {"rejected", "duplicate", "failed"}
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
# Candidate CPR shapes, found overlapping (a lookahead) so a CPR glued to other
# digits or hex cannot hide; every candidate is then looked up in the input set.
CANDIDATE = re.compile(r"(?=([0-9]{6}[-\s/.]?[0-9A-Za-z]{4}))")
CANDIDATE_ANY = r"[0-9]{6}[-\s/.]?[0-9A-Za-z]{4}"  # pyarrow prefilter for column values
SEPARATORS = re.compile(r"[-\s/.]")
CPR_SHAPE = re.compile(r"^[0-9]{6}[0-9A-Za-z]{4}$")
FHIR_IDENTIFIER = re.compile(r"\{[^{}]*\}")
# A synthetic CPR anywhere in an input file: day+60 (61-91), month 01-12, with or
# without one separator, not inside a longer number.
ANY_PLACE = re.compile(
    r"(?<![0-9A-Za-z])((?:6[1-9]|[78][0-9]|9[01])(?:0[1-9]|1[0-2])[0-9]{2})"
    r"[-\s/.\u2013\u2014]?([0-9][0-9A-Za-z]{2}[0-9])(?![0-9A-Za-z])")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
JSON_VALUE = re.compile(r'"value"\s*:\s*"([^"]*)"')
MAX_DETAIL = 20  # failure detail lines printed per check


class Report:
    """Prints one line per check; CPRs that slip into a message are redacted."""

    def __init__(self):
        self.passed, self.failed, self.cprs = 0, [], set()

    def redact(self, text):
        spans = [(m.start(1), m.end(1)) for m in CANDIDATE.finditer(text)
                 if SEPARATORS.sub("", m.group(1)).upper() in self.cprs]
        for start, end in reversed(spans):
            text = text[:start] + "<CPR>" + text[end:]
        return text

    def check(self, name, problems, ok_detail=""):
        """One check: passes when `problems` (a list of strings) is empty."""
        if not problems:
            self.passed += 1
            print(f"PASS  {name}" + (f": {ok_detail}" if ok_detail else ""))
            return
        self.failed.append(name)
        print(f"FAIL  {name}: {len(problems)} problem(s)")
        for p in problems[:MAX_DETAIL]:
            print(f"        - {self.redact(p)}")
        if len(problems) > MAX_DETAIL:
            print(f"        ... and {len(problems) - MAX_DETAIL} more")


def raw_bytes(path):
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def decode(data):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def norm_cpr(value):
    """10 chars, hyphen and blanks removed, upper case; None if not CPR-shaped."""
    v = SEPARATORS.sub("", str(value)).upper()
    return v if CPR_SHAPE.match(v) else None


# ---------------------------------------------------------------- input CPRs

def input_cprs(input_dir):
    csv.field_size_limit(1 << 30)
    cprs, kinds = set(), Counter()

    def add(value):
        n = norm_cpr(value)
        if n:
            cprs.add(n)

    def walk_json(node):
        if isinstance(node, dict):
            if node.get("system") == CPR_SYSTEM and isinstance(node.get("value"), str):
                add(node["value"])
            for v in node.values():
                walk_json(v)
        elif isinstance(node, list):
            for v in node:
                walk_json(v)

    for path in sorted(p for p in Path(input_dir).rglob("*") if p.is_file()):
        text = decode(raw_bytes(path))
        # Wherever a careless supplier put them: any column, any JSON string, the
        # file name. The generator's numbers are day+60, which keeps this exact.
        for m in ANY_PLACE.finditer(UUID.sub(" ", path.name + "\n" + text)):
            add(m.group(1) + m.group(2))
            kinds["anywhere"] += 1
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        if suffixes and suffixes[-1] in (".ndjson", ".json", ".jsonl"):
            kinds["json"] += 1
            for line in text.splitlines():
                try:
                    walk_json(json.loads(line))
                except ValueError:
                    pass  # a deliberately broken line: the raw scan below still sees it
            for obj in FHIR_IDENTIFIER.findall(text):
                if CPR_SYSTEM in obj:
                    for v in JSON_VALUE.findall(obj):
                        add(v)
            continue
        try:
            rows = csv.reader(io.StringIO(text), delimiter=";")
            header = [h.strip().strip('"').lower() for h in next(rows, [])]
            if "cpr" not in header:
                kinds["skipped (no cpr column)"] += 1
                continue
            col = header.index("cpr")
            for row in rows:
                if len(row) > col:
                    add(row[col])
            kinds["csv"] += 1
        except csv.Error:
            kinds["csv partly unparsable"] += 1
    return cprs, kinds


# ---------------------------------------------------------------- check 1: lake vs receipts

def read_lake(lake_dir, report):
    """{table: Counter(delivery_id -> rows)}; checks files, layout and hive reads."""
    counts = {}
    curated = lake_dir / "curated"
    for tdir in sorted(p for p in curated.iterdir() if p.is_dir()) if curated.is_dir() else []:
        problems, per_delivery = [], Counter()
        files = sorted(tdir.rglob("*.parquet"))
        for f in files:
            rel = f.relative_to(tdir)
            if len(rel.parts) != 3 or not re.fullmatch(r"year=\d{4}", rel.parts[0]) \
                    or not re.fullmatch(r"month=\d{2}", rel.parts[1]):
                problems.append(f"{rel}: not under year=YYYY/month=MM/")
            try:
                t = pq.read_table(f, columns=["delivery_id"])
            except Exception as e:  # noqa: BLE001 - any read error is a finding
                problems.append(f"{rel}: unreadable or no delivery_id column ({e})")
                continue
            col = t.column("delivery_id")
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                problems.append(f"{rel}: delivery_id is {col.type}, not a string")
            if col.null_count:
                problems.append(f"{rel}: {col.null_count} null delivery_id(s)")
            file_counts = Counter(v for v in col.to_pylist() if v is not None)
            for did in file_counts:
                if not f.name.startswith(f"{did}-"):
                    problems.append(f"{rel}: holds rows of delivery {did}")
            per_delivery.update(file_counts)
        total = sum(per_delivery.values())
        if not files:
            problems.append("no parquet files")
        else:
            try:
                dset = ds.dataset(tdir, format="parquet", partitioning="hive")
                names = set(dset.schema.names)
                if not {"year", "month"} <= names:
                    problems.append(f"hive read lacks year/month (has {sorted(names)[:8]}...)")
                if dset.count_rows() != total:
                    problems.append(f"hive dataset counts {dset.count_rows()} rows, files {total}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"pyarrow.dataset cannot read the table: {e}")
        report.check(f"parquet readable: {tdir.name}", problems,
                     f"{len(files)} file(s), {total} rows, {len(per_delivery)} deliveries")
        counts[tdir.name] = per_delivery
    return counts


def load_receipts(home, report):
    receipts, problems = [], []
    for f in sorted((home / "receipts").rglob("*.json")) if (home / "receipts").is_dir() else []:
        try:
            r = json.loads(f.read_text(encoding="utf-8"))
            r["_path"] = f.relative_to(home)
            _ = (r["delivery_id"], r["dataset"], r["state"], r["rows"]["accepted"])
            receipts.append(r)
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{f.relative_to(home)}: not a receipt ({e!r})")
    dup = [d for d, n in Counter(r["delivery_id"] for r in receipts).items() if n > 1]
    problems += [f"delivery {d} has more than one receipt" for d in dup]
    report.check("receipts parse", problems, f"{len(receipts)} receipt(s)")
    return receipts


def check_receipts_vs_lake(receipts, lake, report):
    problems, fanned = [], 0
    by_delivery = defaultdict(dict)  # delivery_id -> {table: rows}
    for table, c in lake.items():
        for did, n in c.items():
            by_delivery[did][table] = n
    for r in receipts:
        did, state, want = r["delivery_id"], r["state"], r["rows"]["accepted"]
        tables = by_delivery.get(did, {})
        total = sum(tables.values())
        where = f"{r['_path']} ({state})"
        if state in ACCEPTED:
            own = r["dataset"].replace(".", "_")
            if len(tables) > 1 or (tables and own not in tables):
                fanned += 1  # one delivery fanned out over several tables
                if total == 0 or want == 0:
                    problems.append(f"{where}: fan-out rows {total}, receipt accepted {want}")
            elif total != want:
                problems.append(f"{where}: lake has {total} rows in {own}, receipt says {want}")
        elif state in NOT_IN_LAKE:
            if total:
                problems.append(f"{where}: {total} rows in the lake ({', '.join(tables)})")
        else:
            problems.append(f"{where}: unknown state")
    report.check("receipts match lake rows", problems,
                 f"{len(receipts)} receipt(s), {fanned} fanned out")
    accepted = {r["delivery_id"] for r in receipts if r["state"] in ACCEPTED}
    orphans = [f"delivery {d} in {', '.join(t)} has no accepted receipt"
               for d, t in sorted(by_delivery.items()) if d not in accepted]
    report.check("every lake delivery has an accepted receipt", orphans,
                 f"{len(by_delivery)} deliveries in the lake")


def check_ledger(home, receipts, report):
    path, problems = home / "ledger.sqlite", []
    if not path.is_file():
        report.check("ledger agrees with receipts", ["ledger.sqlite missing"])
        return
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = {d: (s, n) for d, s, n in
                con.execute("SELECT delivery_id, state, rows_accepted FROM deliveries")}
    finally:
        con.close()
    for r in receipts:
        got = rows.get(r["delivery_id"])
        if got is None:
            problems.append(f"{r['_path']}: delivery not in the ledger")
        elif got[0] != r["state"]:
            problems.append(f"{r['_path']}: ledger state {got[0]}, receipt {r['state']}")
        elif r["state"] in ACCEPTED and got[1] != r["rows"]["accepted"]:
            problems.append(f"{r['_path']}: ledger rows_accepted {got[1]}, "
                            f"receipt {r['rows']['accepted']}")
    report.check("ledger agrees with receipts", problems, f"{len(rows)} ledger row(s)")


# ---------------------------------------------------------------- check 2: DuckDB catalog

def check_duckdb(home, lake, receipts, report):
    catalog = home / "lake" / "catalog.sql"
    if not catalog.is_file():
        report.check("duckdb catalog", ["lake/catalog.sql missing"])
        return
    con = duckdb.connect(":memory:")
    try:
        con.execute(catalog.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        report.check("duckdb catalog runs", [str(e)])
        return
    all_views = [v for (v,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    # Views over the presentation zone (current tables, dimensions, marts) are
    # checked separately: they are derived, not delivered.
    presentation = {p.parent.name for p in (home / "lake" / "presentation").glob("*/*/data.parquet")}
    check_presentation(con, [v for v in all_views if v in presentation], lake, report)
    check_complements(con, [v for v in all_views if v in presentation], report)
    quality = [v for v in all_views if v.startswith("quality_")]
    check_quality(con, quality, receipts, report)
    views = [v for v in all_views if v not in presentation and v not in quality]
    with_rows = {t for t, c in lake.items() if sum(c.values())}
    report.check("duckdb catalog runs: one view per table with data",
                 [f"no view for table {t}" for t in sorted(with_rows - set(views))]
                 + [f"view {v} has no lake table" for v in views if v not in lake],
                 f"{len(views)} view(s)")
    for v in views:
        problems = []
        try:
            cols = [row[0] for row in con.execute(f'DESCRIBE "{v}"').fetchall()]
            problems += [f"no column {c}" for c in ("year", "month", "delivery_id")
                         if c not in cols]
            got = dict(con.execute(
                f'SELECT delivery_id, count(*) FROM "{v}" GROUP BY 1').fetchall())
            want = dict(lake.get(v, {}))
            if sum(got.values()) != sum(want.values()):
                problems.append(f"count(*) {sum(got.values())}, pyarrow {sum(want.values())}")
            problems += [f"delivery {d}: duckdb {got.get(d, 0)}, pyarrow {want.get(d, 0)}"
                         for d in sorted(set(got) | set(want)) if got.get(d, 0) != want.get(d, 0)]
        except Exception as e:  # noqa: BLE001
            problems.append(f"query failed: {e}")
        report.check(f"duckdb view {v}", problems,
                     f"{sum(lake.get(v, {}).values())} rows, has year/month")


def check_quality(con, views, receipts, report):
    """The quality tables agree with the receipts: every receipt's quality summary
    counts exactly the delivery's rows in quality_metrics, and every status and share
    is in its vocabulary and range."""
    summaries = {r["delivery_id"]: r["quality"] for r in receipts if r.get("quality")}
    if "quality_metrics" not in views:
        report.check("quality_metrics view", ["missing"] if summaries else [], "no deliveries")
        return
    problems = []
    got = dict(con.execute(
        "SELECT delivery_id, count(*) FROM quality_metrics GROUP BY 1").fetchall())
    fails = dict(con.execute(
        "SELECT delivery_id, count(*) FROM quality_metrics WHERE status = 'FAIL' GROUP BY 1").fetchall())
    for d, q in summaries.items():
        if got.get(d) != q["checks"]:
            problems.append(f"{d}: receipt counts {q['checks']} checks, the table {got.get(d)}")
        if fails.get(d, 0) != q["failed"]:
            problems.append(f"{d}: receipt counts {q['failed']} failed, the table {fails.get(d, 0)}")
    problems += [f"{d}: metrics without a receipt summary" for d in got if d not in summaries]
    bad = con.execute("""
        SELECT count(*) FROM quality_metrics
        WHERE status NOT IN ('PASS', 'FAIL', 'NOT_APPLICABLE', 'ERROR')
           OR pct < 0 OR pct > 100 OR violated > denominator
           OR (status = 'FAIL' AND threshold IS NOT NULL AND pct <= threshold)""").fetchone()[0]
    if bad:
        problems.append(f"{bad} metric row(s) with an unknown status, a share out of range or a FAIL within its threshold")
    report.check("quality_metrics agrees with the receipts", problems,
                 f"{sum(got.values())} checks of {len(got)} deliveries")
    for view, column, allowed in [
        ("quality_reception", "status", ("on_time", "late", "missing", "pending")),
    ]:
        if view in views:
            odd = con.execute(
                f"SELECT DISTINCT {column} FROM {view} WHERE {column} NOT IN {allowed}").fetchall()
            n = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
            report.check(f"{view} statuses", [f"status {o}" for (o,) in odd] + ([] if n else ["empty"]),
                         f"{n} rows")
    if "quality_declaration" in views:
        odd = con.execute("""SELECT count(*) FROM quality_declaration
            WHERE coverage_pct < 0 OR coverage_pct > 100 OR periods_received > periods_expected""").fetchone()[0]
        report.check("quality_declaration ranges", [f"{odd} row(s) out of range"] if odd else [])


def check_presentation(con, views, lake, report):
    """Current tables hold one row per record key and no more rows than the curated
    table; marts never publish a count of 1-4 persons."""
    for v in views:
        problems = []
        try:
            cols = [row[0] for row in con.execute(f'DESCRIBE "{v}"').fetchall()]
            n = con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0]
            if v.endswith("_current"):
                base = v[: -len("_current")]
                keys = con.execute(f'SELECT count(DISTINCT record_key) FROM "{v}"').fetchone()[0]
                if keys != n:
                    problems.append(f"{n} rows but {keys} record keys")
                if n > sum(lake.get(base, {}).values()):
                    problems.append(f"{n} rows, more than the curated {base}")
            elif "disclosure_rule_set" in cols:
                # Counts are the BIGINT columns (the revision number is an INTEGER).
                counts = [row[0] for row in con.execute(f'DESCRIBE "{v}"').fetchall()
                          if str(row[1]) == "BIGINT"]
                if not counts:
                    problems.append("no count columns")
                for c in counts:
                    small = con.execute(
                        f'SELECT count(*) FROM "{v}" WHERE "{c}" BETWEEN 1 AND 4').fetchone()[0]
                    if small:
                        problems.append(f"{small} published count(s) of 1-4 in {c}")
                # Every row says when it was published and which revision it is; a
                # period's revisions are numbered 0, 1, ... and each is published on one
                # day, later revisions later.
                for need in ("revision", "publiceret"):
                    if need not in cols:
                        problems.append(f"no column {need}")
                if "revision" in cols and "publiceret" in cols:
                    period = cols[0]
                    odd = con.execute(f"""
                        WITH r AS (
                            SELECT "{period}" AS p, revision, count(DISTINCT publiceret) AS days,
                                   min(publiceret) AS day
                            FROM "{v}" GROUP BY 1, 2)
                        SELECT count(*) FROM r
                        WHERE days <> 1 OR revision < 0
                           OR revision >= (SELECT count(*) FROM r r2 WHERE r2.p = r.p)
                           OR EXISTS (SELECT 1 FROM r r2 WHERE r2.p = r.p
                                      AND r2.revision < r.revision AND r2.day > r.day)
                    """).fetchone()[0]
                    if odd:
                        problems.append(f"{odd} period revision(s) numbered or dated out of order")
        except Exception as e:  # noqa: BLE001
            problems.append(f"query failed: {e}")
        report.check(f"presentation view {v}", problems, f"{n if not problems else '?'} rows")


def mart_headers():
    """The nesting each mart's SQL declares (`-- nested: a < b < base`)."""
    marts = {}
    for sql in sorted((Path(__file__).resolve().parents[2] / "sql" / "marts").glob("*.sql")):
        chains = [[c.strip() for c in line.split(":", 1)[1].split("<")]
                  for line in sql.read_text().splitlines() if line.startswith("-- nested:")]
        marts[sql.stem] = chains
    return marts


def check_complements(con, views, report):
    """The complement attack on every published row: two nested counts both shown may
    not differ by 1-4, and a count nested in a base under 20 may not be 0 or all of it."""
    for mart, chains in mart_headers().items():
        if mart not in views:
            continue
        problems = []
        for chain in chains:
            base = chain[-1]
            for i, inner in enumerate(chain):
                for outer in chain[i + 1:]:
                    n = con.execute(f"""SELECT count(*) FROM "{mart}"
                        WHERE "{outer}" - "{inner}" BETWEEN 1 AND 4""").fetchone()[0]
                    if n:
                        problems.append(f"{n} row(s) where {outer} - {inner} is 1-4")
                if inner != base:
                    n = con.execute(f"""SELECT count(*) FROM "{mart}"
                        WHERE "{base}" BETWEEN 1 AND 19 AND ("{inner}" = 0 OR "{inner}" = "{base}")""").fetchone()[0]
                    if n:
                        problems.append(f"{n} row(s) where {inner} is 0 or 100 % of {base} < 20")
        pairs = sum(len(c) * (len(c) - 1) // 2 for c in chains)
        report.check(f"no complement of 1-4 in {mart}", problems, f"{pairs} nested pair(s)")


# ---------------------------------------------------------------- check 3: CPR scan

def count_hits(text, cprs):
    return sum(1 for m in CANDIDATE.finditer(text)
               if SEPARATORS.sub("", m.group(1)).upper() in cprs)


def string_arrays(arr):
    """Every string-like leaf of an Arrow array, through dictionaries, lists, structs, maps."""
    t = arr.type
    if pa.types.is_dictionary(t):
        yield from string_arrays(arr.dictionary)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        yield arr
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        yield pa.array([None if b is None else b.decode("latin-1") for b in arr.to_pylist()],
                       pa.string())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from string_arrays(arr.field(i))
    elif pa.types.is_map(t):
        yield from string_arrays(arr.keys)
        yield from string_arrays(arr.items)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from string_arrays(arr.flatten())


def parquet_hits(path, cprs):
    hits = 0
    pf = pq.ParquetFile(path)
    for i in range(pf.num_row_groups):
        for column in pf.read_row_group(i).columns:
            for chunk in column.chunks:
                for arr in string_arrays(chunk):
                    suspects = arr.filter(pc.match_substring_regex(arr, CANDIDATE_ANY))
                    hits += sum(count_hits(v, cprs) for v in suspects.to_pylist() if v)
    return hits


def check_cprs(home, input_dir, cprs, report):
    problems, scanned = [], Counter()
    skip = {home / "landing", home / "keys", input_dir.resolve()}
    for root, dirs, files in os.walk(home):
        rel_root = Path(root).relative_to(home)
        dirs[:] = [d for d in dirs if Path(root) / d not in skip]
        dirs.sort()
        for name in sorted(files):
            path, rel = Path(root) / name, rel_root / name
            try:
                # Raw bytes for every file (for Parquet this sees metadata, statistics
                # and uncompressed pages), plus decoded column values for Parquet.
                raw = count_hits(raw_bytes(path).decode("latin-1"), cprs)
                values = parquet_hits(path, cprs) if name.endswith(".parquet") else None
            except Exception as e:  # noqa: BLE001 - an unreadable file cannot be cleared
                problems.append(f"{rel}: cannot scan ({type(e).__name__})")
                continue
            scanned["other" if values is None else "parquet"] += 1
            if raw or values:
                detail = "" if values is None else f" ({values} in column values, {raw} in raw bytes)"
                problems.append(f"{rel}: {raw + (values or 0)} CPR hit(s){detail}")
    report.check("no input CPR outside landing/ and keys/", problems,
                 f"{scanned['parquet']} parquet + {scanned['other']} other file(s) clean")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", required=True, type=Path, help="the run's NAERDATA home")
    ap.add_argument("--input", required=True, type=Path, help="the generator's output dir")
    args = ap.parse_args()
    home, report = args.home.resolve(), Report()
    print(f"lake-check: home {home}, input {args.input}")
    cprs, kinds = input_cprs(args.input)
    report.cprs = cprs

    lake = read_lake(home / "lake", report)
    receipts = load_receipts(home, report)
    report.check("run is not empty",
                 (["no lake table"] if not lake else [])
                 + (["no receipt"] if not receipts else []),
                 f"{len(lake)} table(s), {len(receipts)} receipt(s)")
    check_receipts_vs_lake(receipts, lake, report)
    check_ledger(home, receipts, report)
    check_duckdb(home, lake, receipts, report)

    kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    report.check("input CPRs collected", [] if cprs else ["no CPR found in the input"],
                 f"{len(cprs)} distinct from {kinds_text}")
    if cprs:
        check_cprs(home, args.input, cprs, report)

    if report.failed:
        print("failed checks: " + "; ".join(report.failed))
    print(f"lake-check: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
