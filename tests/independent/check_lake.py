#!/usr/bin/env python3
"""Independent check of a naerdata run: is the lake readable, consistent and CPR-free?

Why this exists: the Rust tests can only show that the Rust code agrees with itself.
This script is a second, independent reader (deltalake, polars, pyarrow and DuckDB,
no naerdata code) that looks at what an end-to-end run left on disk and checks that

  1. every curated table (`lake/curated/<table>/`) and `lake/quality/metrics/` is a
     Delta table read through its log, with the Python `deltalake` package and with
     polars, which agree on the rows per delivery and both see the partition columns
     `year` and `month`; only the files active in the log count (a Parquet file on
     disk but not in the log, from an attempt that never committed or replaced by a
     compaction or retraction, is ignored), and every active file exists, is
     readable, lies under year=YYYY/month=MM/ as the log says and has a string
     delivery_id without nulls. The rows per delivery match the receipts (accepted
     deliveries have exactly `rows.accepted` rows; rejected, duplicate, failed and
     retracted deliveries have none; every lake delivery has an accepted receipt);
     `quality_metrics` holds the checks of exactly the processed deliveries that
     were not retracted; the ledger agrees with the receipts;
  2. `lake/catalog.sql` works in a fresh DuckDB and its views list exactly the
     active files and see the same rows per delivery as deltalake, with the Hive
     partition columns `year` and `month`;
  3. no CPR number from the generator's input appears anywhere outside `landing/`
     (the raw deliveries) and `keys/`: not in Parquet values (of every file on disk,
     active or not), the Delta logs, receipts, quarantine files, the ledger, the
     catalog, logs or spool leftovers;
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
from urllib.parse import unquote

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

ACCEPTED = {"accepted", "accepted_with_warnings"}
# A retracted delivery was accepted, then taken back out of the lake (its receipt
# says when and why in `retraction`): like a rejected one, it has no rows.
NOT_IN_LAKE = {"rejected", "duplicate", "failed", "retracted"}
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
            # The person's number, and a second one (the register's new number, nyt_cpr).
            cols = [i for i, h in enumerate(header) if h == "cpr" or h.endswith("_cpr")]
            if not cols:
                kinds["skipped (no cpr column)"] += 1
                continue
            for row in rows:
                for col in cols:
                    if len(row) > col:
                        add(row[col])
            kinds["csv"] += 1
        except csv.Error:
            kinds["csv partly unparsable"] += 1
    return cprs, kinds


# ---------------------------------------------------------------- check 1: lake vs receipts

PARTITION_DIR = (re.compile(r"year=(\d{4})"), re.compile(r"month=(\d{1,2})"))


class DeltaRead:
    """What the Delta log says one table holds: the log version, the active files
    (absolute paths) and the rows per delivery_id."""

    def __init__(self, version, files, counts):
        self.version, self.files, self.counts = version, files, counts


def is_string(t):
    """A string column; delta-rs writes string views when it rewrites files."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def group_counts(values):
    """Counter(delivery_id -> rows) of a list of delivery ids (nulls left out)."""
    return Counter(v for v in values if v is not None)


