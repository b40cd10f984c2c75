//! Narrowing a row diff to the parts of a table that differ, so that a 1%
//! change to a large table is compared at the cost of a scan, not of a
//! multiset difference of every row.
//!
//! Stage one: both sides are cut into ranges of [`RANGE`] row ids. Each
//! range gets a fingerprint: its row count, and the sum (HUGEINT) and XOR of
//! `hash(every compared column)` over its rows. Ranges whose fingerprints
//! are equal on both sides are taken to hold the same rows. Stage two:
//! within the other ranges, rows are paired by row id, and a pair whose
//! hashes are equal is taken to be the same row. What is left — rows
//! changed, or on one side only — is copied into temporary tables and
//! compared exactly by the caller. Leaving out equal parts of both sides
//! does not change a multiset difference, so this is exact as long as the
//! hashes do not collide: a changed range goes unseen only if its count,
//! sum and XOR of 64-bit hashes all come out equal, a changed row only if
//! its 64-bit hash does — for data not crafted to collide, below 2^-64 per
//! range or row.
//!
//! DuckDB keeps a row's row id through UPDATEs and DELETEs of other rows and
//! gives appended rows new ones, so an update, a cascade delete or a few
//! inserts — contiguous or scattered — leave little to compare. When rows
//! have moved (a table rebuilt, or row groups vacuumed after deletes) most
//! rows differ, and the tables are compared whole: exact, only slower.
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
    /// Ranges whose fingerprints differ.
    pub ranges_differing: u64,
    /// Rows of both sides compared exactly: within the differing ranges,
    /// those whose row id holds another row (by hash) on the other side,
    /// or no row; all of them when most rows differ.
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
    let (ranges, differing, rows) = fingerprint_ranges(pair, &a, &b, &h)?;
    let filter = filter(pair, differing == ranges)?;
    let compared = pair_rows(pair, &a, &b, &h, &filter)?;
    let narrowing = Some(Narrowing {
        ranges,
        ranges_differing: differing,
        rows_compared: if compared * 2 > rows { rows } else { compared },
    });
    if compared * 2 > rows {
        // Most rows differ (a table rebuilt in another order): copying
        // them first would only cost more.
        return Ok(Narrowed { a, b, narrowing });
    }
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_ca AS SELECT * FROM {a} WHERE ({filter}) AND rowid IN (SELECT ra FROM ducksnap_dr);
             CREATE OR REPLACE TEMP TABLE ducksnap_cb AS SELECT * FROM {b} WHERE ({filter}) AND rowid IN (SELECT rb FROM ducksnap_dr);"
        ))
        .map_err(at("reading the rows that differ"))?;
    Ok(Narrowed {
        a: "ducksnap_ca".into(),
        b: "ducksnap_cb".into(),
        narrowing,
    })
}

/// Stage one: a fingerprint per range of row ids on each side, and the
/// ranges whose fingerprints differ (`ducksnap_dg`). Returns the number of
/// ranges, of differing ones, and the rows of both sides.
fn fingerprint_ranges(
    pair: &Pair,
    a: &str,
    b: &str,
    h: &str,
) -> Result<(u64, u64, u64), CompareError> {
    let conn = pair.conn();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ducksnap_fa AS SELECT rowid // {RANGE} AS g, count(*) AS n, sum({h}::HUGEINT) AS s, bit_xor({h}) AS x FROM {a} GROUP BY g;
         CREATE OR REPLACE TEMP TABLE ducksnap_fb AS SELECT rowid // {RANGE} AS g, count(*) AS n, sum({h}::HUGEINT) AS s, bit_xor({h}) AS x FROM {b} GROUP BY g;
         CREATE OR REPLACE TEMP TABLE ducksnap_dg AS SELECT g FROM ducksnap_fa FULL JOIN ducksnap_fb USING (g)
           WHERE ducksnap_fa.n IS DISTINCT FROM ducksnap_fb.n OR ducksnap_fa.s IS DISTINCT FROM ducksnap_fb.s OR ducksnap_fa.x IS DISTINCT FROM ducksnap_fb.x;"
    ))
    .map_err(at("fingerprinting ranges of rows"))?;
    let (ranges, differing, rows): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM (SELECT g FROM ducksnap_fa UNION SELECT g FROM ducksnap_fb)), (SELECT count(*) FROM ducksnap_dg),
                    (SELECT coalesce(sum(n), 0) FROM ducksnap_fa)::BIGINT + (SELECT coalesce(sum(n), 0) FROM ducksnap_fb)::BIGINT",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(at("fingerprinting ranges of rows"))?;
    Ok((ranges as u64, differing as u64, rows as u64))
}

/// Stage two: within the differing ranges, rows paired by row id; a pair
/// with equal hashes is the same row. The others — changed, or on one
/// side only — go to `ducksnap_dr` (`ra`, `rb`: their row ids on each
/// side). Returns how many rows of both sides that is.
fn pair_rows(pair: &Pair, a: &str, b: &str, h: &str, filter: &str) -> Result<u64, CompareError> {
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_dr AS SELECT x.r AS ra, y.r AS rb
               FROM (SELECT rowid AS r, {h} AS h FROM {a} WHERE {filter}) x
               FULL JOIN (SELECT rowid AS r, {h} AS h FROM {b} WHERE {filter}) y ON x.r = y.r
               WHERE x.h IS DISTINCT FROM y.h;"
        ))
        .map_err(at("pairing rows by row id"))?;
    pair.conn()
        .query_row("SELECT count(ra) + count(rb) FROM ducksnap_dr", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(at("pairing rows by row id"))
}

/// The WHERE clause selecting the rows of the differing ranges (`all`:
/// every range differs).
fn filter(pair: &Pair, all: bool) -> Result<String, CompareError> {
    if all {
        return Ok("true".into());
    }
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
