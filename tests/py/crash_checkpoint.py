"""An app that dies in the middle of a checkpoint while another thread commits.

usage: crash_checkpoint.py DB MODE ROWS
  MODE abort: `SET debug_checkpoint_abort='before_wal_finish'` makes the
              checkpoint fail after its data is written but before the
              checkpoint WAL is moved over the WAL; then the process exits
              at once (os._exit), as if killed.
  MODE kill:  checkpoints in a loop (each after a large UPDATE) until the
              parent kills it with SIGKILL; prints "ready" first.
  MODE plain: (duckdb 1.4, which has no checkpoint WAL) commits and
              checkpoints in a loop until killed.
The committing thread inserts 1, 2, 3, … into c, one per transaction.
"""
import os
import sys
import threading
import time

import duckdb

path, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect(path); con.execute('SET enable_progress_bar = false')
con.execute("CREATE TABLE IF NOT EXISTS big(i BIGINT, v DOUBLE)")
con.execute("CREATE TABLE IF NOT EXISTS c(id BIGINT)")
if con.execute("SELECT count(*) FROM big").fetchone()[0] == 0:
    con.execute(f"INSERT INTO big SELECT range, random() FROM range({rows})")
con.execute("CHECKPOINT")
start = con.execute("SELECT coalesce(max(id), 0) FROM c").fetchone()[0]
stop = threading.Event()


def committer():
    w = con.cursor()
    i = start
    while not stop.is_set():
        i += 1
        if mode != "abort":
            time.sleep(0.001)  # let the checkpoints start between commits
        try:
            w.execute("INSERT INTO c VALUES (?)", [i])
        except duckdb.TransactionException:
            i -= 1  # a conflict with the checkpoint: not committed, try again
        except Exception:
            return


t = threading.Thread(target=committer, daemon=True)
if mode == "abort":
    con.execute("UPDATE big SET v = v + 1")
    con.execute("SET debug_checkpoint_abort='before_wal_finish'")
    t.start()
    time.sleep(0.02)
    for _ in range(200):
        try:
            con.execute("CHECKPOINT")
        except duckdb.TransactionException:
            continue  # "other write transactions active": try again
        except Exception:
            break  # the debug abort
    os._exit(0)
print("ready", flush=True)
t.start()
while True:
    con.execute("UPDATE big SET v = v + 1")
    try:
        con.execute("CHECKPOINT")
    except duckdb.TransactionException:
        pass  # "other write transactions active"
