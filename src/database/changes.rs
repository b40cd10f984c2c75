//! What changed between two databases, table by table: relations added and
//! removed, columns added, removed and retyped, row counts on each side and
//! whether the content changed.
//!
//! "Unchanged" means DuckDB's own `EXCEPT ALL` finds no row on either side
//! that the other lacks: the tables are narrowed first ([`narrow`]: rows
//! paired by position or row id and found equal are left out of both
//! sides) and what is left is compared with `EXCEPT ALL`. Views are compared by their
//! definition and by their rows, whole.

use serde::{Deserialize, Serialize};

use super::check::quote;
use super::compare::{Column, CompareError, Pair, Relation, Side, by_name};
use super::narrow::narrow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Added,
    Removed,
    Changed,
    Unchanged,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Status::Added => "added",
            Status::Removed => "removed",
            Status::Changed => "changed",
            Status::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retyped {
    pub name: String,
    pub before: String,
    pub after: String,
}

/// One table's (or view's) change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    pub table: String,
    pub view: bool,
    pub status: Status,
    pub rows_before: Option<u64>,
    pub rows_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns_added: Vec<Column>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns_removed: Vec<Column>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns_retyped: Vec<Retyped>,
}

impl TableChange {
    pub fn schema_changed(&self) -> bool {
        !(self.columns_added.is_empty()
            && self.columns_removed.is_empty()
            && self.columns_retyped.is_empty())
    }
}

/// Every relation of either side with its change, by schema and name.
/// `counted`: a table (schema, name) present on both sides whose content
/// the caller judges from its row diff — only counted here, not compared
/// twice; its status says only whether the schema changed until the
/// caller sets it.
pub fn summarize(
    pair: &Pair,
    counted: Option<(&str, &str)>,
) -> Result<Vec<TableChange>, CompareError> {
    let a = by_name(pair.relations(Side::A)?);
    let mut b = by_name(pair.relations(Side::B)?);
    let mut out = Vec::new();
    for (k, ta) in &a {
        match b.remove(k) {
            Some(tb) => out.push(both(pair, ta, &tb, counted == Some((&k.0, &k.1)))?),
            None => {
                let before = pair.count(Side::A, ta)?;
                out.push(only(ta, Status::Removed, Some(before), None));
            }
        }
    }
    for tb in b.values() {
        let after = pair.count(Side::B, tb)?;
        out.push(only(tb, Status::Added, None, Some(after)));
    }
    out.sort_by(|x, y| x.table.cmp(&y.table));
    Ok(out)
}

fn only(t: &Relation, status: Status, before: Option<u64>, after: Option<u64>) -> TableChange {
    TableChange {
        table: t.shown(),
        view: t.view,
        status,
        rows_before: before,
        rows_after: after,
        columns_added: Vec::new(),
        columns_removed: Vec::new(),
        columns_retyped: Vec::new(),
    }
}

fn both(
    pair: &Pair,
    ta: &Relation,
    tb: &Relation,
    counted: bool,
) -> Result<TableChange, CompareError> {
    let mut c = only(tb, Status::Unchanged, None, None);
    c.view = ta.view && tb.view;
    let find = |cols: &[Column], name: &str| cols.iter().find(|x| x.name == name).cloned();
    for col in &tb.columns {
        match find(&ta.columns, &col.name) {
            None => c.columns_added.push(col.clone()),
            Some(old) if old.data_type != col.data_type => c.columns_retyped.push(Retyped {
                name: col.name.clone(),
                before: old.data_type,
                after: col.data_type.clone(),
            }),
            Some(_) => {}
        }
    }
    c.columns_removed = ta
        .columns
        .iter()
        .filter(|x| find(&tb.columns, &x.name).is_none())
        .cloned()
        .collect();
    let (na, nb) = (pair.count(Side::A, ta)?, pair.count(Side::B, tb)?);
    (c.rows_before, c.rows_after) = (Some(na), Some(nb));
    let same_order = ta.columns == tb.columns;
    if c.schema_changed()
        || !same_order
        || na != nb
        || ta.view != tb.view
        || pair.definition(Side::A, ta)? != pair.definition(Side::B, tb)?
        || (!counted && content_differs(pair, ta, tb)?)
    {
        c.status = Status::Changed;
    }
    Ok(c)
}

/// Whether two relations with the same columns and row counts hold
/// different rows: narrowed, then `EXCEPT ALL` over what is left. With
/// equal counts on both sides (and equal parts left out of both), A
/// holding no row that B lacks means the multisets are equal, so one
/// direction is enough.
fn content_differs(pair: &Pair, ta: &Relation, tb: &Relation) -> Result<bool, CompareError> {
    let cols: Vec<String> = ta.columns.iter().map(|c| quote(&c.name)).collect();
    if cols.is_empty() {
        return Ok(false);
    }
    let narrowed = narrow(pair, ta, tb, &cols)?;
    if narrowed.narrowing.is_some_and(|n| n.ranges_differing == 0) {
        return Ok(false);
    }
    let list = cols.join(", ");
    pair.exceeds(
        &format!("SELECT {list} FROM {}", narrowed.a),
        &format!("SELECT {list} FROM {}", narrowed.b),
    )
}
