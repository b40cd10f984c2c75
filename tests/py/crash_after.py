"""Opens DB read-write, commits one `INSERT INTO t VALUES (v)` per value
given (never checkpointing), then exits without closing, as a crash
would: the WAL stays as written, and the next open replays it and appends
after it.

usage: crash_after.py DB V...
"""

import os
import sys

import duckdb


def main():
    c = duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
    c.execute("SET checkpoint_threshold = '10GB'")
    for v in sys.argv[2:]:
        c.execute("INSERT INTO t VALUES (?)", [int(v)])
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
