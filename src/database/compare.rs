//! Comparing two captured databases with the bundled DuckDB: their schemas,
//! each table's row count and whether its content changed, and one table's
//! rows (added, removed, changed), plus writing one table out (`export`).
//!
//! Both files are copies (reassembled snapshots in a scratch directory),
//! ATTACHed `READ_ONLY` to one in-memory instance with extension autoload
//! and autoinstall off, a memory limit, and the scratch directory for
//! spilling. Every identifier that reaches SQL is one DuckDB itself listed
//! from the catalog, quoted ([`quote`]); a name given from outside is only
//! ever compared with those, so a hostile one is "no such table".
//!
//! Whether content changed is decided exactly, never by a hash alone:
//! see [`super::changes`] and [`super::narrow`].

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::Connection;
use serde::{Deserialize, Serialize};

use super::check::quote;

/// How much memory DuckDB may use for a comparison before it spills to the
/// scratch directory.
pub const MEMORY_LIMIT: &str = "2GB";

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("DuckDB failed while {op}: {message}")]
    DuckDb { op: &'static str, message: String },
    #[error("no such table: {given:?} (tables: {known})")]
    NoSuchTable { given: String, known: String },
    #[error("{given:?} names several tables ({known}): give it as SCHEMA.TABLE")]
    AmbiguousTable { given: String, known: String },
    #[error("no such column in {table}: {given:?} (columns: {known})")]
    NoSuchColumn {
        table: String,
        given: String,
        known: String,
    },
    #[error("{table}: {why}")]
    Key { table: String, why: String },
}

fn at(op: &'static str) -> impl Fn(duckdb::Error) -> CompareError {
    move |e| CompareError::DuckDb {
        op,
        message: e.to_string(),
    }
}

/// SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One side of a comparison: the alias its file is attached under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn alias(self) -> &'static str {
        match self {
            Side::A => "ducksnap_a",
            Side::B => "ducksnap_b",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// A table or view as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub view: bool,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

impl Relation {
    /// `schema.name` as shown to people (`main.` left out).
    pub fn shown(&self) -> String {
        if self.schema == "main" {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }

    pub(crate) fn sql(&self, side: Side) -> String {
        format!(
            "{}.{}.{}",
            quote(side.alias()),
            quote(&self.schema),
            quote(&self.name)
        )
    }
}

/// An in-memory DuckDB with up to two copies attached read-only.
pub struct Pair {
    conn: Connection,
}

impl Pair {
    /// Starts the instance; `spill` is where it may write temporary data.
    pub fn new(spill: &Path) -> Result<Pair, CompareError> {
        let config = super::check::base_config()
            .and_then(|c| c.with("memory_limit", MEMORY_LIMIT))
            .and_then(|c| c.with("temp_directory", spill.to_string_lossy()))
            .map_err(at("configuring DuckDB"))?;
        let conn = Connection::open_in_memory_with_flags(config).map_err(at("starting DuckDB"))?;
        Ok(Pair { conn })
    }

    /// Attaches the copy at `path` read-only as `side` (its WAL files are
    /// replayed in memory; the files are not written).
    pub fn attach(&self, side: Side, path: &Path) -> Result<(), CompareError> {
        self.conn
            .execute_batch(&format!(
                "ATTACH {} AS {} (READ_ONLY)",
                literal(&path.to_string_lossy()),
                quote(side.alias())
            ))
            .map_err(at("opening a snapshot read-only"))
    }

    /// Every table and view of `side`, by schema and name.
    pub fn relations(&self, side: Side) -> Result<Vec<Relation>, CompareError> {
        let mut out = Vec::new();
        let mut st = self
            .conn
            .prepare(
                "SELECT schema_name, table_name, false FROM duckdb_tables() WHERE database_name = ? AND NOT temporary \
                 UNION ALL SELECT schema_name, view_name, true FROM duckdb_views() WHERE database_name = ? AND NOT internal AND NOT temporary \
                 ORDER BY 1, 2",
            )
            .map_err(at("listing tables"))?;
        let rows = st
            .query_map([side.alias(), side.alias()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(at("listing tables"))?;
        for row in rows {
            let (schema, name, view) = row.map_err(at("listing tables"))?;
            let columns = self.columns(side, &schema, &name)?;
            let primary_key = self.primary_key(side, &schema, &name)?;
            out.push(Relation {
                schema,
                name,
                view,
                columns,
                primary_key,
            });
        }
        Ok(out)
    }

    fn columns(&self, side: Side, schema: &str, table: &str) -> Result<Vec<Column>, CompareError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT column_name, data_type FROM duckdb_columns() \
                 WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
            )
            .map_err(at("listing columns"))?;
        st.query_map([side.alias(), schema, table], |r| {
            Ok(Column {
                name: r.get(0)?,
                data_type: r.get(1)?,
            })
        })
        .map_err(at("listing columns"))?
        .collect::<duckdb::Result<_>>()
        .map_err(at("listing columns"))
    }

    fn primary_key(
        &self,
        side: Side,
        schema: &str,
        table: &str,
    ) -> Result<Vec<String>, CompareError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT constraint_column_names FROM duckdb_constraints() \
                 WHERE database_name = ? AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            )
            .map_err(at("listing keys"))?;
        let keys: Vec<duckdb::types::Value> = st
            .query_map([side.alias(), schema, table], |r| r.get(0))
            .map_err(at("listing keys"))?
            .collect::<duckdb::Result<_>>()
            .map_err(at("listing keys"))?;
        Ok(match keys.into_iter().next() {
            Some(duckdb::types::Value::List(cols)) => cols
                .into_iter()
                .filter_map(|v| match v {
                    duckdb::types::Value::Text(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
    }

    /// The SQL a view was defined with (`None`: a table).
    pub fn definition(&self, side: Side, t: &Relation) -> Result<Option<String>, CompareError> {
        if !t.view {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT sql FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?",
                [side.alias(), t.schema.as_str(), t.name.as_str()],
                |r| r.get(0),
            )
            .map_err(at("reading a view's definition"))
    }

    /// Whether the first query's rows, as a multiset, hold a row the
    /// second's do not (`EXCEPT ALL`).
    pub fn exceeds(&self, a: &str, b: &str) -> Result<bool, CompareError> {
        self.conn
            .query_row(&format!("SELECT EXISTS ({a} EXCEPT ALL {b})"), [], |r| {
                r.get(0)
            })
            .map_err(at("comparing rows"))
    }

    /// Row count of a table or view.
    pub fn count(&self, side: Side, t: &Relation) -> Result<u64, CompareError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {}", t.sql(side)), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(at("counting rows"))
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// The relation `given` names among `rels`, compared exactly:
/// `SCHEMA.TABLE`, or `TABLE` — in `main` as DuckDB resolves it, else in
/// the one schema that has it.
pub fn find<'a>(rels: &'a [Relation], given: &str) -> Result<&'a Relation, CompareError> {
    if let Some(r) = rels.iter().find(|r| {
        format!("{}.{}", r.schema, r.name) == given || (r.schema == "main" && r.name == given)
    }) {
        return Ok(r);
    }
    let hits: Vec<&Relation> = rels.iter().filter(|r| r.name == given).collect();
    let known = || {
        let mut names: Vec<String> = rels.iter().map(Relation::shown).collect();
        names.dedup();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    };
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(CompareError::NoSuchTable {
            given: given.chars().take(80).collect(),
            known: known(),
        }),
        many => Err(CompareError::AmbiguousTable {
            given: given.to_string(),
            known: many
                .iter()
                .map(|r| format!("{}.{}", r.schema, r.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Relations by (schema, name).
pub fn by_name(rels: Vec<Relation>) -> BTreeMap<(String, String), Relation> {
    rels.into_iter()
        .map(|r| ((r.schema.clone(), r.name.clone()), r))
        .collect()
}

/// The formats `export` writes, by the extension of `--to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// DuckDB's CSV writer with a header line: what `COPY t TO 'f.csv'
    /// (HEADER)` writes.
    Csv,
    /// A standalone DuckDB database holding the one table.
    Duckdb,
}

impl Pair {
    /// Writes table `t` of `side` to `to` (which must not exist) in
    /// `format`; returns the number of rows written.
    pub fn export(
        &self,
        side: Side,
        t: &Relation,
        to: &Path,
        format: Format,
    ) -> Result<u64, CompareError> {
        let dest = literal(&to.to_string_lossy());
        match format {
            Format::Csv => self
                .conn
                .execute(
                    &format!("COPY {} TO {dest} (FORMAT csv, HEADER)", t.sql(side)),
                    [],
                )
                .map(|n| n as u64)
                .map_err(at("writing CSV")),
            Format::Duckdb => {
                self.conn
                    .execute_batch(&format!(
                        "ATTACH {dest} AS ducksnap_out; \
                         CREATE TABLE ducksnap_out.main.{} AS FROM {}; \
                         DETACH ducksnap_out;",
                        quote(&t.name),
                        t.sql(side)
                    ))
                    .map_err(at("writing a DuckDB file"))?;
                self.count(side, t)
            }
        }
    }
}
