"""Runs the shell and Python samples of README.md, docs/USER_GUIDE.md and
docs/DEPLOYMENT.md as written, in order, in a fresh workspace per document.

A block preceded by ``<!-- not-run: reason -->`` is not run here (it needs
something CI does not have: a user systemd session, MotherDuck, a 30-minute
release build); the reason is printed so it stays visible.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import ROOT, Daemon, ducksnap_bin

BLOCK = re.compile(r"(<!-- not-run: (?P<why>[^>]*) -->\n)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks(doc):
    text = (ROOT / doc).read_text()
    return [(m["lang"], m["body"], m["why"]) for m in BLOCK.finditer(text)]


def run_blocks(doc, workspace, env):
    ran = 0
    for lang, body, why in blocks(doc):
        if lang not in ("sh", "python"):
            continue
        if why:
            print(f"{doc}: not run ({why}):\n{body}")
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "sh" else [sys.executable, "-c", body]
        out = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{doc} sample failed ({out.returncode}):\n{body}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        ran += 1
    return ran


def workspace_env(tmp):
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "clients").symlink_to(ROOT / "clients")
    env = {
        "PATH": os.pathsep.join([str(pathlib.Path(ducksnap_bin()).parent), str(pathlib.Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(tmp),
        "DUCKSNAP_SOCKET": str(tmp / "run" / "ducksnap.sock"),
    }
    return env


def write_config(tmp):
    (tmp / "ducksnap.toml").write_text(
        '[database]\npath = "data/app.duckdb"\n[store]\ndir = "data/backups"\nmin_free_space = "1MiB"\n'
        f'[socket]\npath = "{tmp / "run" / "ducksnap.sock"}"\n[schedule]\nenabled = false\n'
    )


def test_user_guide_samples(tmp_path):
    d = Daemon(tmp_path)  # writes ducksnap.toml in tmp_path
    import duckdb

    duckdb.connect(str(d.db)).close()  # the app has created its database
    try:
        env = workspace_env(tmp_path)
        assert run_blocks("docs/USER_GUIDE.md", tmp_path, env) >= 6
    finally:
        d.stop()


def test_deployment_samples(tmp_path):
    """DEPLOYMENT.md's set-up from a project directory that has only the
    app's database: `ducksnap init --systemd` as written, the daemon run as
    written, and at the end a daemon that answered and a snapshot in the
    store init chose."""
    import json

    import duckdb

    project = tmp_path / "myapp"
    project.mkdir()
    env = workspace_env(project)
    del env["DUCKSNAP_SOCKET"]
    env["HOME"] = str(tmp_path)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    (tmp_path / "run").mkdir(mode=0o700)
    con = duckdb.connect(str(project / "data" / "app.duckdb"))
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
    con.close()
    assert sorted(p.name for p in project.iterdir()) == ["clients", "data"]
    assert run_blocks("docs/DEPLOYMENT.md", project, env) >= 3
    config = (project / "ducksnap.toml").read_text()
    sock = tmp_path / "run" / "ducksnap" / "myapp.sock"
    assert f'path = "{sock}"' in config, config
    assert (tmp_path / ".config" / "systemd" / "user" / "ducksnap-myapp.service").exists()
    log = [json.loads(line) for line in (project / "daemon.log").read_text().splitlines() if line.startswith("{")]
    assert any(e.get("fields", e).get("event") == "daemon.ready" for e in log), log[:5]
    listed = subprocess.run(["ducksnap", "list", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    snaps = json.loads(listed.stdout)
    assert [s["label"] for s in snaps if s["reason"] == "manual"] == ["first"], snaps
    assert (project / "data" / "backups").is_dir()


def test_readme_samples(tmp_path):
    env = workspace_env(tmp_path)
    write_config(tmp_path)
    assert run_blocks("README.md", tmp_path, env) >= 1