def read_delta(tdir, name, report):
    """Reads one Delta table through its log, with deltalake and polars, and checks it.

    Returns a DeltaRead, or None when `tdir` holds no Delta table (a folder a reader
    created before any commit: it must not hold Parquet files either)."""
    problems = []
    if not (tdir / "_delta_log").is_dir():
        strays = sorted(str(f.relative_to(tdir)) for f in tdir.rglob("*.parquet"))
        report.check(f"delta table {name}",
                     [f"{len(strays)} parquet file(s) but no _delta_log (e.g. {strays[0]})"]
                     if strays else [], "no table yet (empty folder)")
        return None
    try:
        dt = DeltaTable(str(tdir))
        version = dt.version()
        adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        uris = {os.path.realpath(unquote(u)) for u in dt.file_uris()}
    except Exception as e:  # noqa: BLE001 - an unreadable log is a finding
        report.check(f"delta table {name}", [f"deltalake cannot open the table: {e}"])
        return None
    root = Path(os.path.realpath(tdir))

    # Every active file: present, under year=YYYY/month=M(M)/ matching its partition
    # values in the log, readable, a string delivery_id without nulls, no partition
    # columns of its own, and as many rows as the log says.
    files, per_file = [], Counter()
    for add in adds:
        rel = unquote(add["path"])
        f = Path(os.path.realpath(root / rel))
        files.append(str(f))
        parts = Path(rel).parts
        m = [PARTITION_DIR[i].fullmatch(parts[i]) for i in range(2)] if len(parts) == 3 else []
        if not (m and all(m)):
            problems.append(f"{rel}: not under year=YYYY/month=MM/")
        elif (int(m[0].group(1)), int(m[1].group(1))) != (add.get("partition.year"),
                                                            add.get("partition.month")):
            problems.append(f"{rel}: path and log partition values differ "
                            f"(log year={add.get('partition.year')} month={add.get('partition.month')})")
        elif not 1 <= int(m[1].group(1)) <= 12:
            problems.append(f"{rel}: month out of range")
        if not f.is_file():
            problems.append(f"{rel}: in the log but missing on disk")
            continue
        try:
            pf = pq.ParquetFile(f)
            t = pf.read(columns=["delivery_id"])
        except Exception as e:  # noqa: BLE001 - any read error is a finding
            problems.append(f"{rel}: unreadable or no delivery_id column ({e})")
            continue
        own = [c for c in ("year", "month") if c in pf.schema_arrow.names]
        if own:
            problems.append(f"{rel}: holds partition column(s) {own} itself")
        col = t.column("delivery_id")
        if not is_string(col.type):
            problems.append(f"{rel}: delivery_id is {col.type}, not a string")
        if col.null_count:
            problems.append(f"{rel}: {col.null_count} null delivery_id(s)")
        if add.get("num_records") is not None and add["num_records"] != t.num_rows:
            problems.append(f"{rel}: {t.num_rows} rows, the log says {add['num_records']}")
        per_file.update(group_counts(col.to_pylist()))
    if set(files) != uris:
        problems.append(f"add actions and file_uris() disagree "
                        f"({len(set(files) ^ uris)} file(s))")

    # The table as readers see it: deltalake (pyarrow dataset) and polars.
    counts = None
    try:
        dset = dt.to_pyarrow_dataset()
        if not {"year", "month"} <= set(dset.schema.names):
            problems.append(f"deltalake read lacks year/month (has {sorted(dset.schema.names)[:8]}...)")
        t = dset.to_table(columns=["delivery_id", "year", "month"])
        counts = group_counts(t.column("delivery_id").to_pylist())
        for c in ("year", "month"):
            if not pa.types.is_integer(t.schema.field(c).type):
                problems.append(f"deltalake reads {c} as {t.schema.field(c).type}, not an integer")
            if t.column(c).null_count:
                problems.append(f"deltalake reads {t.column(c).null_count} null {c}(s)")
    except Exception as e:  # noqa: BLE001
        problems.append(f"deltalake cannot read the table: {e}")
    if counts is None:
        counts = per_file  # deltalake failed (a problem above): the files' own counts
    elif counts != per_file:
        diff = sorted(d for d in set(counts) | set(per_file) if counts[d] != per_file[d])
        problems += [f"delivery {d}: deltalake {counts[d]} rows, active files {per_file[d]}"
                     for d in diff]
    try:
        names = pl.scan_delta(str(tdir)).collect_schema().names()
        if not {"year", "month"} <= set(names):
            problems.append(f"polars read lacks year/month (has {sorted(names)[:8]}...)")
        df = pl.read_delta(str(tdir), columns=["delivery_id", "year", "month"])
        by_polars = group_counts(df.get_column("delivery_id").to_list())
        for c in ("year", "month"):
            if not df.schema[c].is_integer():
                problems.append(f"polars reads {c} as {df.schema[c]}, not an integer")
        if by_polars != counts:
            diff = sorted(d for d in set(counts) | set(by_polars) if counts[d] != by_polars[d])
            problems += [f"delivery {d}: polars {by_polars[d]} rows, deltalake {counts[d]}"
                         for d in diff]
    except Exception as e:  # noqa: BLE001
        problems.append(f"polars cannot read the table: {e}")
    report.check(f"delta table {name}", problems,
                 f"version {version}, {len(files)} active file(s), {sum(counts.values())} rows, "
                 f"{len(counts)} deliveries, deltalake and polars agree")
    return DeltaRead(version, files, counts)


