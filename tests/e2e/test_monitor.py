"""The metrics file as node_exporter's textfile collector reads it: it
parses with Prometheus' own text parser, carries the documented names, and
is never seen half-written while it is replaced 200 times."""

import os
import subprocess
import threading

from prometheus_client.parser import text_string_to_metric_families

from conftest import ducksnap_bin

import duckdb

NAMES = {
    "ducksnap_last_success_timestamp_seconds",
    "ducksnap_last_duration_seconds",
    "ducksnap_runs",  # ducksnap_runs_total: the parser strips _total from counters
    "ducksnap_job_failing",
    "ducksnap_snapshots",
    "ducksnap_store_bytes",
    "ducksnap_unique_bytes",
    "ducksnap_damaged_snapshots",
    "ducksnap_newest_snapshot_timestamp_seconds",
    "ducksnap_newest_snapshot_age_seconds",
}


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_file_parses_and_is_never_half_written(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "metrics").mkdir()
    duckdb.connect(str(tmp_path / "data" / "app.duckdb")).execute("CREATE TABLE t AS SELECT 1 AS i").close()
    config = tmp_path / "ducksnap.toml"
    config.write_text(
        '[database]\npath = "data/app.duckdb"\nmode = "local"\n[store]\ndir = "data/backups"\nmin_free_space = "1MiB"\n'
        '[monitor]\nmetrics_file = "metrics/ducksnap.prom"\n'
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    def ducksnap(*args):
        out = subprocess.run([ducksnap_bin(), "--config", str(config), *args], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out

    ducksnap("snapshot")
    path = tmp_path / "metrics" / "ducksnap.prom"
    fams = families(path.read_text())
    assert NAMES <= set(fams), set(fams) ^ NAMES
    runs = {(s.labels["job"], s.labels["result"]): s.value for s in fams["ducksnap_runs"].samples if s.name.endswith("_total")}
    assert runs[("snapshot", "ok")] == 1 and runs[("snapshot", "failed")] == 0
    assert fams["ducksnap_snapshots"].samples[0].value == 1

    seen, bad, stop = [0], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                text = path.read_text()
                f = families(text)
                assert "ducksnap_snapshots" in f and text.endswith("\n"), text[-200:]
                seen[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                bad.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(200):  # every prune rewrites the file
            ducksnap("prune")
    finally:
        stop.set()
        t.join()
    assert not bad, bad[:3]
    assert seen[0] > 200, seen[0]
    runs = {(s.labels["job"], s.labels["result"]): s.value for s in families(path.read_text())["ducksnap_runs"].samples if s.name.endswith("_total")}
    assert runs[("prune", "ok")] == 200
    leftovers = [p for p in (tmp_path / "metrics").iterdir() if p.name != "ducksnap.prom"]
    assert not leftovers, leftovers
