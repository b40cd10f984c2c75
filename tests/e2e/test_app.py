"""End to end: the real daemon, a real Python app on duckdb holding a
read-write connection, the ducksnap Python client."""

import os
import pathlib
import struct
import subprocess
import sys
import warnings

import duckdb
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import app  # noqa: E402
from conftest import Daemon  # noqa: E402
from ducksnap import BackupsDisabled, Client, DaemonUnavailable, with_snapshot  # noqa: E402

CLEAN = {}  # an environment with no cloud signal


def test_cascade_delete_is_protected_and_restorable(daemon):
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    con = duckdb.connect(str(daemon.db))  # the app's read-write connection, held throughout
    app.create_schema(con)
    assert app.counts(con, 7) == (1, 20)

    app.protected_delete(con, 7, client=client)
    assert app.counts(con, 7) == (0, 0), "the delete ran"

    snaps = client.list_snapshots()
    pre = [s for s in snaps if s["reason"] == "pre-delete"]
    assert len(pre) == 1, snaps
    assert pre[0]["label"] == "delete customer 7"
    assert pre[0]["verified"] is True

    # While the app holds the database, restore is refused with the PID.
    with pytest.raises(Exception) as refused:
        client.restore(pre[0]["id"])
    assert getattr(refused.value, "code", "") == "in_use"
    assert str(os.getpid()) in str(refused.value)

    con.close()
    result = client.restore(pre[0]["id"])
    assert result["pre_restore"], result
    con = duckdb.connect(str(daemon.db))
    assert app.counts(con, 7) == (1, 20), "the deleted rows are back"
    con.close()


def test_context_manager_form(daemon):
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    con = duckdb.connect(str(daemon.db))
    app.create_schema(con)
    with with_snapshot(reason="pre-delete", label="bulk cleanup", client=client, connection=con) as snap:
        assert snap["reason"] == "pre-delete" and snap["label"] == "bulk cleanup"
        con.execute("DELETE FROM orders")
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    con.close()


def test_cloud_environment_runs_without_snapshot(tmp_path):
    # No daemon at all, and the client sees a cloud signal: not an error.
    client = Client(socket_path=str(tmp_path / "none.sock"), env={"STREAMLIT_SHARING_MODE": "1"})
    con = duckdb.connect(str(tmp_path / "app.duckdb"))
    app.create_schema(con)
    app.protected_delete(con, 3, client=client)  # on_error="raise", yet no error
    assert app.counts(con, 3) == (0, 0)
    assert client.list_snapshots() == []
    assert client.snapshot("pre-delete") is None
    with pytest.raises(BackupsDisabled):
        client.restore("20260101T000000Z-0000")
    for env in ({"DATABASE_MODE": "motherduck"}, {"STREAMLIT_SERVER_HEADLESS": "true"}, {"DUCKSNAP_DATABASE": "md:app"}):
        assert Client(socket_path="/nonexistent", env=env).cloud, env


def test_daemon_in_cloud_mode_reports_disabled(cloud_daemon):
    # The client sees no signal itself; the daemon says disabled.
    client = Client(socket_path=str(cloud_daemon.socket), env=CLEAN)
    con = duckdb.connect(str(cloud_daemon.db))
    app.create_schema(con)
    app.protected_delete(con, 4, client=client)
    assert app.counts(con, 4) == (0, 0)
    assert client.list_snapshots() == []
    with pytest.raises(BackupsDisabled):
        client.restore("20260101T000000Z-0000")
    assert not (cloud_daemon.tmp / "data" / "backups").exists()


def test_daemon_down(tmp_path):
    client = Client(socket_path=str(tmp_path / "down.sock"), env=CLEAN)
    con = duckdb.connect(str(tmp_path / "app.duckdb"))
    app.create_schema(con)
    with pytest.raises(DaemonUnavailable):
        app.protected_delete(con, 5, client=client)
    assert app.counts(con, 5) == (1, 20), "raise: the delete must not run without its safety net"
    with pytest.warns(RuntimeWarning, match="without a snapshot"):
        app.protected_delete(con, 5, client=client, on_error="warn")
    assert app.counts(con, 5) == (0, 0), "warn: the delete ran"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.protected_delete(con, 6, client=client, on_error="skip")
    assert app.counts(con, 6) == (0, 0)


