"""Client for the ducksnap daemon (standard library only).

    from ducksnap import with_snapshot

    @with_snapshot(reason="pre-delete", label="delete customer")
    def delete_customer(con, customer_id):
        ...

The decorator (or ``with with_snapshot(...):``) asks the daemon for a
snapshot and waits for it before the wrapped operation runs. In a cloud
deployment (Streamlit Community Cloud, MotherDuck) backups are disabled: the
operation runs without a snapshot, logged at debug level.

Which mode (one truth, in this order): ``$DUCKSNAP_MODE`` (``local`` or
``cloud``) when set; else the decision of the daemon that answers (its
``hello``); else this process's own cloud signals (:func:`detect_cloud`).
Deciding "cloud" while a daemon socket exists is logged as a warning.

Which daemon: ``socket_path``, else ``$DUCKSNAP_SOCKET``, else the socket
of the project's ``ducksnap.toml`` (:func:`project_config`: the one in the
working directory or beside the database, as ``ducksnap init`` writes it),
the default socket and the per-project sockets in
``$XDG_RUNTIME_DIR/ducksnap/``. When none answers, :class:`DaemonUnavailable`
names the sockets tried and how to start this project's daemon
(:func:`start_advice`: the unit ``init --systemd`` installed, if any); when
the client knows its database (``connection=``, ``database=``,
``$DUCKSNAP_DATABASE``) it uses the daemon that protects that database, every
request names it, and a daemon protecting another database is refused
(:class:`WrongDatabase`) before the wrapped operation runs.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import logging
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "Client",
    "DucksnapError",
    "DaemonUnavailable",
    "UntrustedDaemon",
    "BackupsDisabled",
    "RequestFailed",
    "WrongDatabase",
    "DatabaseRefused",
    "connect",
    "explain_refusal",
    "database_of",
    "detect_cloud",
    "default_socket_path",
    "with_snapshot",
    "find_binary",
    "project_config",
    "start_advice",
    "__version__",
]

log = logging.getLogger("ducksnap")

PROTOCOL_VERSION = 1


def _version() -> str:
    """The installed distribution's version: ``ducksnap`` (the wheel with the
    daemon inside) or ``ducksnap-client`` (the client alone)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "unknown"
    for dist in ("ducksnap", "ducksnap-client"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


__version__ = _version()


def find_binary(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The ``ducksnap`` executable to run: ``$DUCKSNAP_BIN``, else the one
    installed with this package (the ``ducksnap`` wheel puts it in this
    interpreter's scripts directory), else the first on ``PATH``; None when
    there is none (the client-only install, no daemon built)."""
    import shutil
    import sysconfig

    env = os.environ if env is None else env
    if env.get("DUCKSNAP_BIN"):
        return env["DUCKSNAP_BIN"]
    for scripts in (sysconfig.get_path("scripts"), os.path.dirname(os.path.abspath(sys.executable))):
        exe = os.path.join(scripts, "ducksnap")
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe
    return shutil.which("ducksnap", path=env.get("PATH"))


# How long "no daemon answers" is remembered by a Client, in seconds.
NEGATIVE_TTL = 2.0


class DucksnapError(Exception):
    """Base class of the client's errors."""


class DaemonUnavailable(DucksnapError):
    """No daemon answers on the socket."""


class UntrustedDaemon(DaemonUnavailable):
    """The process answering on the socket runs as another user: its answers
    are not trusted (anyone can bind a socket in a directory they control)."""


class BackupsDisabled(DucksnapError):
    """Backups are disabled here (cloud mode) and the call cannot do without them."""


class RequestFailed(DucksnapError):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class WrongDatabase(RequestFailed):
    """The daemon that answers protects another database than the app's."""

    def __init__(self, message: str):
        super().__init__("wrong_database", message)


def _runtime_dir(env: Mapping[str, str]) -> str:
    return env.get("XDG_RUNTIME_DIR") or f"/tmp/ducksnap-{os.getuid()}"


def default_socket_path(env: Optional[Mapping[str, str]] = None) -> str:
    """``$DUCKSNAP_SOCKET``, else the daemon's default path."""
    env = os.environ if env is None else env
    if env.get("DUCKSNAP_SOCKET"):
        return env["DUCKSNAP_SOCKET"]
    return os.path.join(_runtime_dir(env), "ducksnap.sock")


def project_sockets(env: Optional[Mapping[str, str]] = None) -> List[str]:
    """The per-project daemons' sockets (``ducksnap@<project>.service``):
    ``$XDG_RUNTIME_DIR/ducksnap/*.sock``, sorted."""
    env = os.environ if env is None else env
    return sorted(glob.glob(os.path.join(_runtime_dir(env), "ducksnap", "*.sock")))


def _toml_value(text: str, section: str, key: str) -> Optional[str]:
    """A basic string ``key = "…"`` in ``[section]`` of a TOML text — what
    ``ducksnap init`` writes (tomllib is not in Python 3.9)."""
    current = None
    pattern = re.compile(r'^\s*' + re.escape(key) + r'\s*=\s*("(?:[^"\\]|\\.)*")')
    for line in text.splitlines():
        header = re.match(r"^\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if header:
            current = header.group(1).strip()
            continue
        m = pattern.match(line) if current == section else None
        if m:
            try:
                return json.loads(m.group(1))
            except ValueError:
                return None
    return None


def project_config(
    env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, database: Optional[str] = None
) -> Optional[Dict[str, Any]]:
    """The project's ducksnap config: ``$DUCKSNAP_CONFIG``, else
    ``./ducksnap.toml`` (as the CLI reads it), else the ``ducksnap.toml``
    ``ducksnap init`` wrote beside the database or up to three directories
    above it — as ``{"path", "socket", "unit"}``, the unit when ``init
    --systemd`` installed ``ducksnap-NAME.service`` for that socket; or
    None."""
    env = os.environ if env is None else env
    cwd = os.getcwd() if cwd is None else cwd
    if env.get("DUCKSNAP_CONFIG"):
        places = [os.path.join(cwd, env["DUCKSNAP_CONFIG"])]
    else:
        places = [os.path.join(cwd, "ducksnap.toml")]
        d = os.path.dirname(database) if database and not database.startswith("md:") else None
        for _ in range(4):
            if not d:
                break
            places.append(os.path.join(d, "ducksnap.toml"))
            d = os.path.dirname(d) if os.path.dirname(d) != d else None
    for path in places:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            break
        except OSError:
            continue
    else:
        return None
    sock = _toml_value(text, "socket", "path")
    unit = None
    if sock and os.path.basename(os.path.dirname(sock)) == "ducksnap" and sock.endswith(".sock"):
        name = os.path.basename(sock)[: -len(".sock")]
        units = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
        if os.path.exists(os.path.join(units, "systemd", "user", f"ducksnap-{name}.service")):
            unit = f"ducksnap-{name}.service"
    return {"path": path, "socket": sock, "unit": unit}


def start_advice(
    env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, database: Optional[str] = None
) -> str:
    """How to start the daemon for this project, as one clause: the unit
    ``ducksnap init --systemd`` installed, else the daemon with the project's
    config, else ``ducksnap init``."""
    cfg = project_config(env, cwd, database)
    if cfg and cfg["unit"]:
        return f"start it: systemctl --user start {cfg['unit']}"
    if cfg:
        return f"start it: ducksnap --config {cfg['path']} daemon (ducksnap init --systemd --force installs a service)"
    return "set one up in the project directory: ducksnap init --systemd (docs/DEPLOYMENT.md)"


# What DuckDB says when it will not open a database file, as PyPI's duckdb
# 1.4 and 2.0 word it (docs/USER_GUIDE.md, "When DuckDB will not open your
# database").
REFUSALS = (
    "Failure while replaying WAL file",
    "Corrupt WAL file",
    "WAL does not match database file",
    "WAL checkpoint iteration does not match",
    "Could not set lock on file",
    "Trying to read a database file with version number",
    "is not a valid DuckDB database file",
)


class DatabaseRefused(DucksnapError):
    """DuckDB refused to open the database in a way ducksnap recognises.

    ``database`` is the path, ``duckdb_message`` DuckDB's own words,
    ``diagnosis`` what ``ducksnap doctor --json`` found (None when the
    binary is not installed or could not say), and the message says what to
    run: ``ducksnap doctor``, then ``ducksnap rescue``."""

    def __init__(self, database: str, duckdb_message: str, diagnosis: Optional[Dict[str, Any]]):
        self.database = database
        self.duckdb_message = duckdb_message
        self.diagnosis = diagnosis
        found = ""
        if diagnosis:
            blocking = [f["message"] for f in diagnosis.get("findings", []) if f.get("severity") != "note"]
            if blocking:
                found = " ducksnap doctor: " + "; ".join(blocking) + "."
        super().__init__(
            f"DuckDB will not open {database}: {duckdb_message}.{found} "
            "Run `ducksnap doctor` to see why and what to do; `ducksnap rescue --to COPY` "
            "builds a database with every commit that can be got back, without touching these files. "
            "Do not delete the .wal: that loses every commit since the last checkpoint."
        )


def explain_refusal(
    error: BaseException,
    database: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: float = 30.0,
) -> Optional[DatabaseRefused]:
    """A :class:`DatabaseRefused` for an exception ``duckdb.connect(database)``
    raised, when its message is one of DuckDB's refusals of the file
    (:data:`REFUSALS`); None for any other error. ``database`` defaults to
    the file DuckDB's message names. Runs ``ducksnap doctor
    --json`` with the project's config (:func:`project_config`) when the
    binary is found (:func:`find_binary`): it reads the files and writes
    nothing."""
    message = str(error).strip()
    if not any(r in message for r in REFUSALS):
        return None
    if database is None:
        # DuckDB names the file (or its .wal) in these messages.
        m = re.search(r'"([^"]+?)(\.wal(\.checkpoint)?)?"', message)
        database = m.group(1) if m else "the database"
    diagnosis = None
    binary = find_binary(env)
    cfg = project_config(env, cwd, database)
    if binary and cfg and database != "the database":
        import subprocess

        try:
            out = subprocess.run(
                [binary, "--config", cfg["path"], "doctor", "--json"],
                capture_output=True,
                timeout=timeout,
                cwd=cwd,
                env=None if env is None else dict(env),
            )
            diagnosis = json.loads(out.stdout.decode("utf-8"))
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            log.debug("ducksnap doctor could not say: %s", e)
    return DatabaseRefused(database, message, diagnosis)


def connect(database: str, **kwargs: Any) -> Any:
    """``duckdb.connect(database, **kwargs)``; when DuckDB refuses the file
    (a damaged or foreign WAL, a lock held, a newer storage version),
    :class:`DatabaseRefused` instead of DuckDB's error, with ``ducksnap
    doctor``'s diagnosis and what to run (the original error is its
    ``__cause__``)."""
    import duckdb  # the app's own

    try:
        return duckdb.connect(database, **kwargs)
    except duckdb.Error as e:
        refused = explain_refusal(e, database)
        if refused is None:
            raise
        raise refused from e


def database_of(connection: Any) -> Optional[str]:
    """The absolute path of the file behind a DuckDB connection, or None for
    an in-memory or MotherDuck database (or when it cannot be asked)."""
    try:
        row = connection.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
    except Exception as e:  # not a DuckDB connection, or closed
        log.debug("cannot ask the connection for its database: %s", e)
        return None
    path = row[0] if row else None
    if not path or path.startswith("md:") or path == ":memory:":
        return None
    return os.path.abspath(path)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file: the same real path, or the same
    device and inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def detect_cloud(
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    database: Optional[str] = None,
) -> Tuple[bool, List[str]]:
    """The daemon's environment signals. Returns (is_cloud, signals that fired).

    ``database`` defaults to ``$DUCKSNAP_DATABASE`` or ``$DATABASE_PATH`` when set.
    """
    env = os.environ if env is None else env
    cwd = os.getcwd() if cwd is None else cwd
    if database is None:
        database = env.get("DUCKSNAP_DATABASE") or env.get("DATABASE_PATH") or ""
    fired = []
    if "STREAMLIT_SHARING_MODE" in env:
        fired.append("STREAMLIT_SHARING_MODE")
    if env.get("STREAMLIT_SERVER_HEADLESS", "").strip().lower() == "true":
        fired.append("STREAMLIT_SERVER_HEADLESS")
    if cwd.startswith("/mount/src/") or cwd == "/mount/src":
        fired.append("working_directory")
    if database.startswith("/mount/src/"):
        fired.append("database_path")
    if database.startswith("md:"):
        fired.append("database_md")
    if env.get("DATABASE_MODE", "").strip().lower() == "motherduck":
        fired.append("DATABASE_MODE")
    return bool(fired), fired


class Client:
    """A connection-per-call client for the daemon's socket.

    ``env`` (default: the process environment) is where the socket path,
    ``$DUCKSNAP_MODE``, ``$DUCKSNAP_DATABASE`` and the cloud signals are read.
    ``database`` is the app's database file: the daemon must protect that
    one. ``force_local=True`` ignores the cloud signals.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        timeout: float = 600.0,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        database: Optional[str] = None,
        force_local: bool = False,
    ):
        self.env = dict(os.environ if env is None else env)
        self.cwd = os.getcwd() if cwd is None else cwd
        self.explicit_socket = socket_path or self.env.get("DUCKSNAP_SOCKET") or None
        self.socket_path = self.explicit_socket or default_socket_path(self.env)
        self.timeout = timeout
        self.force_local = force_local
        if database is None:
            database = self.env.get("DUCKSNAP_DATABASE") or self.env.get("DATABASE_PATH") or None
        if database and not database.startswith("md:"):
            database = os.path.normpath(os.path.join(self.cwd, database))
        self.database = database
        _cloud, fired = detect_cloud(self.env, self.cwd, database or "")
        self.cloud_signals = fired
        self._hello: Optional[Dict[str, Any]] = None
        self._miss: Optional[Tuple[float, Optional[DucksnapError]]] = None

    def for_database(self, database: Optional[str]) -> "Client":
        """The same client, about ``database`` (unchanged when None)."""
        if not database or (self.database and same_file(self.database, database)):
            return self
        return Client(self.explicit_socket, self.timeout, self.env, self.cwd, database, self.force_local)

    # -- which daemon, which mode -------------------------------------------
    def _candidates(self) -> List[str]:
        if self.explicit_socket:
            return [self.explicit_socket]
        cfg = project_config(self.env, self.cwd, self.database)
        default = default_socket_path(self.env)
        if cfg and cfg["socket"]:
            # The project's own socket first; the default only if a daemon
            # left one there (it is not this project's).
            ours = [cfg["socket"]] + ([default] if os.path.exists(default) else [])
        else:
            ours = [default]
        return ours + [p for p in project_sockets(self.env) if p not in ours]

    def unavailable(self) -> "DaemonUnavailable":
        """The error for "no daemon answers": the sockets tried and how to
        start the daemon for this project (once)."""
        return DaemonUnavailable(
            "no ducksnap daemon answers on " + ", ".join(self._candidates())
            + " (" + start_advice(self.env, self.cwd, self.database) + ")"
        )

    def _protects(self, hello: Dict[str, Any]) -> bool:
        theirs = hello.get("database")
        return not self.database or (isinstance(theirs, str) and same_file(self.database, theirs))

    def _find_daemon(self) -> Optional[Dict[str, Any]]:
        """The daemon to talk to (its hello, with the socket it answered on),
        or None when none answers. Raises :class:`WrongDatabase` when daemons
        answer but none protects this client's database, and
        :class:`UntrustedDaemon` when another user's process answers.

        A daemon found is remembered; "none" is remembered for
        :data:`NEGATIVE_TTL` seconds (one operation asks once, a daemon
        started later is found)."""
        if self._hello is not None:
            return self._hello
        if self._miss is not None and time.monotonic() - self._miss[0] < NEGATIVE_TTL:
            if isinstance(self._miss[1], WrongDatabase):
                raise self._miss[1]
            return None
        hello, miss = self._probe()
        if hello is not None:
            self._hello, self._miss = hello, None
            self.socket_path = hello["socket"]
            return hello
        self._miss = (time.monotonic(), miss)
        if isinstance(miss, WrongDatabase):
            raise miss
        return None

    def _probe(self) -> Tuple[Optional[Dict[str, Any]], Optional[DucksnapError]]:
        others, last_error = [], None
        for path in self._candidates():
            if not os.path.exists(path):
                continue
            try:
                hello = self._call_at(path, {"op": "hello", "client": "ducksnap-python"}, 5.0)
            except UntrustedDaemon:
                raise
            except DucksnapError as e:
                log.debug("no daemon on %s: %s", path, e)
                last_error = e
                continue
            if not isinstance(hello, dict):
                last_error = DaemonUnavailable(f"{path} does not answer like a ducksnap daemon: {hello!r}")
                continue
            if self._protects(hello):
                return dict(hello, socket=path), None
            others.append(f"{path} protects {hello.get('database')}")
        if others:
            return None, WrongDatabase(
                f"no ducksnap daemon protects {self.database}: "
                + "; ".join(others)
                + '. Start one for this project (docs/DEPLOYMENT.md, "Several projects") or set DUCKSNAP_SOCKET'
            )
        return None, last_error

    def decide_mode(self) -> Dict[str, Any]:
        """``{"mode": "local"|"cloud", "reason": …, "source": "DUCKSNAP_MODE"|"daemon"|"signals"|"force_local"}``."""
        forced = (self.env.get("DUCKSNAP_MODE") or "").strip().lower()
        if self.force_local:
            d = {"mode": "local", "reason": "force_local=True", "source": "force_local"}
        elif forced in ("local", "cloud"):
            d = {"mode": forced, "reason": f"forced by $DUCKSNAP_MODE={forced}", "source": "DUCKSNAP_MODE"}
        else:
            if forced and forced != "auto":
                raise ValueError(f"$DUCKSNAP_MODE={forced!r}: expected local, cloud or auto")
            d = self._mode_from_daemon_or_signals()
        if d["mode"] == "cloud" and any(os.path.exists(p) for p in self._candidates()):
            log.warning(
                "ducksnap: backups are off (%s) although a daemon socket exists (%s); "
                "set DUCKSNAP_MODE=local to use it",
                d["reason"],
                ", ".join(p for p in self._candidates() if os.path.exists(p)),
            )
        return d

    def _mode_from_daemon_or_signals(self) -> Dict[str, Any]:
        # A daemon that protects another database is an error even with
        # cloud signals: a daemon runs, so this is a developer machine.
        hello = self._find_daemon()
        if hello and hello.get("mode") in ("local", "cloud"):
            why = hello.get("mode_reason") or "its own detection"
            return {"mode": hello["mode"], "reason": f"the daemon (pid {hello.get('pid')}) decided: {why}", "source": "daemon"}
        if self.cloud_signals:
            return {"mode": "cloud", "reason": "cloud deployment (" + ", ".join(self.cloud_signals) + ")", "source": "signals"}
        return {"mode": "local", "reason": "no cloud signal fired", "source": "signals"}

    @property
    def cloud(self) -> bool:
        """Whether backups are disabled here (see the module's "which mode")."""
        try:
            return self.decide_mode()["mode"] == "cloud"
        except WrongDatabase:
            return False  # not cloud: the operation itself raises

    # -- transport ---------------------------------------------------------
    def call(self, request: Dict[str, Any], timeout: Optional[float] = None) -> Any:
        """Sends one request to the daemon that protects this client's
        database (naming it); returns its result or raises."""
        hello = self._find_daemon()
        if hello is None:
            miss = self._miss[1] if self._miss else None
            if isinstance(miss, (WrongDatabase, UntrustedDaemon)):
                raise miss
            if miss is not None:
                # What the socket that exists said, and how to start ours.
                raise DaemonUnavailable(f"{miss} ({start_advice(self.env, self.cwd, self.database)})") from miss
            raise self.unavailable()
        if self.database:
            request = dict(request, database=self.database)
        try:
            return self._call_at(hello["socket"], request, self.timeout if timeout is None else timeout)
        except DaemonUnavailable:
            self._hello = None  # ask again next time: it may have restarted elsewhere
            raise

    def _call_at(self, path: str, request: Dict[str, Any], timeout: float) -> Any:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(path)
        except OSError as e:  # missing file, refused, timeout
            s.close()
            raise DaemonUnavailable(f"no ducksnap daemon answers on {path}: {e}") from e
        try:
            self._check_peer(s, path)
        except BaseException:
            s.close()
            raise
        try:
            with s, s.makefile("rwb") as f:
                f.write(json.dumps(request).encode() + b"\n")
                f.flush()
                line = f.readline()
        except (socket.timeout, OSError) as e:
            raise DaemonUnavailable(f"the ducksnap daemon on {path} did not answer: {e}") from e
        if not line:
            raise DaemonUnavailable(f"the ducksnap daemon on {path} closed the connection")
        try:
            resp = json.loads(line)
        except ValueError as e:
            raise DaemonUnavailable(f"{path} does not answer like a ducksnap daemon: {e}") from e
        if not isinstance(resp, dict):
            raise DaemonUnavailable(f"{path} does not answer like a ducksnap daemon: {line[:80]!r}")
        if resp.get("ok"):
            return resp.get("result")
        err = resp.get("error") or {}
        code, message = err.get("code", "failed"), err.get("message", "")
        if code == "disabled":
            raise BackupsDisabled(message)
        if code == "wrong_database":
            raise WrongDatabase(message)
        raise RequestFailed(code, message)

    def _check_peer(self, s: socket.socket, path: str) -> None:
        """Refuses a server run by another user (SO_PEERCRED)."""
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            raise UntrustedDaemon(
                f"the server on {path} runs as uid {uid}, not as you (uid {os.getuid()}): "
                "refusing to trust its answers; someone else may be squatting the socket path"
            )

    # -- operations --------------------------------------------------------
    def disabled_reason(self) -> str:
        return (
            "backups are disabled: cloud mode ("
            + self.decide_mode()["reason"]
            + "); MotherDuck's own durability and snapshots cover production"
        )

    def hello(self) -> Dict[str, Any]:
        hello = self._find_daemon()
        if hello is None:
            raise self.unavailable()
        return hello

    def status(self) -> Dict[str, Any]:
        if self.cloud:
            return {"mode": "cloud", "disabled": self.disabled_reason(), "signals_fired": self.cloud_signals}
        return self.call({"op": "status"})

    def snapshot(
        self,
        reason: str = "manual",
        label: Optional[str] = None,
        pin: bool = False,
        timeout: Optional[float] = None,
    ) -> Optional[Dict[str, Any]]:
        """Takes a snapshot and waits for it: its manifest (without the
        chunk lists, which stay in the store), or None when backups are
        disabled (cloud). With continuous archiving on, a ``pre-delete``
        request is answered by a marker instead — a restore point at the
        last archived commit, a dict with its ``id`` (usable with
        ``restore``), ``created_at``, ``reason``, ``label`` and ``base``
        (the snapshot it replays onto) — when the archive is current."""
        if self.cloud:
            log.debug("snapshot %r skipped: %s", reason, self.disabled_reason())
            return None
        result = self.call({"op": "snapshot", "reason": reason, "label": label, "pin": pin}, timeout)
        if result.get("disabled"):
            log.debug("snapshot %r skipped: %s", reason, result.get("reason"))
            return None
        return result.get("snapshot") or result.get("marker")

    def list_snapshots(self) -> List[Dict[str, Any]]:
        """Snapshots, newest first ([] when backups are disabled)."""
        if self.cloud:
            return []
        return self.call({"op": "list"})

    def restore(
        self,
        snapshot_id: Optional[str] = None,
        to: Optional[str] = None,
        force: bool = False,
        check: bool = False,
        *,
        as_of: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Restores a snapshot, or a commit restore point (``GEN@OFFSET``),
        or the state ``as_of=TIME`` (the newest commit ducksnap saw at or
        before it with continuous protection, else the newest snapshot
        then) — the app must have closed its connection.

        ``check=True`` also has DuckDB open the restored file and compare its
        tables and row counts with the snapshot's; the hashes are always checked.
        """
        if self.cloud:
            raise BackupsDisabled(self.disabled_reason())
        req: Dict[str, Any] = {"op": "restore", **self._which(snapshot_id, as_of)}
        if check:
            req["check"] = True
        if to is not None:
            req["to"] = os.path.abspath(to)
            req["force"] = force
        return self.call(req)

    # -- time travel -------------------------------------------------------
    @staticmethod
    def _which(snapshot: Optional[str], as_of: Optional[str]) -> Dict[str, str]:
        """``{"id": …}`` or ``{"as_of": …}``: exactly one of the two."""
        if (snapshot is None) == (as_of is None):
            raise ValueError("give a snapshot (id, prefix, 'latest', 'latest:REASON') or as_of=TIME, not both")
        return {"id": snapshot} if snapshot is not None else {"as_of": as_of}

    def diff(
        self,
        a: Optional[str] = None,
        b: str = "live",
        *,
        as_of: Optional[str] = None,
        table: Optional[str] = None,
        key: Optional[List[str]] = None,
        limit: int = 20,
    ) -> Dict[str, Any]:
        """What changed from state ``a`` (a snapshot selector, or
        ``as_of=TIME``) to ``b`` (default ``"live"``: the database now, which
        the daemon captures first). With ``table``: that table's rows added,
        removed and (with ``key`` or its primary key) changed — exact counts,
        at most ``limit`` rows of each (the daemon caps it at 1000)."""
        if self.cloud:
            raise BackupsDisabled(self.disabled_reason())
        if (a is None) == (as_of is None):
            raise ValueError("give a (a snapshot selector) or as_of=TIME, not both")
        req: Dict[str, Any] = {"op": "diff", "b": b, "limit": limit}
        if a is not None:
            req["a"] = a
        else:
            req["as_of"] = as_of
        if table is not None:
            req["table"] = table
        if key is not None:
            req["key"] = list(key)
        return self.call(req)

    def export(
        self,
        snapshot: Optional[str] = None,
        *,
        to: str,
        table: Optional[str] = None,
        as_of: Optional[str] = None,
        force: bool = False,
    ) -> Dict[str, Any]:
        """Writes ``table`` of a snapshot to ``to`` (``.csv``: DuckDB's CSV
        with a header; ``.duckdb``: a database holding that table). Without
        ``table``, the whole snapshot to a ``.duckdb`` file."""
        if self.cloud:
            raise BackupsDisabled(self.disabled_reason())
        req: Dict[str, Any] = {"op": "export", "to": os.path.abspath(to), "force": force}
        req.update(self._which(snapshot, as_of))
        if table is not None:
            req["table"] = table
        return self.call(req)

    @contextlib.contextmanager
    def snapshot_copy(
        self, snapshot: Optional[str] = None, *, as_of: Optional[str] = None, directory: Optional[str] = None
    ) -> Iterator[str]:
        """A verified, read-only, standalone copy of a snapshot, for the app
        to ``ATTACH '<path>' AS old (READ_ONLY)`` and ``INSERT … SELECT`` the
        rows it wants back with its own connection. Yields the copy's path
        (in a private temporary directory, removed afterwards — DETACH
        before leaving the block)::

            with client.snapshot_copy("latest:pre-delete") as path:
                con.execute(f"ATTACH '{path}' AS old (READ_ONLY)")
                con.execute("INSERT INTO orders SELECT * FROM old.orders WHERE customer = 42")
                con.execute("DETACH old")
        """
        if self.cloud:
            raise BackupsDisabled(self.disabled_reason())
        which = self._which(snapshot, as_of)
        tmp = tempfile.mkdtemp(prefix="ducksnap-copy-", dir=directory)
        try:
            path = os.path.join(tmp, "snapshot.duckdb")
            # check: DuckDB opens the copy and compares tables and row counts
            # with the snapshot's record (the hashes are always checked).
            self.call(dict(which, op="restore", to=path, check=True))
            for p in (path, path + ".wal", path + ".wal.checkpoint"):
                if os.path.exists(p):
                    os.chmod(p, 0o400)
            yield path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class with_snapshot:  # noqa: N801 - used as a decorator
    """Takes a snapshot before the wrapped operation runs.

    Usable as ``@with_snapshot(...)`` and as ``with with_snapshot(...):``.

    on_error -- what to do when no snapshot can be taken because the daemon is
    unreachable, protects another database (:class:`WrongDatabase`) or
    answers with an error: ``"raise"`` (default: the operation does not run),
    ``"warn"`` (warn, then run it), ``"skip"`` (run it, log at info). In cloud
    mode, or when the daemon reports backups disabled, the operation runs
    without a snapshot, logged at debug level.

    connection -- the app's DuckDB connection: the daemon must protect its
    database file (checked by the client and by the daemon), and
    ``CHECKPOINT`` runs on it first, so the snapshot holds a checkpointed file
    — unless the daemon archives the WAL (``[continuous]``): then the
    request is answered by a marker at the last archived commit.
    """

    def __init__(
        self,
        reason: str = "pre-delete",
        label: Optional[str] = None,
        on_error: str = "raise",
        client: Optional[Client] = None,
        connection: Any = None,
        pin: bool = False,
    ):
        if on_error not in ("raise", "warn", "skip"):
            raise ValueError("on_error must be 'raise', 'warn' or 'skip'")
        self.reason = reason
        self.label = label
        self.on_error = on_error
        self.client = client
        self.connection = connection
        self.pin = pin
        self.snapshot: Optional[Dict[str, Any]] = None

    def _take(self) -> Optional[Dict[str, Any]]:
        database = database_of(self.connection) if self.connection is not None else None
        client = (self.client or Client(database=database)).for_database(database)
        if self.connection is not None and not client.cloud and not self._continuous(client):
            try:
                self.connection.execute("CHECKPOINT")
            except Exception as e:  # a checkpoint is an optimisation, not a requirement
                log.debug("CHECKPOINT before the snapshot failed: %s", e)
        try:
            self.snapshot = client.snapshot(self.reason, label=self.label, pin=self.pin)
        except (DaemonUnavailable, RequestFailed) as e:
            if self.on_error == "raise":
                raise
            if self.on_error == "warn":
                warnings.warn(f"running without a snapshot: {e}", RuntimeWarning, stacklevel=3)
                log.warning("running without a snapshot: %s", e)
            else:
                log.info("running without a snapshot: %s", e)
            self.snapshot = None
        return self.snapshot

    @staticmethod
    def _continuous(client: "Client") -> bool:
        """Whether the daemon archives the WAL (then a pre-delete request
        is answered by a marker on it, and a CHECKPOINT first would only
        leave it nothing to mark)."""
        try:
            hello = client._find_daemon()
        except Exception:  # noqa: BLE001 - the snapshot call reports it
            return False
        return bool(hello and hello.get("continuous"))

    def __enter__(self) -> Optional[Dict[str, Any]]:
        return self._take()

    def __exit__(self, *exc: Any) -> bool:
        return False

    def __call__(self, func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            guard = with_snapshot(self.reason, self.label, self.on_error, self.client, self.connection, self.pin)
            with guard:
                return func(*args, **kwargs)

        return wrapper
