//! Narrowing a row diff to the parts of a table that differ, so that a 1%
//! change to a large table is compared at the cost of a scan, not of a
//! multiset difference of every row — without trusting any hash.
//!
//! Both sides are cut into ranges of [`RANGE`] row ids and each range's
//! rows counted. Rows are then paired and compared with DuckDB's own
//! `IS DISTINCT FROM` over the tuple of compared columns — exact, the same
//! equality `EXCEPT ALL` uses (NULL, `[]` and `[NULL]` are different values
//! at every nesting level; `-0.0` equals `0.0`, as in DuckDB):
//!
//! - in ranges with as many rows on both sides, by position
//!   (`POSITIONAL JOIN` of the two scans, both restricted to those ranges,
//!   the row id part of the tuple): an `UPDATE` leaves every row where it
//!   was, so the pairs line up;
//! - in the others (rows inserted or deleted), by row id (a join).
//!
//! A pair whose row ids and values are equal is the same row on both sides
//! and is left out; every other row — changed, on one side only, or
//! paired with a row at another row id because something moved — is copied
//! into temporary tables and compared exactly by the caller (`EXCEPT ALL`,
//! or a join on a key). Leaving out equal rows from both sides does not
//! change a multiset difference, so the result is DuckDB's own comparison
//! of the two tables; a pairing that lines up badly only leaves more rows
//! to compare, never hides one. No hash decides anything.
//!
//! DuckDB keeps a row's row id through UPDATEs and DELETEs of other rows and
//! gives appended rows new ones, so an update, a cascade delete or a few
//! inserts — contiguous or scattered — leave little to compare. When rows
//! have moved (a table rebuilt, or row groups vacuumed after deletes) most
//! rows differ, and the tables are compared whole: exact, only slower.
//!
//! Not narrowed: views (no row ids) and tables with a column named `rowid`
//! (it hides the row id). Grouping is by position (`GROUP BY 1`) and every
//! column is quoted, so no column name can capture one of these queries'.

use serde::{Deserialize, Serialize};

use super::compare::{CompareError, Pair, Relation, Side};

/// Row ids per range (DuckDB's vector size).
pub const RANGE: u64 = 2048;

/// Up to this many runs of ranges are selected by row-id filters (which
/// DuckDB pushes into the scan, skipping the other row groups); beyond it,
/// by a join with the list of ranges.
const MAX_FILTERS: usize = 64;

/// How far a comparison was narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrowing {
    /// Ranges of row ids on either side.
    pub ranges: u64,
    /// Ranges holding a row that is not the same on the other side.
    pub ranges_differing: u64,
    /// Rows of both sides compared exactly: those not paired with an equal
    /// row; all of them when most rows differ.
    pub rows_compared: u64,
}

/// The two relations to compare rows of (SQL), and how they were narrowed
/// (`None`: the tables whole).
pub struct Narrowed {
    pub a: String,
    pub b: String,
    pub narrowing: Option<Narrowing>,
}

fn at(op: &'static str) -> impl Fn(duckdb::Error) -> CompareError {
    move |e| CompareError::DuckDb {
        op,
        message: e.to_string(),
    }
}

/// Whether `t` has row ids that a query can name.
fn has_rowid(t: &Relation) -> bool {
    !t.view
        && !t
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case("rowid"))
}