def _page(socket_path, env, db):
    import page_app  # tests/e2e is on sys.path (above)
    from ducksnap import Client

    page_app.main(db, Client(socket_path=socket_path, env=env, database=db))


def _apptest(*args):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # one process, many databases: no connection from an earlier test
    return AppTest.from_function(_page, args=args, default_timeout=60)


def _orders(at):
    return [m.value for m in at.markdown if m.value.startswith("orders in the database")]


def test_streamlit_page_local(daemon):
    con = duckdb.connect(str(daemon.db))
    app.create_schema(con)
    con.close()
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    client.snapshot("manual", label="first")
    at = _apptest(str(daemon.socket), CLEAN, str(daemon.db)).run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == ["Backups"]
    assert len(at.table) == 1
    assert at.table[0].value["size"][0].endswith("MiB"), at.table[0].value
    assert list(at.table[0].value.columns) == ["taken", "age", "reason", "label", "size", "new", "pinned", "verified", "id"]
    at.button(key="ducksnap_backup_now").click().run()
    assert not at.exception, at.exception
    assert any("created" in s.value for s in at.success)
    assert len(client.list_snapshots()) == 2
    # The app's own delete: a pre-delete snapshot, then the rows are gone.
    at.button(key="app_delete").click().run()
    assert not at.exception, at.exception
    assert _orders(at) == ["orders in the database: **980**"], _orders(at)
    newest_pre_delete = [s for s in client.list_snapshots() if s["reason"] == "pre-delete"][0]
    picker = at.selectbox(key="ducksnap_restore_id")
    assert picker.value == newest_pre_delete["id"], "the newest pre-delete is preselected"
    assert "pre-delete · delete customer 7 · " in picker.format_func(picker.value)
    # Restore needs the confirmation box; the app holds its cached connection.
    assert at.button(key="ducksnap_restore").disabled
    at.checkbox(key=f"ducksnap_restore_confirm_{picker.value}_0").check().run()
    at.button(key="ducksnap_restore").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Restored the snapshot of" in s.value for s in at.success), [s.value for s in at.success]
    assert _orders(at) == ["orders in the database: **1000**"], "the app shows the restored state"
    reasons = list(at.table[0].value["reason"])
    assert len(reasons) == len(client.list_snapshots()), "the table is refreshed"


def test_streamlit_page_time_travel(daemon):
    """Changes since a snapshot (diff ID live) and a table as CSV."""
    con = duckdb.connect(str(daemon.db))
    app.create_schema(con)
    con.close()
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    client.snapshot("manual", label="first")
    at = _apptest(str(daemon.socket), CLEAN, str(daemon.db)).run()
    at.button(key="app_delete").click().run()
    assert not at.exception, at.exception
    pre = [s for s in client.list_snapshots() if s["reason"] == "pre-delete"][0]
    assert at.selectbox(key="ducksnap_diff_id").value == pre["id"], "the newest pre-delete is preselected"
    at.button(key="ducksnap_diff").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    changes = [d.value for d in at.table if "change" in d.value.columns]
    assert changes, "the changes table is shown"
    got = {r["table"]: (r["change"], r["rows then"], r["rows now"]) for r in changes[0].to_dict("records")}
    assert got == {"customers": ("changed", 50, 49), "orders": ("changed", 1000, 980)}, got
    # The rows themselves, against what the app's delete removed, read by
    # DuckDB from the snapshot (the app holds the live file in this process).
    at.selectbox(key=f"ducksnap_rows_table_{pre['id']}").select("orders").run()
    assert not at.exception, at.exception
    with client.snapshot_copy(pre["id"]) as copy:
        truth = duckdb.connect(copy, read_only=True)
        removed = truth.execute("SELECT * FROM orders WHERE customer_id = 7 ORDER BY id").fetchall()
        truth.close()
    assert len(removed) == 20
    said = [m.value for m in at.markdown]
    assert "**Removed rows: 20**" in said and "**Added rows: 0**" in said, said
    shown = [t.value for t in at.table if list(t.value.columns) == ["id", "customer_id", "amount"]]
    assert len(shown) == 1, [list(t.value.columns) for t in at.table]
    rows = sorted(tuple(str(v) for v in r) for r in shown[0].itertuples(index=False))
    assert rows == sorted(tuple(str(v) for v in r) for r in removed), (rows[:3], removed[:3])
    # The table as it was in the pre-delete snapshot, as CSV.
    at.selectbox(key="ducksnap_export_table").select("orders").run()
    at.button(key="ducksnap_export").click().run()
    assert not at.exception, at.exception
    name, data = at.session_state["ducksnap_csv"]
    assert name == f"orders-{pre['id']}.csv"
    lines = data.decode().splitlines()
    assert lines[0] == "id,customer_id,amount" and len(lines) == 1001, lines[:3]
    # A snapshot other than the preselected one stays chosen while its
    # changes are looked at (the diff snapshot that takes is not "new").
    first = [s for s in client.list_snapshots() if s["reason"] == "manual"][0]
    at.selectbox(key="ducksnap_diff_id").select(first["id"]).run()
    at.button(key="ducksnap_diff").click().run()
    assert at.selectbox(key="ducksnap_diff_id").value == first["id"]
    assert any(t.value.get("change") is not None for t in at.table), "the changes since the first snapshot are shown"
    # Right after the snapshot nothing changed.
    at.selectbox(key="ducksnap_diff_id").select(client.list_snapshots()[0]["id"]).run()
    at.button(key="ducksnap_diff").click().run()
    assert any("No changes" in s.value for s in at.success), [s.value for s in at.success]


