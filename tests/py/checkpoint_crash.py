"""An app that crashes in the middle of a checkpoint, leaving a real
`.wal.checkpoint`: a 3M-row table, an update left in the WAL, then a
CHECKPOINT while a second cursor commits one-row inserts; the writer logs
each commit after it returns (LOG: one JSON line per commit) and, once it
sees the `.wal.checkpoint` DuckDB writes them to, SIGKILLs the process
DELAY_MS later (as an out-of-memory kill would).

usage: checkpoint_crash.py DB LOG DELAY_MS
"""

import json
import os
import signal
import sys
import threading
import time

import duckdb

db, log_path, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]) / 1000
c = duckdb.connect(db)
c.execute("SET checkpoint_threshold = '10GB'")
c.execute("CREATE TABLE big AS SELECT range AS i, md5(range::VARCHAR) AS v FROM range(3000000)")
c.execute("CREATE TABLE small (k BIGINT)")
c.execute("CHECKPOINT")
c.execute("UPDATE big SET v = v || 'x' WHERE i % 3 = 0")
log = open(log_path, "a", buffering=1)


def writer():
    w = c.cursor()
    k, seen = 0, None
    while True:
        k += 1
        w.execute("INSERT INTO small VALUES (?)", [k])
        log.write(json.dumps({"k": k}) + "\n")
        if seen is None and os.path.exists(db + ".wal.checkpoint"):
            seen = time.time()
        if seen is not None and time.time() - seen >= delay:
            os.kill(os.getpid(), signal.SIGKILL)


threading.Thread(target=writer, daemon=True).start()
time.sleep(0.2)
c.execute("CHECKPOINT")
# The checkpoint ended before the writer saw its file: no crash inside it.
os._exit(3)