def read_lake(lake_dir, report):
    """{table: DeltaRead} of every curated Delta table."""
    curated, tables = lake_dir / "curated", {}
    for tdir in sorted(p for p in curated.iterdir() if p.is_dir()) if curated.is_dir() else []:
        read = read_delta(tdir, tdir.name, report)
        if read is not None:
            tables[tdir.name] = read
    return tables


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
    check_retractions(receipts, report)


def check_retractions(receipts, report):
    """A retracted receipt says when, why and how many rows left each table (no more
    than the delivery wrote); no other receipt carries a retraction."""
    problems, n = [], 0
    for r in receipts:
        where, x = f"{r['_path']} ({r['state']})", r.get("retraction")
        if r["state"] != "retracted":
            if x is not None:
                problems.append(f"{where}: has a retraction but is not retracted")
            continue
        n += 1
        if not isinstance(x, dict):
            problems.append(f"{where}: no retraction object")
            continue
        if not isinstance(x.get("at"), str) or not x["at"]:
            problems.append(f"{where}: retraction without a time")
        if not isinstance(x.get("reason"), str) or not x["reason"].strip():
            problems.append(f"{where}: retraction without a reason")
        deleted = x.get("rows_deleted")
        if not isinstance(deleted, dict) or not all(
                isinstance(v, int) and v >= 0 for v in deleted.values()):
            problems.append(f"{where}: rows_deleted is not a table -> count object")
            continue
        written = dict(r.get("tables") or {})
        written["quality_metrics"] = (r.get("quality") or {}).get("checks", 0)
        problems += [f"{where}: retraction deleted {v} rows of {t}, the delivery wrote "
                     f"{written.get(t, 0)}" for t, v in sorted(deleted.items())
                     if v > written.get(t, 0)]
    report.check("retracted receipts say when, why and how many rows", problems,
                 f"{n} retracted")


def check_metrics(receipts, metrics, report):
    """`quality_metrics` (read through its Delta log) holds the checks of exactly the
    deliveries that were processed and not retracted: as many rows as the receipt's
    quality summary counts; none of a retracted or duplicate delivery; every accepted
    delivery has a summary and its rows."""
    if metrics is None:
        want = [r for r in receipts if r.get("quality") and r["state"] != "retracted"]
        report.check("quality_metrics (Delta) agrees with the receipts",
                     [f"no quality/metrics Delta table, but {len(want)} receipt(s) "
                      "with a quality summary"] if want else [], "no table, no summaries")
        return
    got, problems = metrics.counts, []
    by_id = {r["delivery_id"]: r for r in receipts}
    for r in receipts:
        did, state, q = r["delivery_id"], r["state"], r.get("quality")
        where = f"{r['_path']} ({state})"
        if state in ("retracted", "duplicate"):
            if got.get(did):
                problems.append(f"{where}: {got[did]} metric row(s) left")
        elif q:
            if got.get(did, 0) != q.get("checks"):
                problems.append(f"{where}: receipt counts {q.get('checks')} checks, "
                                f"the Delta table {got.get(did, 0)}")
        elif state in ACCEPTED:
            problems.append(f"{where}: accepted without a quality summary")
        elif got.get(did):
            problems.append(f"{where}: {got[did]} metric row(s) but no quality summary")
    problems += [f"{d}: {n} metric row(s) without a receipt" for d, n in sorted(got.items())
                 if d not in by_id]
    report.check("quality_metrics (Delta) agrees with the receipts", problems,
                 f"{sum(got.values())} checks of {len(got)} deliveries")


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

def view_files(con, view):
    """The files a catalog view reads (its read_parquet list), as real paths."""
    sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [view]).fetchone()[0]
    return {os.path.realpath(m.replace("''", "'"))
            for m in re.findall(r"'((?:[^']|'')*\.parquet)'", sql or "")}


