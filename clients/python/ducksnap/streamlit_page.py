"""A Streamlit page for ducksnap backups (``pip install ./clients/python[streamlit]``).

    import duckdb, streamlit as st
    from ducksnap.streamlit_page import render_backups_page

    @st.cache_resource
    def get_connection():
        return duckdb.connect("data/app.duckdb")

    render_backups_page(connection_factory=get_connection)

Locally it shows the snapshots (local time and age, reason, label, sizes in
human units, pinned, verified, id — a table that fits the default centered
layout), a "Back up now" button, per snapshot the changes since then
(tables added, removed or changed, with row counts then and now: ``diff ID
live``, the newest ``pre-delete`` snapshot preselected) and a changed
table's removed, added and changed rows (``diff ID live --table T``), a CSV
download of one table as it was in a snapshot, and a restore with a
confirmation that covers one snapshot once (it resets when another snapshot
is picked and after each restore). With continuous protection on (the
daemon archives the WAL), also the database at a time the user types: the
changes since then and a restore to it (the newest commit ducksnap saw at
or before that time). A restore closes the
app's connection first (DuckDB holds the file; the daemon refuses to
replace a database in use), clears the ``st.cache_resource`` cache of
``connection_factory`` so that the next call opens the restored file, and
reruns the script so that the table and the app show the restored state.
When DuckDB refuses to open the database (``connection_factory`` raises
one of its refusals, or :class:`ducksnap.DatabaseRefused` from
:func:`ducksnap.connect`), the page says why — DuckDB's words and
``ducksnap doctor``'s findings with what to do — and how to rescue it, and
still offers the snapshots to restore. In cloud mode it explains why there are no backups and returns: the rest of
the app keeps rendering.
"""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from typing import Any, Callable, Dict, List, Optional

import streamlit as st

from . import (
    BackupsDisabled,
    Client,
    DaemonUnavailable,
    DatabaseRefused,
    RequestFailed,
    database_of,
    explain_refusal,
)

CLOUD_MESSAGE = """\
**Backups are not available in this deployment.** ducksnap keeps snapshots
of a *local* DuckDB file; here the app runs in the cloud ({reason}) and its
data lives in MotherDuck, whose own durability and snapshots cover it:

- `CREATE SNAPSHOT my_snapshot OF my_db;` takes a named snapshot;
- `CREATE DATABASE my_db_restored FROM my_db (SNAPSHOT_TIME '2026-11-26 08:00:00');`
  restores a past state into a new database.
"""

_FLASH = "ducksnap_flash"


def human_size(n: Optional[int]) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _taken(s: Dict[str, Any]) -> datetime.datetime:
    """A snapshot's time (RFC 3339 with nanoseconds and ``Z``) as an aware
    datetime (microseconds: what Python keeps)."""
    m = re.fullmatch(r"(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s["created_at"])
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s['created_at']!r}")
    frac = (m.group(2) or "0")[:6]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(f"{m.group(1)}.{frac:0<6}{zone}")


def local_time(s: Dict[str, Any]) -> str:
    """``2026-12-06 18:34`` in this machine's zone (where the daemon runs),
    as ``ducksnap list`` shows it."""
    return _taken(s).astimezone().strftime("%Y-%m-%d %H:%M")


def age(s: Dict[str, Any], now: Optional[datetime.datetime] = None) -> str:
    """``just now``, ``5 minutes ago``, ``2 days ago`` (as ``ducksnap list``)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    secs = int((now - _taken(s)).total_seconds())
    n = abs(secs)
    if n < 10:
        return "just now"
    for per, unit in ((7 * 86400, "week"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if n >= per:
            count = n // per
            word = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {word}" if secs < 0 else f"{word} ago"
    return "just now"


def describe(s: Dict[str, Any]) -> str:
    """One picker line: local time and age, reason, label, size."""
    label = f" · {s['label']}" if s.get("label") else ""
    return f"{local_time(s)} ({age(s)}) · {s['reason']}{label} · {human_size(s.get('db_size'))}"


def default_choice(snapshots: List[Dict[str, Any]]) -> int:
    """The newest ``pre-delete`` snapshot (the list is newest first), else the newest."""
    for i, s in enumerate(snapshots):
        if s["reason"] == "pre-delete":
            return i
    return 0


def _preselect(key: str, snapshots: List[Dict[str, Any]]) -> None:
    """Points the picker ``key`` at the newest ``pre-delete`` snapshot when
    it is new or a snapshot appeared since (a widget keeps the choice made
    before otherwise); a choice made among the same snapshots stays. The
    ``diff`` snapshots that looking at changes takes do not count as new:
    they would reset the choice being looked at."""
    newest = next((s["id"] for s in snapshots if s["reason"] != "diff"), snapshots[0]["id"])
    seen = f"{key}_newest"
    if st.session_state.get(seen) != newest or st.session_state.get(key) not in {s["id"] for s in snapshots}:
        st.session_state[key] = snapshots[default_choice(snapshots)]["id"]
        st.session_state[seen] = newest


def _close(connection_factory: Optional[Callable[[], Any]], close_connection: Optional[Callable[[], Any]]) -> None:
    """Closes the app's connection: the factory's (and clears its cache),
    then the caller's own hook."""
    if connection_factory is not None:
        try:
            connection_factory().close()
        finally:
            clear = getattr(connection_factory, "clear", None)
            if callable(clear):
                clear()
    if close_connection is not None:
        close_connection()


