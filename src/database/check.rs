//! Checking captured bytes with the bundled DuckDB.
//!
//! Opens, read-only and with extension autoload and autoinstall off, exactly
//! the bytes a snapshot stores: a staged copy, a reassembled snapshot, or
//! the live database while capture's read lock keeps writers out (DuckDB's
//! read-only open shares that lock and uses `O_RDONLY`). Opening replays the
//! WAL in memory and checksums the blocks it reads; listing every table and
//! counting its rows reads the metadata and the row-group headers. `deep`
//! additionally scans every column of every table. A one-shot check starts
//! its own instance with external access disabled; the daemon keeps one
//! instance ([`keep_instance`]) and ATTACHes each file read-only.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use duckdb::{AccessMode, Config, Connection};
use serde::{Deserialize, Serialize};

use crate::database::duckfile::{BUNDLED_STORAGE_VERSION, Header};

/// Outcome of opening the captured copy with the bundled DuckDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Opened read-only, every table listed and counted.
    Verified,
    /// Not opened, e.g. a storage version newer than the bundled DuckDB reads.
    NotVerified,
}

/// The documented lower-case word (as in JSON, manifests and the config).
impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckStatus::Verified => "verified",
            CheckStatus::NotVerified => "not_verified",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub schema: String,
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub status: CheckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Version of the DuckDB library that checked it.
    pub duckdb_version: String,
    pub tables: Vec<TableCount>,
}

#[derive(Debug, thiserror::Error)]
#[error("DuckDB check of {path} failed while {op}: {message}")]
pub struct CheckError {
    pub path: String,
    pub op: &'static str,
    pub message: String,
}

/// The bundled DuckDB's version, once some instance of this process said it.
static VERSION: OnceLock<String> = OnceLock::new();

/// Version string of the bundled DuckDB library.
pub fn bundled_version() -> String {
    if let Some(v) = VERSION.get() {
        return v.clone();
    }
    Connection::open_in_memory()
        .and_then(|c| version_from(&c))
        .unwrap_or_else(|_| "unknown".into())
}

/// The version, asked of `conn` only the first time.
fn version_from(conn: &Connection) -> duckdb::Result<String> {
    if let Some(v) = VERSION.get() {
        return Ok(v.clone());
    }
    let v: String = conn.query_row("SELECT version()", [], |r| r.get(0))?;
    Ok(VERSION.get_or_init(|| v).clone())
}

/// The daemon's DuckDB instance, kept between checks (see [`keep_instance`]).
static SHARED: OnceLock<Mutex<Option<Connection>>> = OnceLock::new();

/// Name under which a shared instance attaches the file it checks.
const ALIAS: &str = "ducksnap_check";

/// Keeps one in-memory DuckDB instance for every later check in this process
/// (the daemon calls it at start-up): each check then ATTACHes its file
/// read-only and DETACHes it afterwards, instead of starting an instance
/// (tens of milliseconds, most of a small snapshot's time). An instance
/// whose DETACH fails is dropped and the next check starts a fresh one.
pub fn keep_instance() {
    let slot = SHARED.get_or_init(|| Mutex::new(None));
    let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        match shared_instance() {
            Ok(c) => *g = Some(c),
            Err(e) => {
                tracing::warn!(event = "check.instance_failed", error = %e, "cannot start the shared DuckDB instance; each check starts its own")
            }
        }
    }
}

