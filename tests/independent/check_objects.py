#!/usr/bin/env python3
"""Independent reader for objects the AWS functions wrote (downloaded to a folder).

The Rust tests against the AWS emulator download the lake, receipt and quarantine
buckets and ask this script — pyarrow, no naerdata code — what is in them:

  * every `.parquet` file is read; its row count and column names are reported;
  * every file is scanned for the CPR numbers of the generator's input (Parquet
    string values and the raw bytes of everything else), as check_lake.py does.

The lake's tables are Delta tables: this reader lists objects, not the log, so it
reports every data file present (active or not). The logs' own files under
`_delta_log/` (JSON commits, `_last_checkpoint`, `.crc`, and checkpoint Parquet
files) are scanned for CPRs like everything else and checkpoints must be readable,
but they are not data files and are left out of "parquet".

Prints one JSON object: {"parquet": {relative_path: {"rows": n, "columns": [...]}},
"files": n, "cpr_hits": {relative_path: count}}. CPR values are never printed.
Exit status 0 when it could read everything (the caller judges the numbers), 1 when
a Parquet file is unreadable.

Usage: check_objects.py --dir DOWNLOADED --input GENERATOR_INPUT_DIR
"""
import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from check_lake import count_hits, decode, input_cprs, parquet_hits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--input", required=True)
    args = ap.parse_args()
    root = Path(args.dir)
    cprs, _ = input_cprs(args.input)
    out = {"parquet": {}, "files": 0, "cpr_hits": {}, "input_cprs": len(cprs)}
    status = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = str(path.relative_to(root))
        out["files"] += 1
        if path.suffix == ".parquet":
            try:
                t = pq.read_table(path)
                hits = parquet_hits(path, cprs)
            except Exception as e:  # noqa: BLE001 - report any unreadable file
                print(f"unreadable Parquet {rel}: {e}", file=sys.stderr)
                status = 1
                continue
            if "_delta_log" not in path.relative_to(root).parts:
                out["parquet"][rel] = {"rows": t.num_rows, "columns": t.column_names}
        else:
            hits = count_hits(decode(path.read_bytes()), cprs)
        # Raw bytes too: Parquet metadata and statistics, undecodable text.
        hits += count_hits(path.read_bytes().decode("latin-1"), cprs)
        if hits:
            out["cpr_hits"][rel] = hits
    print(json.dumps(out))
    return status


if __name__ == "__main__":
    sys.exit(main())
