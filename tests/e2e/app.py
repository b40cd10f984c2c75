"""A stand-in for the Streamlit + DuckDB application: its schema and the
cascade delete it protects with a pre-delete snapshot."""

from ducksnap import with_snapshot


def create_schema(con, customers=50, orders_per_customer=20):
    con.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name VARCHAR)")
    con.execute("CREATE TABLE orders(id INTEGER, customer_id INTEGER, amount DOUBLE)")
    con.execute(f"INSERT INTO customers SELECT range, 'customer ' || range FROM range({customers})")
    con.execute(
        f"INSERT INTO orders SELECT range, range % {customers}, range * 1.5 FROM range({customers * orders_per_customer})"
    )


def delete_customer(con, customer_id):
    """The destructive operation: a customer and all their orders."""
    con.execute("BEGIN")
    con.execute("DELETE FROM orders WHERE customer_id = ?", [customer_id])
    con.execute("DELETE FROM customers WHERE id = ?", [customer_id])
    con.execute("COMMIT")


def counts(con, customer_id):
    c = con.execute("SELECT count(*) FROM customers WHERE id = ?", [customer_id]).fetchone()[0]
    o = con.execute("SELECT count(*) FROM orders WHERE customer_id = ?", [customer_id]).fetchone()[0]
    return c, o


def protected_delete(con, customer_id, client=None, on_error="raise"):
    """How the app calls it: a pre-delete snapshot first, labelled."""
    guarded = with_snapshot(
        reason="pre-delete",
        label=f"delete customer {customer_id}",
        on_error=on_error,
        client=client,
        connection=con,
    )(delete_customer)
    return guarded(con, customer_id)
