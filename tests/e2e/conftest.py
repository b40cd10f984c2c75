"""Fixtures: the real ducksnap daemon on a temporary workspace, started with
a fake NOTIFY_SOCKET so the test waits for READY=1 instead of polling."""

import os
import pathlib
import signal
import socket
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ducksnap_bin():
    if os.environ.get("DUCKSNAP_BIN"):
        return os.environ["DUCKSNAP_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
    return str(pathlib.Path(target) / "debug" / "ducksnap")


class Daemon:
    def __init__(self, tmp, extra_env=None, config_extra="", socket_path=None, schedule="[schedule]\nenabled = false\n"):
        self.tmp = tmp
        self.db = tmp / "data" / "app.duckdb"
        self.db.parent.mkdir(exist_ok=True)
        self.socket = pathlib.Path(socket_path) if socket_path else tmp / "run" / "ducksnap.sock"
        self.config = tmp / "ducksnap.toml"
        self.config.write_text(
            '[database]\npath = "data/app.duckdb"\n'
            '[store]\ndir = "data/backups"\nmin_free_space = "1MiB"\n'
            f'[socket]\npath = "{self.socket}"\n' + schedule + config_extra
            # Continuous archiving is on by default; the tests that are
            # not about it count snapshots, and it adds base snapshots.
            + ("" if "[continuous]" in config_extra else "[continuous]\nenabled = false\n")
        )
        notify_path = str(tmp / "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.notify.settimeout(60)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "NOTIFY_SOCKET": notify_path}
        env.update(extra_env or {})
        self.env = env
        self.proc = subprocess.Popen(
            [ducksnap_bin(), "--config", str(self.config), "daemon"],
            env=env,
            cwd=str(tmp),
            stdin=subprocess.DEVNULL,
        )
        msg = self.notify.recv(4096).decode()
        assert msg.startswith("READY=1"), msg

    def cli(self, *args):
        return subprocess.run(
            [ducksnap_bin(), "--config", str(self.config), *args],
            env=self.env,
            cwd=str(self.tmp),
            capture_output=True,
            text=True,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def cloud_daemon(tmp_path):
    d = Daemon(tmp_path, extra_env={"STREAMLIT_SHARING_MODE": "1"})
    yield d
    d.stop()
