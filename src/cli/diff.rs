//! `ducksnap diff A [B]`: what changed between two states of the database
//! (run here, reading the store; `live` is captured as a snapshot first).
//! Text, `--json`, or `--format csv`.

use crate::database::changes::{Status, TableChange};
use crate::database::rows::{Row, RowDiff};
use crate::ops::{self, Ctx, DiffReport, DiffRequest};

use super::human;
use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: DiffRequest,
    /// Output: text (default), json or csv.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Same as --format json.
    #[arg(long)]
    pub(super) json: bool,
    /// Times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let r = ops::diff(ctx, &a.req)?;
    match (a.json, a.format) {
        (true, _) | (_, Format::Json) => print_json(&r)?,
        (_, Format::Csv) => print_csv(&r)?,
        (_, Format::Text) => print_text(&r, a.utc)?,
    }
    Ok(0)
}

fn print_text(r: &DiffReport, utc: bool) -> anyhow::Result<()> {
    for (name, s) in [("A", &r.a), ("B", &r.b)] {
        let live = if s.given == "live" {
            "live, captured as "
        } else {
            ""
        };
        outln!(
            "{name}: {live}{} (taken {})",
            s.id,
            human::time(s.taken_at, utc)
        );
    }
    let changed: Vec<&TableChange> = r
        .tables
        .iter()
        .filter(|t| t.status != Status::Unchanged)
        .collect();
    if r.identical
        || (changed.is_empty() && r.rows.as_ref().is_none_or(|d| d.added + d.removed == 0))
    {
        outln!("no changes");
    }
    if !changed.is_empty() {
        let mut t = human::table(&["table", "change", "rows before", "rows after", "schema"]);
        for c in &changed {
            let n = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            t.add_row(vec![
                format!("{}{}", c.table, if c.view { " (view)" } else { "" }),
                c.status.to_string(),
                n(c.rows_before),
                n(c.rows_after),
                schema_text(c),
            ]);
        }
        outln!("{t}");
    }
    if let Some(d) = &r.rows {
        print_rows(d)?;
    }
    Ok(())
}

fn schema_text(c: &TableChange) -> String {
    let mut parts = Vec::new();
    parts.extend(
        c.columns_added
            .iter()
            .map(|x| format!("+{} {}", x.name, x.data_type)),
    );
    parts.extend(
        c.columns_removed
            .iter()
            .map(|x| format!("-{} {}", x.name, x.data_type)),
    );
    parts.extend(
        c.columns_retyped
            .iter()
            .map(|x| format!("{} {} → {}", x.name, x.before, x.after)),
    );
    parts.join(", ")
}

fn print_rows(d: &RowDiff) -> anyhow::Result<()> {
    let key = if d.key.is_empty() {
        "no key: rows compared as a whole".to_string()
    } else {
        format!("key {}", d.key.join(", "))
    };
    let changed = d
        .changed
        .map(|n| format!(", {n} changed"))
        .unwrap_or_default();
    outln!(
        "\n{} ({key}): {} removed, {} added{changed} (at most {} of each shown)",
        d.table,
        d.removed,
        d.added,
        d.limit
    );
    let show = |title: &str, rows: &[Row], prefix: &[&str]| -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut header: Vec<&str> = prefix.to_vec();
        header.extend(d.columns.iter().map(String::as_str));
        let mut t = human::table(&header);
        for (i, row) in rows.iter().enumerate() {
            let mut cells: Vec<String> = prefix
                .iter()
                .map(|_| if i % 2 == 0 { "before" } else { "after" }.to_string())
                .collect();
            cells.extend(row.iter().map(cell));
            t.add_row(cells);
        }
        outln!("{title}:\n{t}");
        Ok(())
    };
    show("removed", &d.removed_rows, &[])?;
    show("added", &d.added_rows, &[])?;
    let pairs: Vec<Row> = d
        .changed_rows
        .iter()
        .flat_map(|c| [c.before.clone(), c.after.clone()])
        .collect();
    show("changed", &pairs, &[""])?;
    Ok(())
}

fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "NULL".into())
}

/// RFC 4180 field: quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: impl IntoIterator<Item = String>) -> String {
    fields
        .into_iter()
        .map(|f| csv_field(&f))
        .collect::<Vec<_>>()
        .join(",")
}

/// Without --table: one line per changed table; with it: one line per row,
/// the first column saying `removed`, `added`, `before` or `after`. NULL is
/// an empty field.
fn print_csv(r: &DiffReport) -> anyhow::Result<()> {
    let Some(d) = &r.rows else {
        outln!("table,change,rows_before,rows_after,schema");
        for c in r.tables.iter().filter(|t| t.status != Status::Unchanged) {
            let n = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
            outln!(
                "{}",
                csv_line([
                    c.table.clone(),
                    c.status.to_string(),
                    n(c.rows_before),
                    n(c.rows_after),
                    schema_text(c)
                ])
            );
        }
        return Ok(());
    };
    outln!(
        "{}",
        csv_line(std::iter::once("change".to_string()).chain(d.columns.iter().cloned()))
    );
    let line = |what: &str, row: &Row| {
        csv_line(
            std::iter::once(what.to_string())
                .chain(row.iter().map(|v| v.clone().unwrap_or_default())),
        )
    };
    for row in &d.removed_rows {
        outln!("{}", line("removed", row));
    }
    for row in &d.added_rows {
        outln!("{}", line("added", row));
    }
    for c in &d.changed_rows {
        outln!("{}", line("before", &c.before));
        outln!("{}", line("after", &c.after));
    }
    Ok(())
}
