"""Commits N one-row transactions (`INSERT INTO seq VALUES (k)`, k = 1..N)
as fast as DuckDB acknowledges them, never checkpointing, so that one WAL
generation holds thousands of commit boundaries; after each commit returns
it appends `{"seq": k, "t": time}` to LOG. After PAUSE commits it waits
until the file LOG.go exists, having printed `paused` (the test restarts the daemon meanwhile),
holding its read-write connection. Exits without closing, as a crash
would, so the WAL stays as written.

usage: many_commits.py DB LOG N PAUSE
"""

import json
import os
import sys
import time

import duckdb


def main():
    db, log, n, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = duckdb.connect(db); c.execute('SET enable_progress_bar = false')
    c.execute("SET checkpoint_threshold = '10GB'")
    out = open(log, "a", buffering=1)
    for k in range(1, n + 1):
        c.execute("INSERT INTO seq VALUES (?)", [k])
        out.write(json.dumps({"seq": k, "t": time.time()}) + "\n")
        if k == pause:
            print("paused", flush=True)
            while not os.path.exists(log + ".go"):
                time.sleep(0.05)
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