def check_duckdb(home, tables, metrics, receipts, report):
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
    lake = {t: r.counts for t, r in tables.items()}
    all_views = [v for (v,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    # Views over the presentation zone (current tables, dimensions, marts) are
    # checked separately: they are derived, not delivered.
    presentation = {p.parent.name for p in (home / "lake" / "presentation").glob("*/*/data.parquet")}
    # A current table is a Delta table publish merges into: read through its own log
    # here, it must hold what the catalog's view shows.
    current = {p.parent.name: p.parent
               for p in (home / "lake" / "presentation" / "current").glob("*/_delta_log")}
    presentation |= set(current)
    check_current_delta(con, current, report)
    # A mart is one folder per publication (publication=YYYY-MM-DD/data.parquet).
    presentation |= {p.parent.parent.name
                     for p in (home / "lake" / "presentation").glob("marts/*/publication=*/data.parquet")}
    check_presentation(con, [v for v in all_views if v in presentation], lake, report)
    check_complements(con, [v for v in all_views if v in presentation], report)
    quality = [v for v in all_views if v.startswith("quality_")]
    check_quality(con, quality, metrics, receipts, report)
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
                problems.append(f"count(*) {sum(got.values())}, deltalake {sum(want.values())}")
            problems += [f"delivery {d}: duckdb {got.get(d, 0)}, deltalake {want.get(d, 0)}"
                         for d in sorted(set(got) | set(want)) if got.get(d, 0) != want.get(d, 0)]
            if v in tables:
                problems += files_differ(view_files(con, v), tables[v])
        except Exception as e:  # noqa: BLE001
            problems.append(f"query failed: {e}")
        report.check(f"duckdb view {v}", problems,
                     f"{sum(lake.get(v, {}).values())} rows, has year/month, "
                     "reads the active files")


def files_differ(listed, read):
    """Problems when a view's file list is not the table's active files."""
    active = set(read.files)
    return ([f"view reads {len(listed - active)} file(s) not active in Delta version "
             f"{read.version} (e.g. {sorted(listed - active)[0]})"] if listed - active else []) \
        + ([f"view misses {len(active - listed)} active file(s) (e.g. {sorted(active - listed)[0]})"]
           if active - listed else [])


def check_quality(con, views, metrics, receipts, report):
    """The quality tables agree with the receipts: every quality summary of a delivery
    that was not retracted counts exactly the delivery's rows in quality_metrics (and
    deltalake's count), a retracted one has none, and every status and share is in its
    vocabulary and range."""
    summaries = {r["delivery_id"]: r["quality"] for r in receipts
                 if r.get("quality") and r["state"] != "retracted"}
    if "quality_metrics" not in views:
        report.check("quality_metrics view", ["missing"] if summaries else [], "no deliveries")
        return
    problems = []
    got = dict(con.execute(
        "SELECT delivery_id, count(*) FROM quality_metrics GROUP BY 1").fetchall())
    if metrics is not None:
        problems += [f"{d}: duckdb {got.get(d, 0)} metric rows, deltalake {metrics.counts.get(d, 0)}"
                     for d in sorted(set(got) | set(metrics.counts))
                     if got.get(d, 0) != metrics.counts.get(d, 0)]
        problems += files_differ(view_files(con, "quality_metrics"), metrics)
    fails = dict(con.execute(
        "SELECT delivery_id, count(*) FROM quality_metrics WHERE status = 'FAIL' GROUP BY 1").fetchall())
    for d, q in summaries.items():
        if got.get(d) != q["checks"]:
            problems.append(f"{d}: receipt counts {q['checks']} checks, the table {got.get(d)}")
        if fails.get(d, 0) != q["failed"]:
            problems.append(f"{d}: receipt counts {q['failed']} failed, the table {fails.get(d, 0)}")
    problems += [f"{d}: metrics without a receipt summary (or of a retracted delivery)"
                 for d in got if d not in summaries]
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


def check_current_delta(con, current, report):
    """Each current table read through its Delta log with deltalake has the rows, and
    the record keys, of the DuckDB catalog's view (which lists the same log's files)."""
    for name, path in sorted(current.items()):
        problems = []
        n = "?"
        try:
            t = DeltaTable(str(path)).to_pyarrow_table()
            n = t.num_rows
            keys = len(set(t.column("record_key").to_pylist()))
            if keys != n:
                problems.append(f"{n} rows but {keys} record keys")
            views = {v for (v,) in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
            if n and name not in views:
                problems.append("no catalog view")
            elif name in views:
                seen = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                if seen != n:
                    problems.append(f"the catalog's view shows {seen} rows, the log {n}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"deltalake cannot read it: {e}")
        report.check(f"current table {name} (Delta)", problems, f"{n} rows")


def check_presentation(con, views, lake, report):
    """Current tables hold one row per record key and no more rows than the curated
    table; marts never publish a count of 1-4 persons, nor a standardised rate without
    its crude rate; every column is described in Danish and English."""
    for v in views:
        problems = []
        try:
            cols = [row[0] for row in con.execute(f'DESCRIBE "{v}"').fetchall()]
            n = con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0]
            # Every column says what it is, in Danish and English ("dansk / english").
            described = dict(con.execute(
                "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?",
                [v]).fetchall())
            bare = [c for c in cols if " / " not in (described.get(c) or "")]
            if bare:
                problems.append(f"column(s) without a Danish / English comment: {bare}")
            view_comment = con.execute(
                "SELECT comment FROM duckdb_views() WHERE view_name = ?", [v]).fetchone()
            if not view_comment or " / " not in (view_comment[0] or ""):
                problems.append("no Danish / English comment on the view")
            # A standardised rate is published only where its crude rate is.
            for c in cols:
                if c.endswith("_std") and c[: -len("_std")] in cols:
                    odd = con.execute(
                        f'SELECT count(*) FROM "{v}" WHERE "{c}" IS NOT NULL '
                        f'AND "{c[: -len("_std")]}" IS NULL').fetchone()[0]
                    if odd:
                        problems.append(f"{odd} row(s) with {c} but no crude rate")
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
                for need in ("revision", "publiceret", "reference_date", "publication"):
                    if need not in cols:
                        problems.append(f"no column {need}")
                # A publication's file says which it is: its reference date is the
                # partition's, and nothing in it was published after that day.
                if "reference_date" in cols and "publication" in cols:
                    odd = con.execute(f'''SELECT count(*) FROM "{v}"
                        WHERE CAST(reference_date AS DATE) <> CAST(publication AS DATE)
                           OR publiceret > reference_date''').fetchone()[0]
                    if odd:
                        problems.append(f"{odd} row(s) whose reference date is not their publication's")
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
    """Every string-like leaf of an Arrow array, through dictionaries, lists, structs, maps.
    String views (what delta-rs writes when it rewrites files in a compaction or a
    delete) come out as plain strings, which the regex kernels take."""
    t = arr.type
    if pa.types.is_dictionary(t):
        yield from string_arrays(arr.dictionary)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        yield arr
    elif pa.types.is_string_view(t):
        yield arr.cast(pa.string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        yield pa.array([None if b is None else b.decode("latin-1") for b in arr.to_pylist()],
                       pa.string())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from string_arrays(arr.field(i))
    elif pa.types.is_map(t):
        yield from string_arrays(arr.keys)
        yield from string_arrays(arr.items)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
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

    tables = read_lake(home / "lake", report)
    metrics_dir = home / "lake" / "quality" / "metrics"
    metrics = read_delta(metrics_dir, "quality_metrics", report) if metrics_dir.is_dir() else None
    receipts = load_receipts(home, report)
    report.check("run is not empty",
                 (["no lake table"] if not tables else [])
                 + (["no receipt"] if not receipts else []),
                 f"{len(tables)} table(s), {len(receipts)} receipt(s)")
    check_receipts_vs_lake(receipts, {t: r.counts for t, r in tables.items()}, report)
    check_metrics(receipts, metrics, report)
    check_ledger(home, receipts, report)
    check_duckdb(home, tables, metrics, receipts, report)

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
