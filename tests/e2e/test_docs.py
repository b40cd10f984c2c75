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


GLOBAL_FLAGS = {"--config", "--log-format", "--log-level", "--help", "--version"}


def help_tree(path=()):
    """{command path: its flags} from `--help`, every subcommand down."""
    out = subprocess.run([ducksnap_bin(), *path, "--help"], capture_output=True, text=True, env={"PATH": os.environ["PATH"], "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    options = text.split("\nOptions:\n", 1)[1] if "\nOptions:\n" in text else ""
    flags = {f for f in re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", options, re.M)} - GLOBAL_FLAGS
    tree = {path: flags}
    if "\nCommands:\n" in text:
        block = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
        for name in re.findall(r"^  ([a-z][a-z-]*)\s", block, re.M):
            if name != "help":
                tree.update(help_tree(path + (name,)))
    return tree


def readme_table(known):
    """{command path: flags} from README's command table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("\n## Commands\n", 1)[1].split("\n### Exit codes", 1)[0]
    rows = {}
    for line in table.splitlines():
        if not line.startswith("| `ducksnap"):
            continue
        first = line.split(" | ", 1)[0]
        for cmd in re.findall(r"`(ducksnap [^`]*)`", first):
            words = cmd.split()[1:]
            path = ()
            while words and (path + (words[0],)) in known:
                path += (words.pop(0),)
            rows.setdefault(path, set()).update(re.findall(r"--[a-z][a-z-]*", " ".join(words)))
    return rows


def test_readme_command_table_matches_help():
    """Every subcommand and flag `--help` knows is in README's command
    table, and the table names nothing `--help` does not know."""
    tree = help_tree()
    rows = readme_table(tree)
    leaves = {p for p in tree if p and not any(q[: len(p)] == p and q != p for q in tree)}
    missing = sorted(" ".join(p) for p in leaves if p not in rows)
    assert not missing, f"README's command table lacks: {missing}"
    for path, flags in rows.items():
        assert path in tree, f"README names `ducksnap {' '.join(path)}`, which --help does not know"
        # A group's own flags (`offsite --json`) count for its commands.
        known = set().union(*(tree[path[:k]] for k in range(1, len(path) + 1)))
        assert flags <= known, f"README gives `ducksnap {' '.join(path)}` {sorted(flags - known)}, which --help does not know"
        lacking = tree[path] - flags
        assert not lacking, f"README's row for `ducksnap {' '.join(path)}` lacks {sorted(lacking)}"
