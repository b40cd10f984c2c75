"""A Streamlit page for ducksnap backups (``pip install ./clients/python[streamlit]``).

    from ducksnap.streamlit_page import render_backups_page
    render_backups_page()

In cloud mode it explains why there are no backups (and what covers
production) and stops rendering. Locally it shows the snapshots, a "Back up
now" button and a restore with confirmation.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import streamlit as st

from . import BackupsDisabled, Client, DaemonUnavailable, RequestFailed

CLOUD_MESSAGE = """\
**Backups are not available in this deployment.** ducksnap keeps snapshots
of a *local* DuckDB file; here the app runs in the cloud ({signals}) and its
data lives in MotherDuck, whose own durability and snapshots cover it:

- `CREATE SNAPSHOT my_snapshot OF my_db;` takes a named snapshot;
- `CREATE DATABASE my_db_restored FROM my_db (SNAPSHOT_TIME '2026-11-26 08:00:00');`
  restores a past state into a new database.
"""


def render_backups_page(
    client: Optional[Client] = None,
    close_connection: Optional[Callable[[], Any]] = None,
    reopen_connection: Optional[Callable[[], Any]] = None,
) -> None:
    """Renders the backups UI. ``close_connection`` / ``reopen_connection``
    let a restore close the app's DuckDB connection first (the daemon refuses
    to restore a database that is open) and open it again afterwards."""
    client = client or Client()
    st.header("Backups")
    if client.cloud:
        st.info(CLOUD_MESSAGE.format(signals=", ".join(client.cloud_signals)))
        st.stop()
    try:
        snapshots = client.list_snapshots()
    except DaemonUnavailable as e:
        st.error(f"The ducksnap daemon is not running: {e}. Start it with `systemctl --user start ducksnap`.")
        return
    except BackupsDisabled as e:
        st.info(str(e))
        st.stop()

    if st.button("Back up now", key="ducksnap_backup_now"):
        try:
            snap = client.snapshot("manual", label="from the backups page")
            if snap:
                st.success(f"Snapshot {snap['id']} created.")
                snapshots = client.list_snapshots()
        except (DaemonUnavailable, RequestFailed) as e:
            st.error(f"Backup failed: {e}")

    if not snapshots:
        st.write("No snapshots yet.")
        return
    rows = [
        {
            "id": s["id"],
            "time (UTC)": s["created_at"].replace("T", " ")[:19],
            "reason": s["reason"],
            "label": s.get("label") or "",
            "database bytes": s["db_size"],
            "pinned": s["pinned"],
            "verified": s["verified"],
        }
        for s in snapshots
    ]
    st.dataframe(rows, hide_index=True)

    st.subheader("Restore")
    choice = st.selectbox("Snapshot", [s["id"] for s in snapshots], key="ducksnap_restore_id")
    confirmed = st.checkbox(
        "I understand: the current database is replaced (it is saved first as a pinned pre-restore snapshot).",
        key="ducksnap_restore_confirm",
    )
    if st.button("Restore", key="ducksnap_restore", disabled=not confirmed):
        try:
            if close_connection:
                close_connection()
            result = client.restore(choice)
            st.success(
                f"Restored {result['id']}. The previous state is snapshot {result.get('pre_restore') or '(none)'}."
            )
        except (DaemonUnavailable, RequestFailed, BackupsDisabled) as e:
            st.error(f"Restore failed: {e}")
        finally:
            if reopen_connection:
                reopen_connection()
