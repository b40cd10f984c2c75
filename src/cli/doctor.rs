//! `ducksnap doctor`: why DuckDB will not open the database, and what to do
//! about it ([`crate::ops::doctor`]), printed in 80 columns or as JSON.
//! Works in either mode: it diagnoses, takes no snapshot, asks no daemon.

use serde::Serialize;

use crate::database::diagnose::{Finding, Severity};
use crate::ops::{self, Ctx};

use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

/// A finding with what it means and what to do, as printed.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    severity: Severity,
    message: String,
    fix: String,
}

#[derive(Serialize)]
struct Report<'a> {
    database: String,
    /// `true`: DuckDB opens it (the bundled DuckDB did, read-only);
    /// `false`: it will not; `null`: not tried (a process holds it, or it
    /// is remote).
    opens: Option<bool>,
    findings: Vec<Shown<'a>>,
    wal_commits: u64,
    wal_bytes: u64,
    exit_code: u8,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let db = &ctx.config.database.path;
    let name = db.display().to_string();
    if name.starts_with("md:") {
        return remote(&name, a.json);
    }
    let found =
        ops::doctor(db).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", db.display()))?;
    let (d, opens, code) = (&found.diagnosis, found.opens, found.exit_code());
    let report = Report {
        database: name,
        opens,
        findings: d
            .findings
            .iter()
            .map(|f| Shown {
                finding: f,
                severity: f.severity(),
                message: f.message(),
                fix: f.fix(),
            })
            .collect(),
        wal_commits: d.wal_commits,
        wal_bytes: d.wal_bytes,
        exit_code: code,
    };
    if a.json {
        print_json(&report)?;
    } else {
        print_text(&report)?;
    }
    Ok(code)
}

fn remote(name: &str, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(&serde_json::json!({
            "database": name,
            "opens": null,
            "findings": [],
            "remote": true,
            "exit_code": 0,
        }))?;
    } else {
        outln!("{name}: a MotherDuck database; there is no file on this machine to diagnose.");
    }
    Ok(0)
}

fn print_text(r: &Report) -> anyhow::Result<()> {
    let verdict = match (r.opens, r.exit_code) {
        (Some(true), _) => "DuckDB opens it.",
        (_, 0) => "nothing found that stops DuckDB from opening it.",
        (_, 8) => "another process holds it.",
        (_, 3) => "there is no DuckDB database here.",
        _ => "DuckDB will not open it.",
    };
    outln!("{}: {verdict}", r.database);
    if r.wal_bytes > 0 {
        outln!(
            "WAL: {} bytes, {} commit(s) that verify.",
            r.wal_bytes,
            r.wal_commits
        );
    }
    for s in &r.findings {
        let mark = match s.severity {
            Severity::Blocks => "error",
            Severity::Loses => "warning",
            Severity::Note => "note",
        };
        outln!();
        for line in super::human::wrap(&format!("{mark}: {}", s.message), 78, "  ") {
            outln!("{line}");
        }
        for line in super::human::wrap(&format!("fix: {}", s.fix), 78, "  ") {
            outln!("  {line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::human::wrap;

    #[test]
    fn wrapped_lines_fit_and_keep_every_word() {
        let text = "the WAL fails its checksum at byte position 715 (entry 12 of 15, in commit 4); DuckDB says \"Corrupt WAL file\"";
        let lines = wrap(text, 30, "  ");
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with("  ")));
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }
}
