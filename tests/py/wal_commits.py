"""Commits a mix of transactions to a DuckDB database that never
checkpoints, and after each commit returns records the WAL's size and the
state of every table (row count and a hash of every row, read from the
data): the ground truth the WAL experiments (tests/it/wal.rs) compare with.
Exits without closing, as a crash would, so the WAL stays as written.
Before the bulk insert (written optimistically into the database file),
the database file is copied to before-bulk.duckdb beside OUT.json.

usage: wal_commits.py DB OUT.json [STORAGE_VERSION]
"""

import json
import os
import shutil
import sys

import duckdb

sys.path.insert(0, os.path.dirname(__file__))
from digest import state  # noqa: E402

STEPS = [
    "INSERT INTO t VALUES (1, 'one')",
    "INSERT INTO t SELECT range, 'r' || range FROM range(2, 1000)",
    "UPDATE t SET v = v || '!' WHERE i % 3 = 0",
    "BEGIN; INSERT INTO t VALUES (0, 'rolled back'); ROLLBACK",
    "DELETE FROM t WHERE i % 5 = 0",
    "CREATE TABLE u AS SELECT range AS k, [range, range + 1] AS l FROM range(100)",
    # Large enough for optimistic writes: the rows go to the database file
    # before the commit, the WAL holds pointers to them.
    "INSERT INTO t SELECT range, NULL FROM range(1000, 301000)",
    "ALTER TABLE u ADD COLUMN note VARCHAR",
    "UPDATE u SET note = 'n' || k WHERE k < 50",
    "BEGIN; INSERT INTO t VALUES (-2, 'a'); DELETE FROM u WHERE k = 7; COMMIT",
    "CREATE VIEW w AS SELECT count(*) AS n FROM t",
    "DROP TABLE u",
    "INSERT INTO t VALUES (-1, 'last')",
]


def wal_size(db):
    try:
        return os.path.getsize(db + ".wal")
    except FileNotFoundError:
        return 0


def main():
    db, out = sys.argv[1], sys.argv[2]
    config = {}
    if len(sys.argv) > 3:
        config["storage_compatibility_version"] = sys.argv[3]
    c = duckdb.connect(db, config=config); c.execute('SET enable_progress_bar = false')
    c.execute("SET checkpoint_threshold = '10GB'")
    c.execute("CREATE TABLE t (i BIGINT, v VARCHAR)")
    c.execute("CHECKPOINT")
    record = [{"step": None, "wal": wal_size(db), "state": state(c)}]
    for sql in STEPS:
        if sql.startswith("INSERT INTO t SELECT range, NULL"):
            # The database file as it was before the optimistic write.
            shutil.copyfile(db, os.path.join(os.path.dirname(out), "before-bulk.duckdb"))
        c.execute(sql)
        record.append({"step": sql, "wal": wal_size(db), "state": state(c)})
    with open(out, "w") as f:
        json.dump({"duckdb": duckdb.__version__, "record": record}, f)
        f.flush()
        os.fsync(f.fileno())
    os._exit(0)


if __name__ == "__main__":
    main()
