"""Time travel end to end: the app's cascade delete, then `diff` against
live and `snapshot_copy` to put back exactly the rows it removed — with the
real daemon, the app holding its read-write connection throughout."""

import pathlib
import subprocess
import sys

import duckdb

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import app  # noqa: E402
from conftest import ducksnap_bin  # noqa: E402
from ducksnap import Client, RequestFailed  # noqa: E402

CLEAN = {}


def rows(con, sql):
    return sorted(con.execute(sql).fetchall())


def test_cascade_delete_diff_and_exact_row_recovery(daemon):
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    con = duckdb.connect(str(daemon.db))  # held read-write throughout
    app.create_schema(con)
    con.execute("ALTER TABLE orders ADD PRIMARY KEY (id)")
    before_orders = rows(con, "SELECT * FROM orders")
    deleted = rows(con, "SELECT * FROM orders WHERE customer_id = 42")
    deleted_customer = rows(con, "SELECT * FROM customers WHERE id = 42")
    assert len(deleted) == 20

    app.protected_delete(con, 42, client=client)
    # The app keeps working: new orders after the delete.
    con.execute("INSERT INTO orders VALUES (100000, 1, 7.5), (100001, 2, 8.5)")
    later = [(100000, 1, 7.5), (100001, 2, 8.5)]
    pre = client.list_snapshots()[0]
    assert pre["reason"] == "pre-delete"

    d = client.diff(pre["id"], "live", table="orders", key=["id"], limit=100)
    assert d["rows"]["removed"] == 20 and d["rows"]["added"] == 2 and d["rows"]["changed"] == 0
    got_removed = sorted((int(r[0]), int(r[1]), float(r[2])) for r in d["rows"]["removed_rows"])
    assert got_removed == deleted
    got_added = sorted((int(r[0]), int(r[1]), float(r[2])) for r in d["rows"]["added_rows"])
    assert got_added == later
    summary = {t["table"]: t for t in d["tables"]}
    assert summary["customers"]["rows_before"] == 50 and summary["customers"]["rows_after"] == 49
    # The same through the CLI, as CSV.
    out = daemon.cli("diff", "latest:pre-delete", "--table", "orders", "--key", "id", "--format", "csv", "--limit", "5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "change,id,customer_id,amount"
    assert sum(1 for x in lines if x.startswith("removed,")) == 5

    # Exactly those rows back, with the app's own connection.
    with client.snapshot_copy("latest:pre-delete") as path:
        con.execute(f"ATTACH '{path}' AS old (READ_ONLY)")
        con.execute("INSERT INTO customers SELECT * FROM old.customers WHERE id = 42")
        con.execute("INSERT INTO orders SELECT * FROM old.orders WHERE customer_id = 42")
        con.execute("DETACH old")
        copy_dir = pathlib.Path(path).parent
    assert not copy_dir.exists(), "the copy is removed afterwards"
    assert rows(con, "SELECT * FROM orders") == sorted(before_orders + later)
    assert rows(con, "SELECT * FROM customers WHERE id = 42") == deleted_customer
    assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == 50
    # And the diff now says only the later writes differ.
    d = client.diff(pre["id"], table="orders")
    assert (d["rows"]["removed"], d["rows"]["added"]) == (0, 2)
    con.close()


def test_export_and_bad_input_over_the_socket(daemon, tmp_path):
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    con = duckdb.connect(str(daemon.db))
    app.create_schema(con)
    snap = client.snapshot("manual")
    out = tmp_path / "orders.csv"
    r = client.export(snap["id"], table="orders", to=str(out))
    assert r["rows"] == 1000
    # Byte for byte what Python duckdb's COPY writes for the restored file.
    restored = tmp_path / "restored.duckdb"
    client.restore(snap["id"], to=str(restored))
    ref = tmp_path / "ref.csv"
    c2 = duckdb.connect(str(restored), read_only=True)
    c2.execute(f"COPY orders TO '{ref}' (FORMAT csv, HEADER)")
    c2.close()
    assert out.read_bytes() == ref.read_bytes()
    # Hostile and unknown names, an existing file: clear errors, nothing else.
    for bad in ['x"; DROP TABLE customers; --', "nope"]:
        try:
            client.diff(snap["id"], table=bad)
            raise AssertionError("accepted " + bad)
        except RequestFailed as e:
            assert e.code == "invalid_argument" and "no such table" in str(e)
    try:
        client.export(snap["id"], table="orders", to=str(out))
        raise AssertionError("overwrote")
    except RequestFailed as e:
        assert "exists" in str(e)
    assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == 50
    scratch = daemon.db.parent / "backups" / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    con.close()
    assert subprocess.run([ducksnap_bin(), "--version"], capture_output=True).returncode == 0
