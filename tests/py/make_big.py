"""Creates a database of realistic mixed tables of at least MIN_MB megabytes.

usage: make_big.py DB ROWS
"""
import sys

import duckdb

path, rows = sys.argv[1], int(sys.argv[2])
con = duckdb.connect(path); con.execute('SET enable_progress_bar = false')
con.execute(f"""
CREATE TABLE events AS
SELECT range AS id,
       TIMESTAMP '2024-01-01' + to_seconds(range) AS at,
       (hash(range) % 1000)::INTEGER AS customer,
       random() AS amount,
       md5(range::VARCHAR) AS token,
       CASE WHEN range % 7 = 0 THEN 'refund' ELSE 'sale' END AS kind
FROM range({rows})
""")
con.execute("CREATE TABLE customers AS SELECT range AS id, 'customer ' || range AS name FROM range(1000)")
con.execute("CHECKPOINT")
con.close()
