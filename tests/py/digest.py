"""The state of a database, read from its data by DuckDB: for every table
its row count and the sum of hash(row) — what torture.py records after
each commit and what a restored copy is compared with.

usage: digest.py FILE...   (prints one JSON object: file -> state, or
{"error": message} for a file DuckDB will not open)
"""

import json
import sys

import duckdb


def state(c):
    out = {}
    names = [r[0] for r in c.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    for name in names:
        n, h = c.execute(f'SELECT count(*), coalesce(sum(hash(x)), 0)::VARCHAR FROM "{name}" AS x').fetchone()
        out[name] = [n, h]
    return out


def main():
    res = {}
    for f in sys.argv[1:]:
        try:
            c = duckdb.connect(f, read_only=True); c.execute('SET enable_progress_bar = false')
            has_seq = c.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'seq'").fetchone()[0]
            seq = c.execute("SELECT max(n) FROM seq").fetchone()[0] if has_seq else None
            res[f] = {"seq": seq, "state": state(c)}
            c.close()
        except Exception as e:  # noqa: BLE001
            res[f] = {"error": str(e)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
