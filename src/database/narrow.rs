//! Narrowing a row diff to the parts of a table that differ, so that a 1%
//! change to a large table is compared at the cost of a scan, not of a
//! multiset difference of every row.
//!
//! Every row is first written as one text ([`encode`]): the list of its
//! columns cast to VARCHAR, cast to VARCHAR. DuckDB's text form of a list
//! quotes and escapes any element that needs it (`[]`, `NULL`, `[NULL]`,
//! `['NULL']`, `['a, b']` and `[a, b]` are all different texts, at every
//! nesting level; a BLOB's bytes are escaped), so two rows with the same
//! text hold the same values. Tables with a UNION column (whose text leaves
//! out the member's tag) are not narrowed.
//!
//! Stage one: both sides are cut into ranges of [`RANGE`] row ids. Each
//! range gets a fingerprint: its row count and the SHA-256 of the list of
//! its rows' texts. Ranges whose fingerprints are equal on both sides hold
//! the same rows, unless SHA-256 collides — which nobody knows how to make
//! happen, even on purpose. Stage two: within the other ranges, rows are
//! paired by row id and their texts compared — exactly, no hash. What is
//! left — rows changed, or on one side only — is copied into temporary
//! tables and compared exactly by the caller (`EXCEPT ALL`, or a join on a
//! key). Leaving out equal parts of both sides does not change a multiset
//! difference, so the result is DuckDB's own comparison of the two tables.
//! The text is stricter than DuckDB's equality (`-0.0` and `0.0`, an
//! INTERVAL of `1 month` and `30 days` are different texts): that only
//! sends more rows to the exact comparison, it never hides one.
//!
//! DuckDB keeps a row's row id through UPDATEs and DELETEs of other rows and
//! gives appended rows new ones, so an update, a cascade delete or a few
//! inserts — contiguous or scattered — leave little to compare. When rows
//! have moved (a table rebuilt, or row groups vacuumed after deletes) most
//! rows differ, and the tables are compared whole: exact, only slower.
//!
//! Not narrowed: views (no row ids), tables with a column named `rowid`
//! (it hides the row id) and tables with a UNION column.

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
    /// those whose row id holds another row (by text) on the other side,
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

/// Whether every column's text form tells its values apart (a UNION's
/// leaves out which member holds the value).
pub fn encodable(t: &Relation) -> bool {
    !t.columns
        .iter()
        .any(|c| c.data_type.to_ascii_uppercase().contains("UNION("))
}

/// One text per row over the column expressions `cols`: equal texts, equal
/// values (see the module header).
pub fn encode(cols: &[String]) -> String {
    let each: Vec<String> = cols
        .iter()
        .map(|c| format!("CAST({c} AS VARCHAR)"))
        .collect();
    format!("CAST([{}] AS VARCHAR)", each.join(", "))
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
    if !has_rowid(ta) || !has_rowid(tb) || !encodable(ta) || !encodable(tb) || compared.is_empty() {
        return Ok(Narrowed {
            a,
            b,
            narrowing: None,
        });
    }
    let e = encode(compared);
    let (ranges, differing, rows) = fingerprint_ranges(pair, &a, &b, &e)?;
    let filter = filter(pair, differing == ranges)?;
    let compared = pair_rows(pair, &a, &b, &e, &filter)?;
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
///
/// The list of a range's texts is taken in whatever order the scan gives
/// them (in practice row-id order: a range lies within one row group, read
/// by one thread): equal lists mean equal rows in any order, and an order
/// that differs only marks the range for stage two. Grouping is by
/// position (`GROUP BY 1`), so no column of the table can capture a name.
fn fingerprint_ranges(
    pair: &Pair,
    a: &str,
    b: &str,
    e: &str,
) -> Result<(u64, u64, u64), CompareError> {
    let conn = pair.conn();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ducksnap_fa AS SELECT rowid // {RANGE} AS g, count(*) AS n, sha256(CAST(list({e}) AS VARCHAR)) AS s FROM {a} GROUP BY 1;
         CREATE OR REPLACE TEMP TABLE ducksnap_fb AS SELECT rowid // {RANGE} AS g, count(*) AS n, sha256(CAST(list({e}) AS VARCHAR)) AS s FROM {b} GROUP BY 1;
         CREATE OR REPLACE TEMP TABLE ducksnap_dg AS SELECT g FROM ducksnap_fa FULL JOIN ducksnap_fb USING (g)
           WHERE ducksnap_fa.n IS DISTINCT FROM ducksnap_fb.n OR ducksnap_fa.s IS DISTINCT FROM ducksnap_fb.s;"
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
/// with equal texts is the same row. The others — changed, or on one
/// side only — go to `ducksnap_dr` (`ra`, `rb`: their row ids on each
/// side). Returns how many rows of both sides that is.
fn pair_rows(pair: &Pair, a: &str, b: &str, e: &str, filter: &str) -> Result<u64, CompareError> {
    pair.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE ducksnap_dr AS SELECT x.r AS ra, y.r AS rb
               FROM (SELECT rowid AS r, {e} AS e FROM {a} WHERE {filter}) x
               FULL JOIN (SELECT rowid AS r, {e} AS e FROM {b} WHERE {filter}) y ON x.r = y.r
               WHERE x.e IS DISTINCT FROM y.e;"
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
