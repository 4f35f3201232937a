#!/usr/bin/env python3
"""naerdata's process step against DuckDB doing the same job in SQL.

One generated almenpraksis.diagnose delivery goes through `naerdata ingest` (the whole
step: landing copy, read, validate, pseudonymise, Parquet, Delta commit, receipt) and
through DuckDB running bench/duckdb_process.sql (typed read, the contract's patterns
and code lists, CPR birth date and sex, a keyed hash, zstd Parquet partitioned by year
and month), each in a fresh process, `--runs` times at each thread count
(NAERDATA_THREADS; DuckDB's `SET threads`). Printed: the medians of the time from
reading the CSV to the Parquet written (naerdata: its `ingest --stats` seconds; DuckDB:
its COPY statement), the ratio, and each process's peak RSS (its own VmHWM). Before the figures, a
check that both kept the same rows: the count, the distinct record ids and persons, and
the rows per month partition.

Usage: compare_duckdb.py --naerdata target/release/naerdata --file bench-data/...csv
       [--runs 3] [--threads 1,2] [--work DIR]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SQL = Path(__file__).with_name("duckdb_process.sql")
KEY_HEX = "07" * 32
DELIVERY_DATE = "2026-01-01"


def child(args):
    """The DuckDB run itself, in its own process: prints its seconds as JSON."""
    import duckdb

    sql = SQL.read_text().format(input=args.file, output=args.out, key_hex=KEY_HEX,
                                 delivery_date=DELIVERY_DATE)
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    started = time.monotonic()
    con.execute(sql)
    print(json.dumps({"seconds": time.monotonic() - started, "peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib():
    """This process's peak RSS (VmHWM). Not wait4's ru_maxrss: that keeps the peak of
    the forked parent's image from before exec, which is this script's own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(cmd, env=None):
    """Runs `cmd` to its end: its stats line (seconds, peak RSS of its own)."""
    proc = subprocess.run(cmd, env=env, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode()[-2000:]}")
    stats = last_json(proc.stdout.decode())
    return stats["seconds"], stats["peak_rss_mib"]


def last_json(text):
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise RuntimeError(f"no JSON line in {text[-500:]!r}")


def naerdata_run(binary, file, home, threads):
    subprocess.run(["rm", "-rf", str(home)], check=True)
    env = dict(os.environ, NAERDATA_THREADS=str(threads), NAERDATA_LOG="warn")
    return run([str(binary), "--home", str(home), "ingest", "--stats", str(file)], env)


def duckdb_run(file, out_dir, threads):
    subprocess.run(["rm", "-rf", str(out_dir)], check=True)
    return run([sys.executable, __file__, "--child", "--file", str(file),
                "--out", str(out_dir), "--threads", str(threads)])


def same_rows(naerdata_home, duckdb_out):
    """Both kept the same rows: counts overall, per partition, and distinct ids."""
    import duckdb

    con = duckdb.connect()
    ours = f"{naerdata_home}/lake/curated/almenpraksis_diagnose/*/*/*.parquet"
    theirs = f"{duckdb_out}/*/*/*.parquet"
    q = ("SELECT count(*), count(DISTINCT record_id), count(DISTINCT person_id), "
         "count(person_id) FROM read_parquet('{}')")
    a = con.execute(q.format(ours)).fetchone()
    b = con.execute(q.format(theirs)).fetchone()
    per = ("SELECT year(diagnosedato) y, month(diagnosedato) m, count(*) "
           "FROM read_parquet('{}') GROUP BY ALL ORDER BY ALL")
    pa = con.execute(per.format(ours)).fetchall()
    pb = con.execute(per.format(theirs)).fetchall()
    if a != b or pa != pb:
        raise SystemExit(f"naerdata and DuckDB kept different rows: rows, record ids, "
                         f"persons, with a person: {a} against {b}; per month {pa} against {pb}")
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--naerdata", type=Path)
    ap.add_argument("--file", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--work", type=Path, default=Path("bench-data/compare"))
    args = ap.parse_args()
    if args.child:
        return child(args)
    import duckdb

    threads = [int(t) for t in args.threads.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    home, out = args.work / "naerdata-home", args.work / "duckdb-out"
    rows = sum(1 for _ in open(args.file, "rb")) - 1
    results = []
    for t in threads:
        ours, theirs = [], []
        for _ in range(max(args.runs, 1)):
            # Alternating, so drift of a shared VM hits both alike.
            ours.append(naerdata_run(args.naerdata, args.file, home, t))
            theirs.append(duckdb_run(args.file, out, t))
        kept = same_rows(home, out)
        results.append((t, ours, theirs, kept))
    print(f"naerdata against DuckDB {duckdb.__version__} on the same job "
          f"({rows:,} rows, {args.file.stat().st_size / 2**20:.0f} MiB; median of "
          f"{args.runs} fresh processes each; seconds from reading the CSV to the "
          f"Parquet written)")
    print(f"  {'threads':>7}  {'naerdata s':>10}  {'DuckDB s':>8}  {'DuckDB/naerdata':>15}  "
          f"{'naerdata rows/s':>15}  {'naerdata MiB':>12}  {'DuckDB MiB':>10}")
    for t, ours, theirs, kept in results:
        a = statistics.median(s for s, _ in ours)
        b = statistics.median(s for s, _ in theirs)
        print(f"  {t:>7}  {a:>10.2f}  {b:>8.2f}  {b / a:>14.2f}x  {rows / a:>15,.0f}  "
              f"{max(p for _, p in ours):>12.0f}  {max(p for _, p in theirs):>10.0f}")
    print(f"  both kept the same rows: {results[-1][3][0]:,} rows, "
          f"{results[-1][3][2]:,} persons, the same per month")


if __name__ == "__main__":
    main()
