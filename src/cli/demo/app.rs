//! The demo's application (`ducksnap __demo-app DB`, hidden): a separate
//! process that holds the demo's own sample database read-write, as a
//! Streamlit app would, and runs one command per line from stdin:
//! `order C` (a new order for customer C, left in the WAL), `delete C`
//! (customer C and their orders, in one transaction: the cascade),
//! `count C` (that customer's orders). It answers one line per command and
//! exits when stdin closes or says `quit`. It only ever opens the file the
//! demo created.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use duckdb::Connection;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The demo's sample database.
    db: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let config = crate::database::check::base_config()?;
    let conn = Connection::open_with_flags(&a.db, config)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", std::process::id())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let answer = match line.split_once(' ') {
            Some(("order", c)) => order(&conn, c.parse()?)?,
            Some(("delete", c)) => delete(&conn, c.parse()?)?,
            Some(("count", c)) => count(&conn, c.parse()?)?.to_string(),
            _ if line == "quit" => break,
            _ => format!("error unknown command {line:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    drop(conn);
    Ok(0)
}

fn order(conn: &Connection, customer: i64) -> anyhow::Result<String> {
    conn.execute(
        "INSERT INTO orders SELECT max(id) + 1, ?, 99.95 FROM orders",
        [customer],
    )?;
    Ok("ok".into())
}

fn delete(conn: &Connection, customer: i64) -> anyhow::Result<String> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let orders = conn.execute("DELETE FROM orders WHERE customer_id = ?", [customer])?;
    let customers = conn.execute("DELETE FROM customers WHERE id = ?", [customer])?;
    conn.execute_batch("COMMIT")?;
    Ok(format!("{orders} {customers}"))
}

fn count(conn: &Connection, customer: i64) -> anyhow::Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM orders WHERE customer_id = ?",
        [customer],
        |r| r.get(0),
    )?)
}