def render_backups_page(
    client: Optional[Client] = None,
    connection_factory: Optional[Callable[[], Any]] = None,
    close_connection: Optional[Callable[[], Any]] = None,
    reopen_connection: Optional[Callable[[], Any]] = None,
) -> None:
    """Renders the backups UI.

    connection_factory -- the function that returns the app's DuckDB
    connection, usually decorated with ``st.cache_resource``: a restore
    closes its connection and clears its cache; the rerun that follows
    opens the restored database through it. The daemon must protect that
    connection's database.

    close_connection / reopen_connection -- for an app that keeps its
    connection some other way: called before and after a restore.
    """
    refused = None
    if client is None:
        database = None
        if connection_factory is not None:
            try:
                database = database_of(connection_factory())
            except DatabaseRefused as e:
                refused = e
            except Exception as e:  # noqa: BLE001 - only DuckDB's refusals are explained
                refused = explain_refusal(e)
                if refused is None:
                    raise
            if refused is not None and refused.database != "the database":
                database = refused.database
        client = Client(database=database)
    st.header("Backups")
    if refused is not None:
        _refused(refused)
    if client.cloud:
        st.info(CLOUD_MESSAGE.format(reason=client.decide_mode()["reason"]))
        return
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    try:
        snapshots = client.list_snapshots()
    except BackupsDisabled as e:
        st.info(str(e))
        return
    except (DaemonUnavailable, RequestFailed) as e:
        st.error(f"No backups: {e}")
        return

    if st.button("Back up now", key="ducksnap_backup_now"):
        try:
            snap = client.snapshot("manual", label="from the backups page")
            if snap:
                st.success(f"Snapshot {snap['id']} created ({human_size(snap.get('db_size'))}).")
                snapshots = client.list_snapshots()
        except (DaemonUnavailable, RequestFailed) as e:
            st.error(f"Backup failed: {e}")

    if not snapshots:
        st.write("No snapshots yet.")
        return
    st.table(
        [
            {
                "taken": local_time(s),
                "age": age(s),
                "reason": s["reason"],
                "label": s.get("label") or "",
                "size": human_size(s.get("db_size")),
                "new": human_size(s.get("bytes_new")),
                "pinned": "yes" if s["pinned"] else "no",
                "verified": "yes" if s["verified"] else "no",
                "id": s["id"],
            }
            for s in snapshots
        ],
    )
    _time_travel(client, snapshots)
    try:
        continuous = bool(client.hello().get("continuous"))
    except (DaemonUnavailable, RequestFailed):
        continuous = False
    if continuous:
        _at_a_time(client, connection_factory, close_connection, reopen_connection)
    _restore_form(client, snapshots, connection_factory, close_connection, reopen_connection)


def _refused(e: DatabaseRefused) -> None:
    """What to say when DuckDB will not open the app's database: DuckDB's
    words, ``ducksnap doctor``'s findings with what to do, and the rescue."""
    st.error(f"DuckDB will not open {e.database}.")
    st.caption(f"DuckDB says: {e.duckdb_message}")
    findings = (e.diagnosis or {}).get("findings", [])
    if findings:
        st.markdown(
            "\n".join(f"- **{f['message']}** — {f['fix']}" for f in findings if f.get("severity") != "note")
            or "ducksnap doctor found nothing that stops DuckDB."
        )
    else:
        st.markdown("Run `ducksnap doctor` in the project directory to see why.")
    st.markdown(
        "Do not delete the `.wal` file: that loses every commit since the last checkpoint. "
        "`ducksnap rescue --to COPY` builds a database with every commit that can be got back "
        "without touching these files; `ducksnap rescue` fixes it in place and keeps the broken "
        "files as a pinned snapshot. Or restore a snapshot below."
    )


