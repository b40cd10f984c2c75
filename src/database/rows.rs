//! One table's rows, side A against side B: added, removed and — with a
//! key (given, or the table's primary key) — changed. Counts are exact; at
//! most `limit` rows of each kind are returned, ordered, as text (NULL as
//! `None`).
//!
//! Without a key the sides are compared as multisets over the columns both
//! have (`EXCEPT ALL`: a row present twice on one side and once on the
//! other is one added or removed row). Columns retyped between the sides
//! are compared as text. Only the rows left after narrowing (rows paired
//! by position or row id and found equal by `IS DISTINCT FROM` are left
//! out of both sides: [`super::narrow`]) go to the comparison. Intermediate results go to temporary
//! tables of the in-memory instance, which spill to the scratch directory
//! beyond the memory limit.

use serde::{Deserialize, Serialize};

use super::check::quote;
use super::compare::{CompareError, Pair, Relation, Side};
use super::narrow::{Narrowing, narrow};

pub type Row = Vec<Option<String>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedRow {
    pub before: Row,
    pub after: Row,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDiff {
    pub table: String,
    /// The key rows are matched by; empty: compared as multisets.
    pub key: Vec<String>,
    pub columns: Vec<String>,
    pub added: u64,
    pub removed: u64,
    /// Rows whose key is on both sides with other values (with a key only).
    pub changed: Option<u64>,
    pub limit: u64,
    pub added_rows: Vec<Row>,
    pub removed_rows: Vec<Row>,
    pub changed_rows: Vec<ChangedRow>,
    /// How far the comparison was narrowed to the rows that differ
    /// (absent: views and tables with a `rowid` column, compared whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrowing: Option<Narrowing>,
}

fn at(op: &'static str) -> impl Fn(duckdb::Error) -> CompareError {
    move |e| CompareError::DuckDb {
        op,
        message: e.to_string(),
    }
}

/// A compared column: its name, and whether it is compared as text (the
/// sides give it different types).
struct Col {
    name: String,
    as_text: bool,
}

impl Col {
    /// The column of alias `p` (`x`, `y`; empty: unqualified).
    fn expr(&self, p: &str) -> String {
        let dot = if p.is_empty() { "" } else { "." };
        let q = format!("{p}{dot}{}", quote(&self.name));
        if self.as_text {
            format!("CAST({q} AS VARCHAR)")
        } else {
            q
        }
    }
}

fn exprs<'a>(cols: impl IntoIterator<Item = &'a Col>, p: &str) -> Vec<String> {
    cols.into_iter().map(|c| c.expr(p)).collect()
}

/// The columns compared: those on both sides, in A's order.
fn common(ta: &Relation, tb: &Relation) -> Vec<Col> {
    ta.columns
        .iter()
        .filter_map(|ca| {
            let cb = tb.columns.iter().find(|c| c.name == ca.name)?;
            Some(Col {
                name: ca.name.clone(),
                as_text: ca.data_type != cb.data_type,
            })
        })
        .collect()
}

