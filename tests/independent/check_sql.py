"""One SQL for two engines: the statements publish runs, checked without our Rust code.

Reads what `naerdata infra sql --out DIR` wrote (DIR/manifest.json) and checks:

1. every statement (current tables, dimensions, marts) parses and transpiles with
   sqlglot to Trino, the dialect of Athena engine v3, with unsupported_level=RAISE: a
   construct sqlglot cannot carry over fails here, not on Athena;
2. every mart's statement as Athena is sent it (its periods written in as VALUES)
   transpiles to Trino the same way, and, transpiled to DuckDB and run there over
   the same Parquet tables (no `perioder` table: the statement carries its periods),
   gives the cells DataFusion gave from the same text:
   the same columns, the same rows, counts equal and other numbers within
   REL_TOLERANCE (the engines may sum floating point in another order).

Usage: check_sql.py DIR
"""

import json
import math
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import sqlglot
from sqlglot.errors import ErrorLevel

# DataFusion's SQL is the ANSI-like default; it is read as sqlglot's default dialect.
READ = None
REL_TOLERANCE = 1e-9


def transpile(sql: str, dialect: str, where: str) -> str:
    try:
        out = sqlglot.transpile(sql, read=READ, write=dialect, unsupported_level=ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as e:
        sys.exit(f"FAIL: {where} does not carry over to {dialect}: {e}")
    if len(out) != 1:
        sys.exit(f"FAIL: {where} holds {len(out)} statements, expected one")
    return out[0]


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=REL_TOLERANCE, abs_tol=REL_TOLERANCE)
    return a == b


def sort_key(row):
    # None first, then by value as text: a total order over mixed types.
    return [(v is not None, str(v)) for v in row]


def rows(table):
    cols = [c.to_pylist() for c in table.columns]
    return sorted(zip(*cols), key=sort_key) if cols else []


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = Path(sys.argv[1])
    manifest = json.loads((root / "manifest.json").read_text())

    for s in manifest["statements"]:
        transpile((root / s["file"]).read_text(), "trino", f"{s['kind']} {s['name']}")
    print(f"sqlglot: {len(manifest['statements'])} statements transpile to Trino")

    if manifest["reference_date"] is None:
        print("DuckDB: nothing published yet, no cells to compare")
        return
    con = duckdb.connect()
    for name, files in manifest["tables"].items():
        # A current table is a Delta table: the manifest lists the files of its
        # newest version (a merge leaves replaced files behind until retention).
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}])")
    con.execute(f"CREATE TABLE params AS SELECT DATE '{manifest['reference_date']}' AS reference_date")
    compared = 0
    athena = 0
    for m in manifest["marts"]:
        where = f"mart {m['name']}"
        con.execute("DROP TABLE IF EXISTS perioder")
        if m.get("athena_sql"):
            text = (root / m["athena_sql"]).read_text()
            transpile(text, "trino", f"{where} as sent to Athena")
            athena += 1
        else:
            # No period open: the mart's own SQL over the empty periods.
            con.execute(f"CREATE TABLE perioder AS SELECT * FROM read_parquet('{root / m['perioder']}')")
            text = (root / m["sql"]).read_text()
        sql = transpile(text, "duckdb", where)
        try:
            rel = con.sql(sql)
            # DuckDB 1.x has fetch_arrow_table, 2.x renames it to_arrow_table.
            got = (getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table)()
        except duckdb.Error as e:
            sys.exit(f"FAIL: {where} does not run on DuckDB: {e}")
        want = pq.read_table(root / m["cells"])
        if got.column_names != want.column_names:
            sys.exit(f"FAIL: {where}: DuckDB returns {got.column_names}, DataFusion {want.column_names}")
        g, w = rows(got), rows(want)
        if len(g) != len(w):
            sys.exit(f"FAIL: {where}: DuckDB gives {len(g)} rows, DataFusion {len(w)}")
        for i, (a, b) in enumerate(zip(g, w)):
            for col, x, y in zip(want.column_names, a, b):
                if not same(x, y):
                    sys.exit(f"FAIL: {where}, row {i} (sorted), column {col}: DuckDB {x!r}, DataFusion {y!r}")
        if len(w) == 0:
            print(f"DuckDB: {m['name']}: no cells in the demo's periods (compared as empty)")
        compared += len(w)
    print(f"sqlglot: {athena} marts' statements as sent to Athena transpile to Trino")
    print(
        f"DuckDB: {len(manifest['marts'])} marts give DataFusion's {compared} cells "
        f"(as of {manifest['reference_date']}; numbers within {REL_TOLERANCE:g})"
    )


if __name__ == "__main__":
    main()