/// The settings every DuckDB instance ducksnap starts begins with:
/// extension autoload and autoinstall off (nothing is fetched or loaded
/// because a file or a name asked for it).
pub fn base_config() -> duckdb::Result<Config> {
    Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

fn shared_instance() -> duckdb::Result<Connection> {
    // External access stays on: ATTACH needs it. Only our own fixed queries
    // (identifiers quoted) ever run here.
    let config = base_config()?.threads(1)?;
    Connection::open_in_memory_with_flags(config)
}

/// SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Opens `db` read-only (a copy, or the live file under our read lock; see
/// `capture`) and lists every table with its row count.
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
    if let Some(slot) = SHARED.get() {
        // Held for the check only; checks run one at a time anyway.
        let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(shared_instance().map_err(err("starting DuckDB"))?);
        }
        let conn = g.as_ref().expect("just set");
        let path = db.to_string_lossy();
        if let Err(e) =
            conn.execute_batch(&format!("ATTACH {} AS {ALIAS} (READ_ONLY)", literal(&path)))
        {
            // Never leave the alias behind to fail every later check.
            if conn
                .execute_batch(&format!("DETACH DATABASE IF EXISTS {ALIAS}"))
                .is_err()
            {
                *g = None;
            }
            return Err(err("opening read-only")(e));
        }
        tracing::debug!(event = "check.attached", path = %db.display(), deep, "checking with the kept DuckDB instance");
        let result = check_tables(conn, ALIAS, deep).map_err(|(op, e)| err(op)(e));
        if let Err(e) = conn.execute_batch(&format!("DETACH {ALIAS}")) {
            tracing::warn!(event = "check.detach_failed", error = %e, "dropping the shared DuckDB instance");
            *g = None;
        }
        return result;
    }
    let config = base_config()
        .and_then(|c| c.access_mode(AccessMode::ReadOnly))
        .and_then(|c| c.enable_external_access(false))
        .and_then(|c| c.threads(1))
        .map_err(err("configuring"))?;
    let conn = Connection::open_with_flags(db, config).map_err(err("opening read-only"))?;
    let name: String = conn
        .query_row("SELECT current_database()", [], |r| r.get(0))
        .map_err(err("opening read-only"))?;
    check_tables(&conn, &name, deep).map_err(|(op, e)| err(op)(e))
}

/// Lists every table of database `name` on `conn` and counts its rows
/// (`deep`: reads every column too).
fn check_tables(
    conn: &Connection,
    name: &str,
    deep: bool,
) -> Result<CheckInfo, (&'static str, duckdb::Error)> {
    let at = |op: &'static str| move |e: duckdb::Error| (op, e);
    // From this instance (starting a second one just for the version would
    // cost as much as the whole check of a small database), and only once
    // per process.
    let version = version_from(conn).map_err(at("asking the version"))?;
    let mut tables = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT schema_name, table_name FROM duckdb_tables() \
                 WHERE database_name = ? AND NOT temporary \
                 ORDER BY schema_name, table_name",
            )
            .map_err(at("listing tables"))?;
        let rows = stmt
            .query_map([name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(at("listing tables"))?;
        for row in rows {
            let (schema, table) = row.map_err(at("listing tables"))?;
            tables.push(TableCount {
                schema,
                name: table,
                rows: 0,
            });
        }
    }
    for t in &mut tables {
        let q = format!(
            "SELECT count(*) FROM {}.{}.{}",
            quote(name),
            quote(&t.schema),
            quote(&t.name)
        );
        let n: i64 = conn
            .query_row(&q, [], |r| r.get(0))
            .map_err(at("counting rows"))?;
        t.rows = n as u64;
        if deep {
            scan_columns(conn, name, &t.schema, &t.name).map_err(at("scanning columns"))?;
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
fn scan_columns(conn: &Connection, db: &str, schema: &str, table: &str) -> duckdb::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT column_name FROM duckdb_columns() \
         WHERE database_name = ? AND schema_name = ? AND table_name = ?",
    )?;
    let cols: Vec<String> = stmt
        .query_map([db, schema, table], |r| r.get(0))?
        .collect::<duckdb::Result<_>>()?;
    if cols.is_empty() {
        return Ok(());
    }
    let aggs: Vec<String> = cols
        .iter()
        .map(|c| format!("count({})", quote(c)))
        .collect();
    let q = format!(
        "SELECT {} FROM {}.{}.{}",
        aggs.join(", "),
        quote(db),
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
        "SELECT {} FROM {}.{}.{}",
        hashes.join(", "),
        quote(db),
        quote(schema),
        quote(table)
    );
    conn.query_row(&q, [], |_| Ok(()))
}

/// Quotes an identifier for DuckDB SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
