"""Client for the ducksnap daemon (standard library only).

    from ducksnap import with_snapshot

    @with_snapshot(reason="pre-delete", label="delete customer")
    def delete_customer(con, customer_id):
        ...

The decorator (or ``with with_snapshot(...):``) asks the daemon for a
snapshot and waits for it before the wrapped operation runs. In a cloud
deployment (Streamlit Community Cloud, MotherDuck) backups are disabled: the
operation runs without a snapshot, logged at debug level.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import struct
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "Client",
    "DucksnapError",
    "DaemonUnavailable",
    "UntrustedDaemon",
    "BackupsDisabled",
    "RequestFailed",
    "detect_cloud",
    "default_socket_path",
    "with_snapshot",
]

log = logging.getLogger("ducksnap")

PROTOCOL_VERSION = 1


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


def default_socket_path(env: Optional[Mapping[str, str]] = None) -> str:
    """``$DUCKSNAP_SOCKET``, else the daemon's default path."""
    env = os.environ if env is None else env
    if env.get("DUCKSNAP_SOCKET"):
        return env["DUCKSNAP_SOCKET"]
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(env["XDG_RUNTIME_DIR"], "ducksnap.sock")
    return f"/tmp/ducksnap-{os.getuid()}/ducksnap.sock"


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

    ``env`` (default: the process environment) is where the socket path and
    the cloud signals are read; ``force_local=True`` ignores the signals.
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
        self.socket_path = socket_path or default_socket_path(self.env)
        self.timeout = timeout
        cloud, fired = detect_cloud(self.env, cwd, database)
        self.cloud = cloud and not force_local
        self.cloud_signals = fired

    # -- transport ---------------------------------------------------------
    def call(self, request: Dict[str, Any], timeout: Optional[float] = None) -> Any:
        """Sends one request; returns its result or raises."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout if timeout is None else timeout)
            s.connect(self.socket_path)
        except OSError as e:  # missing file, refused, timeout
            s.close()
            raise DaemonUnavailable(f"no ducksnap daemon answers on {self.socket_path}: {e}") from e
        try:
            self._check_peer(s)
        except BaseException:
            s.close()
            raise
        try:
            with s, s.makefile("rwb") as f:
                f.write(json.dumps(request).encode() + b"\n")
                f.flush()
                line = f.readline()
        except (socket.timeout, OSError) as e:
            raise DaemonUnavailable(f"the ducksnap daemon on {self.socket_path} did not answer: {e}") from e
        if not line:
            raise DaemonUnavailable(f"the ducksnap daemon on {self.socket_path} closed the connection")
        try:
            resp = json.loads(line)
        except ValueError as e:
            raise DaemonUnavailable(f"{self.socket_path} does not answer like a ducksnap daemon: {e}") from e
        if resp.get("ok"):
            return resp.get("result")
        err = resp.get("error") or {}
        code, message = err.get("code", "failed"), err.get("message", "")
        if code == "disabled":
            raise BackupsDisabled(message)
        raise RequestFailed(code, message)

    def _check_peer(self, s: socket.socket) -> None:
        """Refuses a server run by another user (SO_PEERCRED)."""
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            raise UntrustedDaemon(
                f"the server on {self.socket_path} runs as uid {uid}, not as you (uid {os.getuid()}): "
                "refusing to trust its answers; someone else may be squatting the socket path"
            )

    # -- operations --------------------------------------------------------
    def disabled_reason(self) -> str:
        return (
            "backups are disabled: cloud deployment ("
            + ", ".join(self.cloud_signals)
            + "); MotherDuck's own durability and snapshots cover production"
        )

    def hello(self) -> Dict[str, Any]:
        return self.call({"op": "hello", "client": "ducksnap-python"})

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
        """Takes a snapshot and waits for it: its manifest, or None when
        backups are disabled (cloud)."""
        if self.cloud:
            log.debug("snapshot %r skipped: %s", reason, self.disabled_reason())
            return None
        result = self.call({"op": "snapshot", "reason": reason, "label": label, "pin": pin}, timeout)
        if result.get("disabled"):
            log.debug("snapshot %r skipped: %s", reason, result.get("reason"))
            return None
        return result.get("snapshot")

    def list_snapshots(self) -> List[Dict[str, Any]]:
        """Snapshots, newest first ([] when backups are disabled)."""
        if self.cloud:
            return []
        return self.call({"op": "list"})

    def restore(
        self, snapshot_id: str, to: Optional[str] = None, force: bool = False, check: bool = False
    ) -> Dict[str, Any]:
        """Restores a snapshot (the app must have closed its connection).

        ``check=True`` also has DuckDB open the restored file and compare its
        tables and row counts with the snapshot's; the hashes are always checked.
        """
        if self.cloud:
            raise BackupsDisabled(self.disabled_reason())
        req: Dict[str, Any] = {"op": "restore", "id": snapshot_id}
        if check:
            req["check"] = True
        if to is not None:
            req["to"] = os.path.abspath(to)
            req["force"] = force
        return self.call(req)


class with_snapshot:  # noqa: N801 - used as a decorator
    """Takes a snapshot before the wrapped operation runs.

    Usable as ``@with_snapshot(...)`` and as ``with with_snapshot(...):``.

    on_error -- what to do when no snapshot can be taken because the daemon is
    unreachable or answers with an error: ``"raise"`` (default: the operation
    does not run), ``"warn"`` (warn, then run it), ``"skip"`` (run it, log at
    info). In cloud mode, or when the daemon reports backups disabled, the
    operation runs without a snapshot, logged at debug level.

    connection -- a DuckDB connection on which ``CHECKPOINT`` runs first, so
    the snapshot holds a checkpointed file.
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
        client = self.client or Client()
        if self.connection is not None and not client.cloud:
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
