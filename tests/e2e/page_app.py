"""A Streamlit + DuckDB app with the backups page, as docs/DEPLOYMENT.md
shows it: a ``st.cache_resource`` connection, a protected cascade delete, the
page, and content rendered after the page.

``streamlit run tests/e2e/page_app.py`` reads the database from ``$APP_DB``
(and the daemon from ``$DUCKSNAP_SOCKET``); AppTest calls :func:`main`.
"""

import os
import pathlib
import sys

import duckdb
import streamlit as st

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import app  # noqa: E402
from ducksnap import DucksnapError  # noqa: E402
from ducksnap.streamlit_page import render_backups_page  # noqa: E402


def main(db, client=None):
    @st.cache_resource
    def get_connection():
        return duckdb.connect(db)

    con = get_connection()
    st.title("Shop")
    orders = con.execute("SELECT count(*) FROM orders").fetchone()[0]
    st.markdown(f"orders in the database: **{orders}**")
    if st.button("Delete customer 7", key="app_delete"):
        # The pattern docs/DEPLOYMENT.md shows: no snapshot, no delete, and
        # the reason on the page instead of a traceback.
        try:
            app.protected_delete(con, 7, client=client)
        except DucksnapError as e:
            st.error(f"Customer 7 was not deleted: {e}")
        else:
            st.rerun()

    render_backups_page(client=client, connection_factory=get_connection)

    st.markdown("footer: rendered after the backups page")


if __name__ == "__main__":
    main(os.environ["APP_DB"])