/// Narrows the comparison of `ta` and `tb` over the column expressions
/// `compared` (the same on both sides).
pub fn narrow(
    pair: &Pair,
    ta: &Relation,
    tb: &Relation,
    compared: &[String],
) -> Result<Narrowed, CompareError> {
    let (a, b) = (ta.sql(Side::A), tb.sql(Side::B));
    if !has_rowid(ta) || !has_rowid(tb) || compared.is_empty() {
        return Ok(Narrowed {
            a,
            b,
            narrowing: None,
        });
    }
    let v = format!("row({})", compared.join(", "));
    let (ranges, rows) = count_ranges(pair, &a, &b)?;
    let uneven = filter(pair, "ducksnap_uneven", false)?;
    let even = filter(pair, "ducksnap_uneven", true)?;
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_dr AS SELECT x.r AS ra, y.r AS rb
               FROM (SELECT rowid AS r, {v} AS v FROM {a} WHERE {even}) x
               POSITIONAL JOIN (SELECT rowid AS r, {v} AS v FROM {b} WHERE {even}) y
               WHERE x.r IS DISTINCT FROM y.r OR x.v IS DISTINCT FROM y.v;
             INSERT INTO ducksnap_dr SELECT x.r, y.r
               FROM (SELECT rowid AS r, {v} AS v FROM {a} WHERE {uneven}) x
               FULL JOIN (SELECT rowid AS r, {v} AS v FROM {b} WHERE {uneven}) y ON x.r = y.r
               WHERE x.v IS DISTINCT FROM y.v;
             CREATE OR REPLACE TEMP TABLE ducksnap_dg AS
               SELECT DISTINCT g FROM (SELECT ra // {RANGE} AS g FROM ducksnap_dr UNION ALL SELECT rb // {RANGE} FROM ducksnap_dr)
               WHERE g IS NOT NULL;"
        ))
        .map_err(at("pairing rows"))?;
    let (compared, differing): (i64, i64) = pair
        .conn()
        .query_row(
            "SELECT (SELECT count(ra) + count(rb) FROM ducksnap_dr), (SELECT count(*) FROM ducksnap_dg)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(at("pairing rows"))?;
    let (compared, differing) = (compared as u64, differing as u64);
    let whole = compared * 2 > rows;
    let narrowing = Some(Narrowing {
        ranges,
        ranges_differing: differing,
        rows_compared: if whole { rows } else { compared },
    });
    if whole {
        // Most rows differ (a table rebuilt in another order): copying
        // them first would only cost more.
        return Ok(Narrowed { a, b, narrowing });
    }
    let differ = filter(pair, "ducksnap_dg", false)?;
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_ca AS SELECT * FROM {a} WHERE ({differ}) AND rowid IN (SELECT ra FROM ducksnap_dr);
             CREATE OR REPLACE TEMP TABLE ducksnap_cb AS SELECT * FROM {b} WHERE ({differ}) AND rowid IN (SELECT rb FROM ducksnap_dr);"
        ))
        .map_err(at("reading the rows that differ"))?;
    Ok(Narrowed {
        a: "ducksnap_ca".into(),
        b: "ducksnap_cb".into(),
        narrowing,
    })
}

/// Counts each range's rows on both sides; the ranges whose counts differ
/// (or that one side lacks) go to `ducksnap_uneven`. Returns the number of
/// ranges and the rows of both sides.
fn count_ranges(pair: &Pair, a: &str, b: &str) -> Result<(u64, u64), CompareError> {
    let conn = pair.conn();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ducksnap_na AS SELECT rowid // {RANGE} AS g, count(*) AS n FROM {a} GROUP BY 1;
         CREATE OR REPLACE TEMP TABLE ducksnap_nb AS SELECT rowid // {RANGE} AS g, count(*) AS n FROM {b} GROUP BY 1;
         CREATE OR REPLACE TEMP TABLE ducksnap_uneven AS SELECT g FROM ducksnap_na FULL JOIN ducksnap_nb USING (g)
           WHERE ducksnap_na.n IS DISTINCT FROM ducksnap_nb.n;"
    ))
    .map_err(at("counting ranges of rows"))?;
    let (ranges, rows): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM (SELECT g FROM ducksnap_na UNION SELECT g FROM ducksnap_nb)),
                    (SELECT coalesce(sum(n), 0) FROM ducksnap_na)::BIGINT + (SELECT coalesce(sum(n), 0) FROM ducksnap_nb)::BIGINT",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(at("counting ranges of rows"))?;
    Ok((ranges as u64, rows as u64))
}

/// The WHERE clause selecting the rows of the ranges listed in `table` (a
/// temporary table with a column `g`), or with `outside`, of every other
/// range.
fn filter(pair: &Pair, table: &str, outside: bool) -> Result<String, CompareError> {
    // Runs of consecutive ranges, as (first, last).
    let mut st = pair
        .conn()
        .prepare(&format!(
            "SELECT min(g), max(g) FROM (SELECT g, g - row_number() OVER (ORDER BY g) AS run FROM {table}) GROUP BY run ORDER BY 1"
        ))
        .map_err(at("listing ranges"))?;
    let runs: Vec<(i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(at("listing ranges"))?
        .collect::<duckdb::Result<_>>()
        .map_err(at("listing ranges"))?;
    let r = RANGE as i64;
    let inside = match runs.len() {
        0 => "false".to_string(),
        n if n <= MAX_FILTERS => runs
            .iter()
            .map(|(lo, hi)| format!("rowid BETWEEN {} AND {}", lo * r, (hi + 1) * r - 1))
            .collect::<Vec<_>>()
            .join(" OR "),
        _ => format!("rowid // {RANGE} IN (SELECT g FROM {table})"),
    };
    Ok(if outside {
        format!("NOT ({inside})")
    } else {
        inside
    })
}
