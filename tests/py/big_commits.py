"""Commits N transactions of 10,000 rows each (small enough to go into the
WAL, not optimistic writes) without checkpointing, so that one WAL holds
several archive segments; after each commit logs its sequence number and
the state of every table, as torture.py does. Exits without closing.

usage: big_commits.py DB LOG N
"""

import json
import os
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(__file__))
from digest import state  # noqa: E402


def main():
    db, log, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = duckdb.connect(db); c.execute('SET enable_progress_bar = false')
    c.execute("SET checkpoint_threshold = '10GB'")
    c.execute("CREATE TABLE IF NOT EXISTS seq (n BIGINT)")
    c.execute("CREATE TABLE IF NOT EXISTS t (i BIGINT, v VARCHAR)")
    out = open(log, "a", buffering=1)
    for k in range(1, n + 1):
        c.execute("BEGIN")
        c.execute("INSERT INTO seq VALUES (?)", [k])
        c.execute("INSERT INTO t SELECT ? * 100000 + range, md5(range::VARCHAR || ?) FROM range(10000)", [k, k])
        c.execute("COMMIT")
        t = time.time()
        out.write(json.dumps({"seq": k, "t": t, "state": state(c)}) + "\n")
    os._exit(0)


if __name__ == "__main__":
    main()
