"""The Python package and the command: the client finds the binary it came
with, ``python -m ducksnap`` runs it, and a client-only install says clearly
that there is none."""

import json
import os
import subprocess
import sys

import ducksnap
from conftest import ducksnap_bin


def test_find_binary_prefers_the_environment_then_this_interpreter(tmp_path):
    assert ducksnap.find_binary({"DUCKSNAP_BIN": "/x/ducksnap", "PATH": ""}) == "/x/ducksnap"
    # The client-only install in the test venv has no bundled binary: PATH decides.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ducksnap"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    found = ducksnap.find_binary({"PATH": str(bindir)})
    bundled = os.path.join(os.path.dirname(sys.executable), "ducksnap")
    assert found in (str(fake), bundled)
    assert ducksnap.__version__ not in ("", "unknown")


def test_python_m_ducksnap_runs_the_command():
    env = {"PATH": os.environ["PATH"], "DUCKSNAP_BIN": ducksnap_bin()}
    out = subprocess.run([sys.executable, "-m", "ducksnap", "version", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["ducksnap"] == ducksnap.__version__, (v, ducksnap.__version__)


def test_without_a_binary_python_m_ducksnap_says_what_to_install(tmp_path):
    env = {"PATH": str(tmp_path)}
    code = "import sys, ducksnap.__main__ as m, ducksnap; ducksnap.find_binary = lambda env=None: None; m.find_binary = ducksnap.find_binary; m.main()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert "client-only" in out.stderr and "ducksnap` wheel" in out.stderr
