//! Narrowing a row diff to the parts of a table that differ, so that a 1%
//! change to a large table is compared at the cost of a scan, not of a
//! multiset difference of every row.
//!
//! Both sides are cut into ranges of [`RANGE`] row ids. Each range gets a
//! fingerprint: its row count, and the sum (HUGEINT) and XOR of
//! `hash(every compared column)` over its rows. Ranges whose fingerprints
//! are equal on both sides are taken to hold the same rows; the rows of the
//! other ranges, on both sides, are copied into temporary tables and
//! compared exactly by the caller. This is exact whatever the partition is
//! (equal multisets per range make equal multisets in all), as long as the
//! fingerprints do not collide: a changed range goes unseen only if its
//! count, sum and XOR of 64-bit hashes all come out equal, which for data
//! not crafted to collide is below 2^-64 per range.
//!
//! DuckDB keeps a row's row id through UPDATEs and DELETEs of other rows and
//! gives appended rows new ones, so an update, a cascade delete or a few
//! inserts leave the other ranges' fingerprints equal. When rows have moved
//! (a table rebuilt, or row groups vacuumed after deletes) most ranges
//! differ, and the tables are compared whole: exact, only slower.
//!
//! Not narrowed: views (no row ids) and tables with a column named `rowid`
//! (it hides the row id).

use serde::{Deserialize, Serialize};

use super::compare::{CompareError, Pair, Relation, Side};

/// Row ids per fingerprinted range (DuckDB's vector size).
pub const RANGE: u64 = 2048;

/// Up to this many runs of differing ranges are read by row-id filters
/// (which DuckDB pushes into the scan, skipping the other row groups);
/// beyond it, by a join with the list of ranges.
const MAX_FILTERS: usize = 64;

/// How far a comparison was narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrowing {
    /// Ranges of row ids on either side.
    pub ranges: u64,
    /// Ranges whose fingerprints differ: their rows were compared.
    pub ranges_differing: u64,
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
/// `hashed` (the same on both sides).
pub fn narrow(
    pair: &Pair,
    ta: &Relation,
    tb: &Relation,
    hashed: &[String],
) -> Result<Narrowed, CompareError> {
    let (a, b) = (ta.sql(Side::A), tb.sql(Side::B));
    if !has_rowid(ta) || !has_rowid(tb) || hashed.is_empty() {
        return Ok(Narrowed {
            a,
            b,
            narrowing: None,
        });
    }
    let h = format!("hash({})", hashed.join(", "));
    let conn = pair.conn();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ducksnap_fa AS SELECT rowid // {RANGE} AS g, count(*) AS n, sum({h}::HUGEINT) AS s, bit_xor({h}) AS x FROM {a} GROUP BY g;
         CREATE OR REPLACE TEMP TABLE ducksnap_fb AS SELECT rowid // {RANGE} AS g, count(*) AS n, sum({h}::HUGEINT) AS s, bit_xor({h}) AS x FROM {b} GROUP BY g;
         CREATE OR REPLACE TEMP TABLE ducksnap_dg AS SELECT g FROM ducksnap_fa FULL JOIN ducksnap_fb USING (g)
           WHERE ducksnap_fa.n IS DISTINCT FROM ducksnap_fb.n OR ducksnap_fa.s IS DISTINCT FROM ducksnap_fb.s OR ducksnap_fa.x IS DISTINCT FROM ducksnap_fb.x;"
    ))
    .map_err(at("fingerprinting ranges of rows"))?;
    let (ranges, differing): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM (SELECT g FROM ducksnap_fa UNION SELECT g FROM ducksnap_fb)), (SELECT count(*) FROM ducksnap_dg)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(at("fingerprinting ranges of rows"))?;
    let narrowing = Some(Narrowing {
        ranges: ranges as u64,
        ranges_differing: differing as u64,
    });
    if differing * 2 > ranges {
        // Most of the table differs: copying it first would only cost more.
        return Ok(Narrowed { a, b, narrowing });
    }
    let filter = filter(pair)?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ducksnap_ca AS SELECT * FROM {a} WHERE {filter};
         CREATE OR REPLACE TEMP TABLE ducksnap_cb AS SELECT * FROM {b} WHERE {filter};"
    ))
    .map_err(at("reading the rows of differing ranges"))?;
    Ok(Narrowed {
        a: "ducksnap_ca".into(),
        b: "ducksnap_cb".into(),
        narrowing,
    })
}

/// The WHERE clause selecting the rows of the differing ranges.
fn filter(pair: &Pair) -> Result<String, CompareError> {
    // Runs of consecutive differing ranges, as (first, last).
    let mut st = pair
        .conn()
        .prepare(
            "SELECT min(g), max(g) FROM (SELECT g, g - row_number() OVER (ORDER BY g) AS run FROM ducksnap_dg) GROUP BY run ORDER BY 1",
        )
        .map_err(at("listing differing ranges"))?;
    let runs: Vec<(i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(at("listing differing ranges"))?
        .collect::<duckdb::Result<_>>()
        .map_err(at("listing differing ranges"))?;
    let r = RANGE as i64;
    Ok(match runs.len() {
        0 => "false".into(),
        n if n <= MAX_FILTERS => runs
            .iter()
            .map(|(lo, hi)| format!("rowid BETWEEN {} AND {}", lo * r, (hi + 1) * r - 1))
            .collect::<Vec<_>>()
            .join(" OR "),
        _ => format!("rowid // {RANGE} IN (SELECT g FROM ducksnap_dg)"),
    })
}
