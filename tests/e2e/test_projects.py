"""Several projects on one machine, and one truth about the mode: the real
daemons, the real client, an app holding a read-write connection."""

import logging
import os
import pathlib
import sys

import duckdb
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import app  # noqa: E402
from conftest import Daemon  # noqa: E402
from ducksnap import Client, RequestFailed, WrongDatabase, database_of, with_snapshot  # noqa: E402


@pytest.fixture
def two_projects(tmp_path):
    """Two projects, each with its daemon on a per-project socket in one
    runtime directory (what ``ducksnap@<project>.service`` sets up)."""
    runtime = tmp_path / "runtime"
    daemons = []
    for name in ("shop", "blog"):
        (tmp_path / name).mkdir()
        daemons.append(Daemon(tmp_path / name, socket_path=str(runtime / "ducksnap" / f"{name}.sock")))
    yield runtime, daemons
    for d in daemons:
        d.stop()


def test_each_project_snapshots_its_own_database(two_projects):
    runtime, (shop, blog) = two_projects
    env = {"XDG_RUNTIME_DIR": str(runtime)}  # no DUCKSNAP_SOCKET: the client finds its daemon
    cons = {}
    for d in (shop, blog):
        cons[d] = duckdb.connect(str(d.db))
        app.create_schema(cons[d])
        assert database_of(cons[d]) == str(d.db)
    for d, customer in ((shop, 1), (blog, 2)):
        guard = with_snapshot(reason="pre-delete", label=f"delete {customer}", client=Client(env=env), connection=cons[d])
        with guard as snap:
            app.delete_customer(cons[d], customer)
        assert snap is not None and snap["database"]["path"] == str(d.db), snap
        assert app.counts(cons[d], customer) == (0, 0)
    for d, customer in ((shop, 1), (blog, 2)):
        listed = Client(socket_path=str(d.socket), env={}).list_snapshots()
        assert [s["label"] for s in listed] == [f"delete {customer}"], listed
    for c in cons.values():
        c.close()


def test_a_client_pointed_at_another_projects_daemon_refuses(two_projects):
    runtime, (shop, blog) = two_projects
    con = duckdb.connect(str(blog.db))
    app.create_schema(con)
    wrong = Client(socket_path=str(shop.socket), env={})
    with pytest.raises(WrongDatabase, match="protects"):
        app.protected_delete(con, 9, client=wrong)
    assert app.counts(con, 9) == (1, 20), "the delete must not run unprotected"
    # A cloud signal in the app's environment does not turn that into a
    # silent "backups disabled": a daemon answered, this is a developer machine.
    headless = Client(socket_path=str(shop.socket), env={"STREAMLIT_SERVER_HEADLESS": "true"})
    with pytest.raises(WrongDatabase):
        app.protected_delete(con, 9, client=headless)
    assert app.counts(con, 9) == (1, 20)
    # Even on_error="warn" does not pretend: the warning names the mismatch.
    with pytest.warns(RuntimeWarning, match="protects"):
        app.protected_delete(con, 9, client=wrong, on_error="warn")
    assert Client(socket_path=str(shop.socket), env={}).list_snapshots() == [], "nothing of blog's went to shop"
    # $DUCKSNAP_DATABASE names the database when there is no connection.
    with pytest.raises(WrongDatabase):
        Client(socket_path=str(shop.socket), env={"DUCKSNAP_DATABASE": str(blog.db)}).snapshot("pre-delete")
    # Both daemons keep serving.
    for d in (shop, blog):
        assert Client(socket_path=str(d.socket), env={}).call({"op": "ping"}) == "pong"
    con.close()


def test_no_daemon_protects_the_database(tmp_path, two_projects):
    runtime, _ = two_projects
    other = tmp_path / "third.duckdb"
    con = duckdb.connect(str(other))
    app.create_schema(con)
    with pytest.raises(WrongDatabase) as e:
        app.protected_delete(con, 3, client=Client(env={"XDG_RUNTIME_DIR": str(runtime)}))
    assert "shop.sock" in str(e.value) and "blog.sock" in str(e.value), e.value
    assert app.counts(con, 3) == (1, 20)
    con.close()


@pytest.fixture
def auto_daemon(tmp_path):
    d = Daemon(tmp_path, config_extra="")
    text = d.config.read_text()
    assert "mode =" not in text  # auto: the daemon's clean environment says local
    yield d
    d.stop()


@pytest.mark.parametrize("signal", [{"STREAMLIT_SERVER_HEADLESS": "true"}, {"STREAMLIT_SHARING_MODE": "1"}])
def test_the_daemons_local_mode_wins_over_the_apps_signals(auto_daemon, signal):
    con = duckdb.connect(str(auto_daemon.db))
    app.create_schema(con)
    client = Client(socket_path=str(auto_daemon.socket), env=signal)
    assert client.decide_mode()["source"] == "daemon"
    assert not client.cloud
    snap = with_snapshot(client=client, connection=con)
    with snap as taken:
        app.delete_customer(con, 4)
    assert taken is not None and taken["reason"] == "pre-delete", taken
    con.close()


def test_ducksnap_mode_cloud_turns_it_off_with_a_warning(auto_daemon, caplog):
    con = duckdb.connect(str(auto_daemon.db))
    app.create_schema(con)
    client = Client(socket_path=str(auto_daemon.socket), env={"DUCKSNAP_MODE": "cloud"})
    with caplog.at_level(logging.WARNING, logger="ducksnap"):
        with with_snapshot(client=client, connection=con) as taken:
            app.delete_customer(con, 5)
    assert taken is None
    assert app.counts(con, 5) == (0, 0), "the operation ran"
    assert any("socket exists" in r.getMessage() for r in caplog.records), caplog.records
    assert Client(socket_path=str(auto_daemon.socket), env={}).list_snapshots() == []
    with pytest.raises(ValueError, match="DUCKSNAP_MODE"):
        Client(socket_path=str(auto_daemon.socket), env={"DUCKSNAP_MODE": "sometimes"}).cloud
    con.close()


def test_the_cli_agrees_whatever_the_shell_says(auto_daemon):
    con = duckdb.connect(str(auto_daemon.db))
    app.create_schema(con)
    con.close()
    snap = Client(socket_path=str(auto_daemon.socket), env={}).snapshot("pre-delete")
    shell = dict(auto_daemon.env, STREAMLIT_SHARING_MODE="1")
    del shell["NOTIFY_SOCKET"]
    import json
    import subprocess
    from conftest import ducksnap_bin

    def cli(*args):
        return subprocess.run([ducksnap_bin(), "--config", str(auto_daemon.config), *args], env=shell, cwd=str(auto_daemon.tmp), capture_output=True, text=True)

    listed = json.loads(cli("list", "--json").stdout)
    assert [s["id"] for s in listed] == [snap["id"]]
    pruned = json.loads(cli("prune", "--dry-run", "--json").stdout)
    assert pruned["disabled"] is False
    out = cli("restore", snap["id"], "--yes")
    assert out.returncode == 0, out.stderr
    assert cli("status").stdout.startswith("mode:          local")