def _time_travel(client: Client, snapshots: List[Dict[str, Any]]) -> None:
    """Changes since a snapshot (tables, then one table's rows), and one of
    its tables as CSV."""
    st.subheader("Changes since a snapshot")
    by_id = {s["id"]: s for s in snapshots}
    _preselect("ducksnap_diff_id", snapshots)
    choice = st.selectbox(
        "Snapshot",
        list(by_id),
        format_func=lambda i: describe(by_id[i]),
        key="ducksnap_diff_id",
    )
    if st.button("Show changes since this snapshot", key="ducksnap_diff"):
        try:
            st.session_state["ducksnap_report"] = (choice, client.diff(choice, "live"))
        except (DaemonUnavailable, RequestFailed) as e:
            st.session_state.pop("ducksnap_report", None)
            st.error(f"Diff failed: {e}")
    shown = st.session_state.get("ducksnap_report")
    if shown and shown[0] == choice:
        _changes(client, choice, shown[1])
    try:
        tables = [t["name"] if t["schema"] == "main" else f"{t['schema']}.{t['name']}"
                  for t in client.call({"op": "show", "id": choice})["manifest"]["check"]["tables"]]
    except (DaemonUnavailable, RequestFailed, KeyError):
        tables = []
    if not tables:
        return
    table = st.selectbox("Table", tables, key="ducksnap_export_table")
    if st.button("Prepare CSV", key="ducksnap_export"):
        with tempfile.TemporaryDirectory(prefix="ducksnap-page-") as tmp:
            path = os.path.join(tmp, "table.csv")
            try:
                client.export(choice, table=table, to=path)
                with open(path, "rb") as f:
                    st.session_state["ducksnap_csv"] = (f"{table}-{choice}.csv", f.read())
            except (DaemonUnavailable, RequestFailed) as e:
                st.error(f"Export failed: {e}")
    ready = st.session_state.get("ducksnap_csv")
    if ready:
        st.download_button("Download CSV", data=ready[1], file_name=ready[0], mime="text/csv", key="ducksnap_download")


ROWS_SHOWN = 50


def _changes(client: Client, choice: str, report: Dict[str, Any], key: str = "ducksnap_rows_table") -> None:
    """The tables that changed since ``choice``; then, for one of them, the
    rows removed, added and changed (against the same captured state)."""
    changed = [t for t in report["tables"] if t["status"] != "unchanged"]
    if report["identical"] or not changed:
        st.success("No changes since this snapshot.")
        return
    st.table(
        [
            {
                "table": t["table"],
                "change": t["status"],
                "rows then": t.get("rows_before"),
                "rows now": t.get("rows_after"),
                "schema": _schema_text(t),
            }
            for t in changed
        ],
    )
    tables = [t["table"] for t in changed if t["status"] == "changed" and not t.get("view")]
    if not tables:
        return
    table = st.selectbox("Rows of table", tables, key=f"{key}_{choice}")
    try:
        rows = client.diff(choice, report["b"]["id"], table=table, limit=ROWS_SHOWN)["rows"]
    except (DaemonUnavailable, RequestFailed) as e:
        st.error(f"Diff of {table} failed: {e}")
        return
    columns = rows["columns"]
    for kind, title in (("removed", "Removed rows"), ("added", "Added rows")):
        count, shown = rows[kind], rows[f"{kind}_rows"]
        more = f" (the first {len(shown)})" if count > len(shown) else ""
        st.markdown(f"**{title}: {count}**{more}")
        if shown:
            st.table([dict(zip(columns, r)) for r in shown])
    if rows.get("key"):
        count, shown = rows["changed"], rows["changed_rows"]
        more = f" (the first {len(shown)})" if count > len(shown) else ""
        st.markdown(f"**Changed rows (by {', '.join(rows['key'])}): {count}**{more}")
        if shown:
            st.table(
                [
                    {f"{c} {when}": v for when, part in (("then", ch["before"]), ("now", ch["after"])) for c, v in zip(columns, part)}
                    for ch in shown
                ]
            )


