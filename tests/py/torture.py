"""The continuous-archiving torture app: commits a seeded random mix of
small transactions, bulk appends large enough for optimistic writes,
UPDATE/DELETE, DDL, explicit checkpoints (and automatic ones, with a small
checkpoint_threshold), each transaction numbering itself in the table
`seq`; after each commit returns it appends one JSON line to LOG: the
sequence number, the time, and the state of every table read from the
data (the ground truth a restore is compared with, see digest.py).
Runs until killed, or for COMMITS commits. With TORTURE_CHECKPOINT_EVERY
(seconds) in its environment it also checkpoints after any commit that
comes that long after the last checkpoint. With TORTURE_BOUNDED=1 a bulk
append first deletes the rows of earlier ones (in its transaction), so
the tables stay small and a commit and its digest stay fast over tens of
thousands of commits (the 10,000-point stress run). With TORTURE_WAL_ONLY=1
it never checkpoints (no explicit CHECKPOINT, a threshold of 10GB, and it
ends with os._exit, as a killed app does), so every commit stays in the
WAL: the workload `rescue` is tested on.

usage: torture.py DB LOG SEED COMMITS [STORAGE_VERSION]
"""

import json
import os
import random
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(__file__))
from digest import state  # noqa: E402


def main():
    db, log, seed, commits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = {}
    if len(sys.argv) > 5:
        config["storage_compatibility_version"] = sys.argv[5]
    c = duckdb.connect(db, config=config); c.execute('SET enable_progress_bar = false')
    wal_only = os.environ.get("TORTURE_WAL_ONLY") == "1"
    c.execute("SET checkpoint_threshold = '10GB'" if wal_only else "SET checkpoint_threshold = '2MB'")
    c.execute("CREATE TABLE IF NOT EXISTS seq (n BIGINT)")
    c.execute("CREATE TABLE IF NOT EXISTS t (i BIGINT, v VARCHAR)")
    n = c.execute("SELECT coalesce(max(n), 0) FROM seq").fetchone()[0]
    rng = random.Random(seed * 1000003 + n)
    out = open(log, "a", buffering=1)
    every = float(os.environ.get("TORTURE_CHECKPOINT_EVERY", "0"))
    bounded = os.environ.get("TORTURE_BOUNDED") == "1"
    last_checkpoint = time.time()
    for _ in range(commits):
        n += 1
        kind = rng.choices(
            ["small", "small", "small", "bulk", "update", "delete", "ddl", "checkpoint", "rollback"],
            weights=[30, 20, 10, 4, 10, 8, 4, 3, 3],
        )[0]
        if wal_only and kind == "checkpoint":
            kind = "small"
        if kind == "rollback":
            c.execute("BEGIN")
            c.execute("INSERT INTO t VALUES (-1, 'never')")
            c.execute("ROLLBACK")
            kind = "small"
        c.execute("BEGIN")
        c.execute("INSERT INTO seq VALUES (?)", [n])
        if kind == "small":
            c.execute("INSERT INTO t VALUES (?, ?)", [n, f"s{n}"])
        elif kind == "bulk":
            if bounded:
                c.execute("DELETE FROM t WHERE i >= 1000000")
            c.execute(
                "INSERT INTO t SELECT CAST(? AS BIGINT) * 1000000 + range, 'b' || range FROM range(?)",
                [n, rng.choice([150_000, 300_000])],
            )
        elif kind == "update":
            c.execute("UPDATE t SET v = v || '.' WHERE i % ? = 0", [rng.randint(2, 50)])
        elif kind == "delete":
            c.execute("DELETE FROM t WHERE i % ? = 1", [rng.randint(5, 80)])
        elif kind == "ddl":
            name = f"d{rng.randint(0, 3)}"
            if c.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0]:
                c.execute(f"DROP TABLE {name}")
            else:
                c.execute(f"CREATE TABLE {name} AS SELECT range AS k, [range, ?] AS l FROM range(?)", [n, rng.randint(1, 500)])
        c.execute("COMMIT")
        # When the commit returned: what the archive's lag is measured from.
        t = time.time()
        st = state(c)
        if kind == "checkpoint" or (every and t - last_checkpoint >= every):
            c.execute("CHECKPOINT")
            last_checkpoint = time.time()
        out.write(json.dumps({"seq": n, "t": t, "state": st}) + "\n")
        if not wal_only:
            time.sleep(rng.random() * 0.02)
    if wal_only:
        out.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
