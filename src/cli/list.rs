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
    /// The commits a restore can reach (continuous archiving), newest
    /// first, with the recovery window and any unprotected windows; each
    /// point id works wherever a snapshot id does for `restore`.
    #[arg(long, conflicts_with_all = ["reason", "label", "as_of"])]
    commits: bool,
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
    if a.commits {
        return commits(ctx, since, a.utc, a.json, now);
    }
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

/// `s` in lines of at most `width` characters, broken at spaces.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split(' ') {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// `list --commits`.
fn commits(
    ctx: &Ctx,
    since: Option<DateTime<Utc>>,
    utc: bool,
    json: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<u8> {
    let l = ops::point::commits(ctx, since)?;
    if json {
        print_json(&l)?;
        return Ok(0);
    }
    match l.window {
        Some((a, b)) => outln!(
            "recovery window: {} .. {}",
            human::time(a, utc),
            human::time(b, utc)
        ),
        None if ctx.config.continuous.enabled => {
            outln!(
                "no commit archived yet ([continuous] is on; the daemon archives as the app commits)"
            )
        }
        None => outln!(
            "no commit archived: continuous archiving is off ([continuous] enabled = false in the config)"
        ),
    }
    for w in &l.unprotected {
        outln!(
            "UNPROTECTED {} .. {} ({} commits seen):",
            human::time(w.from, utc),
            human::time(w.to, utc),
            w.commits
        );
        for line in wrap(&w.cause, 76) {
            outln!("  {line}");
        }
    }
    if !l.points.is_empty() {
        let mut t = human::table(&["point", "kind", "seen", "age"]);
        for p in l.points.iter().rev() {
            t.add_row(vec![
                p.id.clone(),
                match (&p.reason, p.marked_at) {
                    (Some(r), Some(_)) => format!("marker: {r}"),
                    _ => p.kind.to_string(),
                },
                human::time(p.at, utc),
                human::age(p.at, now),
            ]);
        }
        for line in t.to_string().lines() {
            outln!("{line}");
        }
    }
    for d in &l.damaged {
        eprintln!("warning: unreadable archive record {d}");
    }
    Ok(if l.damaged.is_empty() { 0 } else { 6 })
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
    for line in render(entries, utc, now, human::width()) {
        outln!("{line}");
    }
    Ok(())
}

/// The order in which columns give way when the table is wider than the
/// terminal (docs/USER_GUIDE.md, "Listing"): new bytes, verified, offsite,
/// the full time, size, pinned; then the label is cut. The id, the age and
/// the reason always stay, the id whole on one line.
pub const GIVE_WAY: [&str; 6] = ["new", "verified", "offsite", "taken", "size", "pinned"];

/// The `list` table as lines, laid out to `width` (none: every cell whole).
pub fn render(
    entries: &[ListEntry],
    utc: bool,
    now: DateTime<Utc>,
    width: Option<usize>,
) -> Vec<String> {
    let column = |header: &'static str, cell: &dyn Fn(&ListEntry) -> String| human::Column {
        header,
        cells: entries.iter().map(cell).collect(),
        give_way: GIVE_WAY
            .iter()
            .position(|g| *g == header)
            .map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
    };
    let mut columns = vec![
        column("id", &|e| e.summary.id.to_string()),
        column("taken", &|e| human::time(e.summary.created_at, utc)),
        column("age", &|e| human::age(e.summary.created_at, now)),
        column("reason", &|e| e.summary.reason.clone()),
        column("size", &|e| {
            human::size(e.summary.db_size + e.summary.wal_size)
        }),
        column("new", &|e| human::size(e.summary.bytes_new)),
        column("verified", &|e| yes_no(e.summary.verified).into()),
        column("pinned", &|e| pinned(e, utc)),
    ];
    if entries.iter().any(|e| e.offsite.is_some()) {
        columns.push(column("offsite", &|e| {
            if e.offsite == Some(true) {
                "yes"
            } else {
                "not yet"
            }
            .into()
        }));
    }
    columns.push(column("label", &label));
    let cut = columns.len() - 1;
    human::fit(columns, cut, width)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `yes`, `no`, or `until` and the date (`show` has the time).
fn pinned(e: &ListEntry, utc: bool) -> String {
    match (e.summary.pinned, e.summary.pinned_until) {
        (true, Some(until)) => {
            let t = human::time(until, utc);
            format!("until {}", t.split(' ').next().unwrap_or(&t))
        }
        (true, None) => "yes".into(),
        (false, _) => "no".into(),
    }
}

/// The label (at most 40 characters), after `DAMAGED` when chunks are
/// missing — the cut keeps that word.
fn label(e: &ListEntry) -> String {
    let label = human::cut(e.summary.label.as_deref().unwrap_or(""), 40);
    if e.missing_chunks > 0 {
        format!("DAMAGED: {} chunk(s) missing {label}", e.missing_chunks)
    } else {
        label
    }
}