def parse_clock(day: datetime.date, clock: str) -> Optional[datetime.datetime]:
    """``day`` at ``HH:MM`` or ``HH:MM:SS`` in this machine's time zone
    (where the daemon runs), as an aware datetime; ``None`` when ``clock``
    is not such a time."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", clock)
    if not m:
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    naive = datetime.datetime.combine(day, datetime.time(hour, minute, second))
    return naive.astimezone()


def _at_a_time(client: Client, connection_factory, close_connection, reopen_connection) -> None:
    """With continuous protection on: the database as it was at a time the
    user picks (the newest commit ducksnap saw at or before it, or the
    newest snapshot then when that is newer) — the changes since then, and
    a restore to it."""
    st.subheader("The database at a time")
    st.caption(
        "Continuous protection is on: every commit can be restored, not only the snapshots. "
        "A time reaches the newest commit ducksnap saw at or before it."
    )
    # The first render's time is the default, kept in the session: a default
    # that changed at every rerun would make a new widget and drop what the
    # user typed.
    now = datetime.datetime.now().astimezone()
    st.session_state.setdefault("ducksnap_at_day", now.date())
    st.session_state.setdefault("ducksnap_at_clock", now.strftime("%H:%M:%S"))
    col_day, col_clock = st.columns(2)
    day = col_day.date_input("Day", key="ducksnap_at_day")
    clock = col_clock.text_input("Time (HH:MM:SS, this machine's time zone)", key="ducksnap_at_clock")
    at = parse_clock(day, clock)
    if at is None:
        st.error(f"{clock!r} is not a time: give it as HH:MM:SS, for example 10:42:13.")
        return
    when = at.isoformat()
    shown_at = at.strftime("%Y-%m-%d %H:%M:%S")
    if st.button("Show changes since then", key="ducksnap_at_diff"):
        try:
            st.session_state["ducksnap_at_report"] = (when, client.diff(as_of=when))
        except (DaemonUnavailable, RequestFailed) as e:
            st.session_state.pop("ducksnap_at_report", None)
            st.error(f"Diff failed: {e}")
    shown = st.session_state.get("ducksnap_at_report")
    if shown and shown[0] == when:
        a = shown[1]["a"]
        state = f"commit {a['point']}" if a.get("point") else f"snapshot {a['id']}"
        st.markdown(f"As of {shown_at}: **{state}**")
        _changes(client, a.get("point") or a["id"], shown[1], key="ducksnap_at_rows_table")
    restores = st.session_state.get("ducksnap_restores", 0)
    confirmed = st.checkbox(
        f"I understand: the current database is replaced by its state as of {shown_at} "
        "(it is saved first as a pinned pre-restore snapshot).",
        value=False,
        key=f"ducksnap_at_confirm_{when}_{restores}",
    )
    if not st.button("Restore to that time", key="ducksnap_at_restore", disabled=not confirmed):
        return
    _restore_and_rerun(
        lambda: client.restore(as_of=when),
        lambda r: f"the database as of {shown_at} "
        f"({'commit ' + r['point'] if r.get('point') else 'snapshot ' + r['id']})",
        connection_factory,
        close_connection,
        reopen_connection,
    )


def _restore_and_rerun(restore, what, connection_factory, close_connection, reopen_connection) -> None:
    """Closes the app's connection, runs ``restore``, reopens, and reruns
    the script with a message saying ``what(result)`` was restored; on
    failure, says why and stays. Every confirmation box is new after it."""
    try:
        _close(connection_factory, close_connection)
        result = restore()
    except (DaemonUnavailable, RequestFailed, BackupsDisabled) as e:
        st.error(f"Restore failed: {e}")
        return
    finally:
        if reopen_connection:
            reopen_connection()
    st.session_state[_FLASH] = (
        f"Restored {what(result)}. The previous state is snapshot {result.get('pre_restore') or '(none)'}."
    )
    st.session_state["ducksnap_restores"] = st.session_state.get("ducksnap_restores", 0) + 1
    st.session_state.pop("ducksnap_at_report", None)
    st.session_state.pop("ducksnap_report", None)
    st.rerun()


def _schema_text(t: Dict[str, Any]) -> str:
    parts = [f"+{c['name']} {c['type']}" for c in t.get("columns_added", [])]
    parts += [f"-{c['name']} {c['type']}" for c in t.get("columns_removed", [])]
    parts += [f"{c['name']} {c['before']} → {c['after']}" for c in t.get("columns_retyped", [])]
    return ", ".join(parts)


def _restore_form(client, snapshots, connection_factory, close_connection, reopen_connection) -> None:
    st.subheader("Restore")
    by_id = {s["id"]: s for s in snapshots}
    _preselect("ducksnap_restore_id", snapshots)
    choice = st.selectbox(
        "Snapshot",
        list(by_id),
        format_func=lambda i: describe(by_id[i]),
        key="ducksnap_restore_id",
    )
    # One confirmation covers one snapshot once: the box is new for each
    # snapshot picked and after each restore.
    restores = st.session_state.get("ducksnap_restores", 0)
    confirmed = st.checkbox(
        "I understand: the current database is replaced (it is saved first as a pinned pre-restore snapshot).",
        value=False,
        key=f"ducksnap_restore_confirm_{choice}_{restores}",
    )
    if not st.button("Restore", key="ducksnap_restore", disabled=not confirmed):
        return
    _restore_and_rerun(
        lambda: client.restore(choice),
        lambda r: f"the snapshot of {describe(by_id[choice])} ({r['id']})",
        connection_factory,
        close_connection,
        reopen_connection,
    )
