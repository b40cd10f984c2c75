"""When DuckDB will not open the app's database: the Python client's
`ducksnap.connect` turns DuckDB's refusal into `DatabaseRefused` with
`ducksnap doctor`'s diagnosis and what to run, the Streamlit page shows it,
and `ducksnap rescue` (the real binary) gets the commits back. The damage
is real (a bit flipped in a WAL entry written by PyPI's duckdb) and every
verdict is DuckDB's own."""

import os
import pathlib
import subprocess
import sys

import duckdb
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from conftest import ducksnap_bin  # noqa: E402
from ducksnap import DatabaseRefused, connect, explain_refusal  # noqa: E402

APP = """
import duckdb, os, sys
c = duckdb.connect(sys.argv[1])
c.execute("SET checkpoint_threshold = '10GB'")
c.execute("CREATE TABLE t (i BIGINT)")
c.execute("CHECKPOINT")
for k in range(20):
    c.execute("INSERT INTO t VALUES (?)", [k])
os._exit(0)
"""


@pytest.fixture
def broken(tmp_path):
    """A project (ducksnap.toml beside data/) whose WAL has a flipped bit in
    its 11th commit's entries; returns (project dir, database path)."""
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "app.duckdb"
    (tmp_path / "ducksnap.toml").write_text(
        '[database]\npath = "data/app.duckdb"\nmode = "local"\n'
        '[store]\ndir = "data/backups"\nmin_free_space = "1MiB"\n'
        '[socket]\npath = "' + str(tmp_path / "run" / "ducksnap.sock") + '"\n'
        "[continuous]\nenabled = false\n"
    )
    subprocess.run([sys.executable, "-c", APP, str(db)], check=True)
    wal = pathlib.Path(str(db) + ".wal")
    data = bytearray(wal.read_bytes())
    # The entries (size u64, checksum u64, body) follow the header, which
    # ends with the serializer's 0xffff; a bit of the middle entry's body.
    at = data.index(b"\xff\xff") + 2
    bodies = []
    while at + 16 <= len(data):
        size = int.from_bytes(data[at : at + 8], "little")
        bodies.append((at + 16, at + 16 + size))
        at += 16 + size
    start, end = bodies[len(bodies) // 2]
    data[(start + end) // 2] ^= 0x20
    wal.write_bytes(bytes(data))
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(db), read_only=True)
    return tmp_path, db


def test_connect_says_what_duckdb_refused_and_what_to_run(broken):
    project, db = broken
    # `connect` finds the binary as an app would: $DUCKSNAP_BIN, which the
    # test command sets (README), or the PATH.
    assert os.environ.get("DUCKSNAP_BIN"), "run with DUCKSNAP_BIN set, as .ci/run does"
    with pytest.raises(DatabaseRefused) as e:
        connect(str(db))
    err = e.value
    assert isinstance(err.__cause__, duckdb.Error)
    assert "Corrupt WAL file" in err.duckdb_message
    assert err.database == str(db)
    kinds = [f["finding"] for f in err.diagnosis["findings"]]
    assert "wal_bad_checksum" in kinds, err.diagnosis
    assert err.diagnosis["exit_code"] == 10
    assert "ducksnap doctor" in str(err) and "ducksnap rescue" in str(err)
    # Anything else DuckDB raises is not ours to explain.
    assert explain_refusal(duckdb.Error("Catalog Error: Table with name x does not exist!"), str(db)) is None
    # Nothing was written: the database is still refused the same way.
    with pytest.raises(duckdb.Error, match="Corrupt WAL file"):
        duckdb.connect(str(db), read_only=True)


def test_rescue_gets_back_the_commits_before_the_damage(broken):
    project, db = broken
    out = subprocess.run(
        [ducksnap_bin(), "--config", str(project / "ducksnap.toml"), "rescue", "--yes"],
        cwd=str(project),
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(project)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "rescued" in out.stdout and "pre-rescue" not in out.stderr, out.stdout
    c = duckdb.connect(str(db), read_only=True)
    rows = [r[0] for r in c.execute("SELECT i FROM t ORDER BY i").fetchall()]
    c.close()
    assert rows == list(range(len(rows))) and 0 < len(rows) < 20, rows


def _refused_page(db):
    import duckdb
    import streamlit as st

    from ducksnap.streamlit_page import render_backups_page

    @st.cache_resource
    def get_connection():
        return duckdb.connect(db)

    render_backups_page(connection_factory=get_connection)
    st.markdown("footer: rendered after the backups page")


def test_the_page_shows_why_duckdb_will_not_open_the_database(broken):
    from streamlit.testing.v1 import AppTest

    project, db = broken
    import streamlit as st

    st.cache_resource.clear()
    at = AppTest.from_function(_refused_page, args=(str(db),), default_timeout=60).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(f"DuckDB will not open {db}" in e for e in errors), errors
    text = "\n".join(m.value for m in at.markdown)
    assert "fails its checksum at byte position" in text, text
    assert "ducksnap rescue" in text
    assert "footer: rendered after the backups page" in text
