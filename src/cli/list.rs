//! `ducksnap list`: the snapshots, newest first (read here, from the store),
//! optionally only those of one reason, with a label, or since a time.

use chrono::{DateTime, Utc};

use crate::environment;
use crate::ops::{self, Ctx, ListEntry, OpError};
use crate::when;

use super::human;
use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only snapshots taken for this reason (manual, pre-delete, scheduled, …).
    #[arg(long, value_name = "R")]
    reason: Option<String>,
    /// Only snapshots whose label contains TEXT (ignoring case).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Only snapshots taken at or after T: 2h, 7d, 2026-11-29T14:00:00Z,
    /// "2026-11-29 14:00 local", … (see `ducksnap help list`).
    #[arg(long, value_name = "T", long_help = when_help())]
    since: Option<String>,
    /// The snapshots as of time T: only those taken at or before it (the
    /// first one listed is what `restore --as-of T` would choose).
    #[arg(long, value_name = "T")]
    as_of: Option<String>,
    /// Times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
    /// Print JSON instead of text (the same entries, exact numbers).
    #[arg(long)]
    pub(super) json: bool,
}

fn when_help() -> String {
    format!(
        "Only snapshots taken at or after this time. Accepted: {}.",
        when::FORMS
    )
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let now = Utc::now();
    let since = a
        .since
        .as_deref()
        .map(|s| when::parse(s, now))
        .transpose()
        .map_err(|reason| OpError::InvalidArgument {
            what: "--since",
            reason,
        })?;
    let until = a
        .as_of
        .as_deref()
        .map(|s| when::parse(s, now))
        .transpose()
        .map_err(|reason| OpError::InvalidArgument {
            what: "--as-of",
            reason,
        })?;
    let mut listing = ops::list(ctx)?;
    listing.snapshots.retain(|e| {
        keep(e, a.reason.as_deref(), a.label.as_deref(), since)
            && until.is_none_or(|t| e.summary.created_at <= t)
    });
    if a.json {
        print_json(&listing.snapshots)?;
    } else if listing.disabled {
        outln!("{}", environment::disabled_message(&ctx.detection));
    } else if listing.snapshots.is_empty() && listing.unreadable.is_empty() {
        outln!("no snapshots in {}", ctx.config.store.dir.display());
    } else {
        print_table(&listing.snapshots, a.utc, now)?;
    }
    for b in &listing.unreadable {
        eprintln!("warning: unreadable manifest {}: {}", b.file, b.reason);
    }
    Ok(0)
}

fn keep(
    e: &ListEntry,
    reason: Option<&str>,
    label: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> bool {
    let s = &e.summary;
    reason.is_none_or(|r| s.reason == r)
        && label.is_none_or(|l| {
            s.label
                .as_deref()
                .is_some_and(|have| have.to_lowercase().contains(&l.to_lowercase()))
        })
        && since.is_none_or(|t| s.created_at >= t)
}

fn print_table(entries: &[ListEntry], utc: bool, now: DateTime<Utc>) -> anyhow::Result<()> {
    let offsite = entries.iter().any(|e| e.offsite.is_some());
    let mut header = vec![
        "id", "taken", "age", "reason", "size", "new", "verified", "pinned",
    ];
    if offsite {
        header.push("offsite");
    }
    header.push("label");
    let mut t = human::table(&header);
    for e in entries {
        let s = &e.summary;
        let pinned = match (s.pinned, s.pinned_until) {
            (true, Some(until)) => format!("until {}", human::time(until, utc)),
            (true, None) => "yes".into(),
            (false, _) => "no".into(),
        };
        let mut label = human::cut(s.label.as_deref().unwrap_or(""), 40);
        if e.missing_chunks > 0 {
            label = format!("DAMAGED: {} chunk(s) missing {label}", e.missing_chunks);
        }
        let mut row = vec![
            s.id.to_string(),
            human::time(s.created_at, utc),
            human::age(s.created_at, now),
            s.reason.clone(),
            human::size(s.db_size + s.wal_size),
            human::size(s.bytes_new),
            if s.verified { "yes" } else { "no" }.into(),
            pinned,
        ];
        if offsite {
            row.push(
                if e.offsite == Some(true) {
                    "yes"
                } else {
                    "not yet"
                }
                .into(),
            );
        }
        row.push(label);
        t.add_row(row);
    }
    for line in t.lines() {
        outln!("{}", line.trim_end());
    }
    Ok(())
}
