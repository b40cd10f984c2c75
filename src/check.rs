//! Checking a captured copy with the bundled DuckDB.
//!
//! Only ever opens a *copy* (in staging), read-only, with extension autoload
//! and autoinstall off and external access disabled. Opening replays the WAL
//! in memory and checksums the blocks it reads; listing every table and
//! counting its rows reads the metadata and the row-group headers. `deep`
//! additionally scans every column of every table.

use std::path::Path;

use duckdb::{AccessMode, Config, Connection};

use crate::duckfile::{BUNDLED_STORAGE_VERSION, Header};
use crate::store::{CheckInfo, CheckStatus, TableCount};

#[derive(Debug, thiserror::Error)]
#[error("DuckDB check of {path} failed while {op}: {message}")]
pub struct CheckError {
    pub path: String,
    pub op: &'static str,
    pub message: String,
}

/// Version string of the bundled DuckDB library.
pub fn bundled_version() -> String {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        Connection::open_in_memory()
            .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
            .unwrap_or_else(|_| "unknown".into())
    })
    .clone()
}

/// Opens `db` (a copy) read-only and lists every table with its row count.
pub fn check_copy(db: &Path, header: &Header, deep: bool) -> Result<CheckInfo, CheckError> {
    if !header.readable_by_bundled() {
        let version = bundled_version();
        return Ok(CheckInfo {
            status: CheckStatus::NotVerified,
            reason: Some(format!(
                "not verified: storage version {} (the bundled DuckDB {version} reads up to {BUNDLED_STORAGE_VERSION})",
                header.storage_version
            )),
            duckdb_version: version,
            tables: Vec::new(),
        });
    }
    let err = |op: &'static str| {
        move |e: duckdb::Error| CheckError {
            path: db.display().to_string(),
            op,
            message: e.to_string(),
        }
    };
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.enable_external_access(false))
        .and_then(|c| c.threads(1))
        .map_err(err("configuring"))?;
    let conn = Connection::open_with_flags(db, config).map_err(err("opening read-only"))?;
    // From this instance: starting a second one just for the version would
    // cost as much as the whole check of a small database.
    let version: String = conn
        .query_row("SELECT version()", [], |r| r.get(0))
        .map_err(err("asking the version"))?;
    let mut tables = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT schema_name, table_name FROM duckdb_tables() \
                 WHERE database_name = current_database() AND NOT temporary \
                 ORDER BY schema_name, table_name",
            )
            .map_err(err("listing tables"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err("listing tables"))?;
        for row in rows {
            let (schema, name) = row.map_err(err("listing tables"))?;
            tables.push(TableCount {
                schema,
                name,
                rows: 0,
            });
        }
    }
    for t in &mut tables {
        let q = format!(
            "SELECT count(*) FROM {}.{}",
            quote(&t.schema),
            quote(&t.name)
        );
        let n: i64 = conn
            .query_row(&q, [], |r| r.get(0))
            .map_err(err("counting rows"))?;
        t.rows = n as u64;
        if deep {
            scan_columns(&conn, &t.schema, &t.name).map_err(err("scanning columns"))?;
        }
    }
    Ok(CheckInfo {
        status: CheckStatus::Verified,
        reason: None,
        duckdb_version: version,
        tables,
    })
}

/// Reads every column of a table so every data block is read and checksummed.
fn scan_columns(conn: &Connection, schema: &str, table: &str) -> duckdb::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT column_name FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = ? AND table_name = ?",
    )?;
    let cols: Vec<String> = stmt
        .query_map([schema, table], |r| r.get(0))?
        .collect::<duckdb::Result<_>>()?;
    if cols.is_empty() {
        return Ok(());
    }
    let aggs: Vec<String> = cols
        .iter()
        .map(|c| format!("count({})", quote(c)))
        .collect();
    let q = format!(
        "SELECT {} FROM {}.{}",
        aggs.join(", "),
        quote(schema),
        quote(table)
    );
    // count(col) has to look at every value's validity; hashing forces a read
    // of the values themselves.
    conn.query_row(&q, [], |_| Ok(()))?;
    let hashes: Vec<String> = cols
        .iter()
        .map(|c| format!("bit_xor(hash({}))", quote(c)))
        .collect();
    let q = format!(
        "SELECT {} FROM {}.{}",
        hashes.join(", "),
        quote(schema),
        quote(table)
    );
    conn.query_row(&q, [], |_| Ok(()))
}

/// Quotes an identifier for DuckDB SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
