"""Opens DB read-write, commits one row, closes it (which checkpoints, so
the WAL goes and the daemon wants a base snapshot), waits a random
0-300 ms and opens it again, N times. An open refused with DuckDB's lock
error is counted and tried again 10 ms later. Prints
{"opens": N, "refused": count, "errors": [first messages]}.

usage: reopen.py DB N SEED
"""

import json
import random
import sys
import time

import duckdb


def main():
    db, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    refused, errors = 0, []
    for i in range(n):
        while True:
            try:
                c = duckdb.connect(db); c.execute('SET enable_progress_bar = false')
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise
                refused += 1
                if len(errors) < 3:
                    errors.append(str(e))
                time.sleep(0.01)
        c.execute("CREATE TABLE IF NOT EXISTS r (i BIGINT)")
        c.execute("INSERT INTO r VALUES (?)", [i])
        c.close()
        time.sleep(rng.random() * 0.3)
    print(json.dumps({"opens": n, "refused": refused, "errors": errors}))


if __name__ == "__main__":
    main()