/// The key: `given` (checked against both sides' columns), else the
/// primary key both sides share, else none.
fn key_of(
    ta: &Relation,
    tb: &Relation,
    given: Option<&[String]>,
) -> Result<Vec<String>, CompareError> {
    let Some(given) = given else {
        return Ok(if ta.primary_key == tb.primary_key {
            ta.primary_key.clone()
        } else {
            Vec::new()
        });
    };
    for k in given {
        for t in [ta, tb] {
            if !t.columns.iter().any(|c| &c.name == k) {
                return Err(CompareError::NoSuchColumn {
                    table: t.shown(),
                    given: k.chars().take(80).collect(),
                    known: t
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(given.to_vec())
}

/// Compares table `ta` (side A) with `tb` (side B).
pub fn diff_rows(
    pair: &Pair,
    ta: &Relation,
    tb: &Relation,
    key: Option<&[String]>,
    limit: u64,
) -> Result<RowDiff, CompareError> {
    let cols = common(ta, tb);
    if cols.is_empty() {
        return Err(CompareError::Key {
            table: tb.shown(),
            why: "the two sides have no column in common".into(),
        });
    }
    let key = key_of(ta, tb, key)?;
    if !key.is_empty() && (key != ta.primary_key || key != tb.primary_key) {
        // A declared primary key is unique already: DuckDB enforces it.
        unique(pair, &ta.sql(Side::A), &key, ta)?;
        unique(pair, &tb.sql(Side::B), &key, tb)?;
    }
    let narrowed = narrow(pair, ta, tb, &exprs(&cols, ""))?;
    let (a, b) = (narrowed.a.as_str(), narrowed.b.as_str());
    if key.is_empty() {
        pair.conn().execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_added AS SELECT {0} FROM {b} EXCEPT ALL SELECT {0} FROM {a};
             CREATE OR REPLACE TEMP TABLE ducksnap_removed AS SELECT {0} FROM {a} EXCEPT ALL SELECT {0} FROM {b};",
            exprs(&cols, "").join(", ")
        ))
        .map_err(at("comparing rows"))?;
    } else {
        keyed(pair, a, b, &cols, &key)?;
    }
    let mut diff = collect(pair, tb.shown(), key, &cols, limit)?;
    diff.narrowing = narrowed.narrowing;
    Ok(diff)
}

/// Refuses a key that does not identify one row on a side.
fn unique(pair: &Pair, rel: &str, key: &[String], t: &Relation) -> Result<(), CompareError> {
    let k: Vec<String> = key.iter().map(|c| quote(c)).collect();
    let dups: i64 = pair
        .conn()
        .query_row(
            &format!(
                "SELECT count(*) - count(DISTINCT row({})) FROM {rel}",
                k.join(", ")
            ),
            [],
            |r| r.get(0),
        )
        .map_err(at("checking the key"))?;
    if dups > 0 {
        return Err(CompareError::Key {
            table: t.shown(),
            why: format!(
                "the key ({}) is not unique: {dups} duplicate row(s); give another --key or none",
                key.join(", ")
            ),
        });
    }
    Ok(())
}

/// Added, removed and changed rows by key, into temporary tables.
fn keyed(pair: &Pair, a: &str, b: &str, cols: &[Col], key: &[String]) -> Result<(), CompareError> {
    let on: Vec<String> = key
        .iter()
        .map(|k| format!("x.{0} IS NOT DISTINCT FROM y.{0}", quote(k)))
        .collect();
    let on = on.join(" AND ");
    let rest: Vec<&Col> = cols.iter().filter(|c| !key.contains(&c.name)).collect();
    let differs = if rest.is_empty() {
        "false".to_string()
    } else {
        format!(
            "row({}) IS DISTINCT FROM row({})",
            exprs(rest.iter().copied(), "x").join(", "),
            exprs(rest.iter().copied(), "y").join(", ")
        )
    };
    let named = |p: &str, n: &str| {
        exprs(cols, p)
            .into_iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS {n}{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_added AS SELECT {ya} FROM {b} y WHERE NOT EXISTS (SELECT 1 FROM {a} x WHERE {on});
             CREATE OR REPLACE TEMP TABLE ducksnap_removed AS SELECT {xa} FROM {a} x WHERE NOT EXISTS (SELECT 1 FROM {b} y WHERE {on});
             CREATE OR REPLACE TEMP TABLE ducksnap_changed AS SELECT {bef}, {aft} FROM {a} x JOIN {b} y ON {on} WHERE {differs};",
            ya = exprs(cols, "y").join(", "),
            xa = exprs(cols, "x").join(", "),
            bef = named("x", "b"),
            aft = named("y", "a"),
        ))
        .map_err(at("comparing rows by key"))
}

/// Counts and the first `limit` rows of the temporary tables.
fn collect(
    pair: &Pair,
    table: String,
    key: Vec<String>,
    cols: &[Col],
    limit: u64,
) -> Result<RowDiff, CompareError> {
    let n = cols.len();
    let count = |t: &str| -> Result<u64, CompareError> {
        pair.conn()
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| v as u64)
            .map_err(at("counting rows"))
    };
    let rows = |t: &str, width: usize| -> Result<Vec<Row>, CompareError> {
        let text: Vec<String> = (1..=width)
            .map(|i| format!("CAST(#{i} AS VARCHAR)"))
            .collect();
        let mut st = pair
            .conn()
            .prepare(&format!(
                "SELECT {} FROM (FROM {t} ORDER BY ALL LIMIT {limit})",
                text.join(", ")
            ))
            .map_err(at("reading rows"))?;
        st.query_map([], |r| {
            (0..width).map(|i| r.get::<_, Option<String>>(i)).collect()
        })
        .map_err(at("reading rows"))?
        .collect::<duckdb::Result<_>>()
        .map_err(at("reading rows"))
    };
    let keyed = !key.is_empty();
    let changed_rows = if keyed {
        rows("ducksnap_changed", 2 * n)?
            .into_iter()
            .map(|mut r| {
                let after = r.split_off(n);
                ChangedRow { before: r, after }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RowDiff {
        table,
        columns: cols.iter().map(|c| c.name.clone()).collect(),
        added: count("ducksnap_added")?,
        removed: count("ducksnap_removed")?,
        changed: if keyed {
            Some(count("ducksnap_changed")?)
        } else {
            None
        },
        limit,
        added_rows: rows("ducksnap_added", n)?,
        removed_rows: rows("ducksnap_removed", n)?,
        changed_rows,
        key,
        narrowing: None,
    })
}
