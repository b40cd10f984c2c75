"""A stand-in for the application: holds a read-write DuckDB connection and
runs invariant-preserving transactions until a stop file appears.

Invariants every consistent state satisfies:
  * sum(accounts.balance) = 0                      (transfers move money)
  * counter.n = count(*) of log = max(log.seq)     (one log row per transfer)
  * count(*) of bulk = ROWS * count(DISTINCT batch) (bulk batches are atomic)
Mixed in: explicit CHECKPOINTs and bulk inserts large enough that DuckDB
writes their row groups straight to the database file before commit.

usage: live_writer.py DB STOP_FILE [CHECKPOINT_EVERY] [BULK_EVERY] [PAD_MB]
PAD_MB grows the database first with a table of that many MB of random
doubles (untouched afterwards), for captures of a large file.
"""
import os
import random
import sys
import time

import duckdb

ROWS = 150_000

path, stop = sys.argv[1], sys.argv[2]
checkpoint_every = int(sys.argv[3]) if len(sys.argv) > 3 else 40
bulk_every = int(sys.argv[4]) if len(sys.argv) > 4 else 150
pad_mb = int(sys.argv[5]) if len(sys.argv) > 5 else 0

con = duckdb.connect(path); con.execute('SET enable_progress_bar = false')
con.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance BIGINT)")
con.execute("INSERT INTO accounts SELECT range, 0 FROM range(500)")
con.execute("CREATE TABLE counter(n BIGINT)")
con.execute("INSERT INTO counter VALUES (0)")
con.execute("CREATE TABLE log(seq BIGINT, a INTEGER, b INTEGER, amount BIGINT)")
con.execute("CREATE TABLE bulk(batch BIGINT, i BIGINT, payload DOUBLE)")
if pad_mb:
    con.execute(f"CREATE TABLE pad AS SELECT random() AS x FROM range({pad_mb * 1024 * 1024 // 8})")
con.execute("CHECKPOINT")
print("ready", flush=True)

rnd = random.Random(42)
seq = 0
batches = 0
while not os.path.exists(stop):
    seq += 1
    a, b, amount = rnd.randrange(500), rnd.randrange(500), rnd.randrange(1, 100)
    con.execute("BEGIN")
    con.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", [amount, a])
    con.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", [amount, b])
    con.execute("UPDATE counter SET n = n + 1")
    con.execute("INSERT INTO log VALUES (?, ?, ?, ?)", [seq, a, b, amount])
    con.execute("COMMIT")
    if seq % bulk_every == 0:
        batches += 1
        con.execute("BEGIN")
        con.execute(f"INSERT INTO bulk SELECT {batches}, range, random() FROM range({ROWS})")
        con.execute("COMMIT")
        if batches % 4 == 0:
            # keep the file from growing without bound
            con.execute(f"DELETE FROM bulk WHERE batch <= {batches - 2}")
    if seq % checkpoint_every == 0:
        con.execute("CHECKPOINT")
    time.sleep(0.001)

print(f"done seq={seq} batches={batches}", flush=True)
con.close()