def test_streamlit_page_cloud(tmp_path):
    db = tmp_path / "app.duckdb"
    con = duckdb.connect(str(db))
    app.create_schema(con)
    con.close()
    at = _apptest(str(tmp_path / "none.sock"), {"STREAMLIT_SHARING_MODE": "1"}, str(db)).run()
    assert not at.exception, at.exception
    text = " ".join(i.value for i in at.info)
    assert "not available" in text and "MotherDuck" in text and "CREATE SNAPSHOT" in text
    assert [b.key for b in at.button] == ["app_delete"], "no backup buttons in cloud mode"
    assert any(m.value.startswith("footer") for m in at.markdown), "the rest of the app still renders"


PY14 = os.environ.get("DUCKSNAP_PY14") or str(pathlib.Path(__file__).resolve().parents[2] / ".venv-duckdb14" / "bin" / "python")


def py14(code, *args):
    out = subprocess.run([PY14, "-c", code, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_version_skew_duckdb_14_app(daemon):
    """The app on duckdb 1.4 while ducksnap bundles 2.0: snapshot and restore
    are byte copies; the restored file still opens in 1.4."""
    assert py14("import duckdb; print(duckdb.__version__)").startswith("1.4.")
    db = str(daemon.db)
    py14(
        "import duckdb,sys\nc=duckdb.connect(sys.argv[1])\n"
        "c.execute('create table t as select range i from range(10000)')\nc.close()",
        db,
    )
    client = Client(socket_path=str(daemon.socket), env=CLEAN)
    snap = client.snapshot("pre-delete", label="1.4 app")
    assert snap["database"]["header_version"] == 64
    py14("import duckdb,sys\nc=duckdb.connect(sys.argv[1])\nc.execute('delete from t where i < 5000')\nc.close()", db)
    assert py14("import duckdb,sys\nprint(duckdb.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])", db) == "5000"
    client.restore(snap["id"])
    with open(db, "rb") as f:
        head = f.read(20)
    assert head[8:12] == b"DUCK" and struct.unpack("<Q", head[12:20])[0] == 64, "the file was rewritten in a newer format"
    assert py14("import duckdb,sys\nprint(duckdb.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])", db) == "10000"


def test_something_else_on_the_socket(tmp_path):
    import socket
    import threading

    path = str(tmp_path / "other.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def answer():
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(DaemonUnavailable, match="does not answer like a ducksnap daemon"):
        Client(socket_path=path, env=CLEAN).snapshot("pre-delete")
    t.join()
    srv.close()


def test_daemon_down_advice_follows_init(tmp_path):
    """The advice when no daemon answers is the project's: the socket and
    unit `ducksnap init --systemd` wrote (also when a stale socket file is
    left there), `ducksnap --config … daemon` without a unit, `ducksnap
    init` without a config — each said once, in the error with_snapshot
    raises before the delete runs."""
    import socket

    from conftest import ducksnap_bin

    project = tmp_path / "myapp"
    (project / "data").mkdir(parents=True)
    db = project / "data" / "app.duckdb"
    con = duckdb.connect(str(db))
    app.create_schema(con)
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    nothing = Client(env=env, cwd=str(project), database=str(db))
    with pytest.raises(DaemonUnavailable) as e:
        app.protected_delete(con, 7, client=nothing)
    assert str(e.value).count("ducksnap init --systemd") == 1, e.value
    con.close()
    out = subprocess.run([ducksnap_bin(), "init"], cwd=str(project), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sock = runtime / "ducksnap" / "myapp.sock"
    con = duckdb.connect(str(db))
    with pytest.raises(DaemonUnavailable) as e:
        app.protected_delete(con, 7, client=Client(env=env, cwd=str(project), database=str(db)))
    assert f"no ducksnap daemon answers on {sock} (start it: ducksnap --config {project / 'ducksnap.toml'} daemon" in str(e.value), e.value
    con.close()
    out = subprocess.run([ducksnap_bin(), "init", "--systemd", "--force"], cwd=str(project), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # A stale socket file: bound once, nobody listening now.
    sock.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    con = duckdb.connect(str(db))
    with pytest.raises(DaemonUnavailable) as e:
        app.protected_delete(con, 7, client=Client(env=env, cwd=str(project), database=str(db)))
    said = str(e.value)
    assert str(sock) in said and said.count("systemctl --user start ducksnap-myapp.service") == 1, said
    assert "/tmp/ducksnap-" not in said and "start ducksnap)" not in said, said
    # An app started from another directory: found beside its database.
    elsewhere = Client(env=env, cwd=str(tmp_path), database=str(db))
    with pytest.raises(DaemonUnavailable) as e:
        app.protected_delete(con, 7, client=elsewhere)
    assert str(e.value).count("systemctl --user start ducksnap-myapp.service") == 1, e.value
    assert app.counts(con, 7) == (1, 20), "the delete did not run"
    con.close()


def test_with_snapshot_gets_a_marker_when_the_daemon_archives_the_wal(tmp_path):
    """With [continuous] on, with_snapshot(connection=…) does not checkpoint
    and the daemon answers with a marker on the archived WAL; restoring it
    gives back exactly the rows the delete removed."""
    d = Daemon(tmp_path, config_extra="[continuous]\nenabled = true\n")
    try:
        client = Client(socket_path=str(d.socket), env=CLEAN)
        con = duckdb.connect(str(d.db))
        app.create_schema(con)
        before = con.execute("SELECT count(*) FROM orders").fetchone()[0]
        assert before > 0
        # The app goes on committing after a checkpoint; the daemon takes
        # the base image of that checkpoint (wait until a commit of the new
        # WAL is a restore point: the archive is then current).
        import datetime
        import json
        import time

        con.execute("CHECKPOINT")
        t0 = datetime.datetime.now(datetime.timezone.utc)
        con.execute("INSERT INTO customers VALUES (1000, 'late')")
        deadline = time.time() + 30
        while time.time() < deadline:
            listing = json.loads(d.cli("list", "--commits", "--json").stdout)
            seen = [p for p in listing["points"] if p["kind"] == "commit"]
            if any(datetime.datetime.fromisoformat(p["at"].replace("Z", "+00:00")[:26] + "+00:00") >= t0 for p in seen):
                break
            time.sleep(0.1)
        with with_snapshot(reason="pre-delete", label="drop orders", client=client, connection=con) as snap:
            con.execute("DELETE FROM orders")
        assert "@" in snap["id"], f"a marker (a commit restore point), not a snapshot: {snap}"
        assert snap["reason"] == "pre-delete" and snap["label"] == "drop orders"
        out = tmp_path / "before.duckdb"
        client.restore(snap["id"], to=str(out), check=True)
        got = duckdb.connect(str(out), read_only=True).execute("SELECT count(*) FROM orders").fetchone()[0]
        assert got == before
        # The app takes the rows back from a copy of the marker, with its
        # own connection (the copy is a database file and its WAL, read-only).
        with client.snapshot_copy(snap["id"]) as path:
            con.execute(f"ATTACH '{path}' AS old (READ_ONLY)")
            con.execute("INSERT INTO orders SELECT * FROM old.orders")
            con.execute("DETACH old")
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == before
        # By time: the state as of the marker's commit (the newest commit
        # seen at or before it), written to a file.
        at_time = tmp_path / "as-of.duckdb"
        client.restore(as_of=snap["created_at"], to=str(at_time))
        got = duckdb.connect(str(at_time), read_only=True).execute("SELECT count(*) FROM orders").fetchone()[0]
        assert got == before
        con.close()
    finally:
        d.stop()
