//! Output sized for people: sizes in binary units (`64.0 MiB`), ages
//! ("3 hours ago"), times in local time with the zone offset (or UTC), and
//! tables laid out to the terminal's width. `--json` never goes through
//! here: scripts get exact numbers and RFC 3339 times.

use chrono::{DateTime, Local, Utc};
use comfy_table::{ContentArrangement, Table, presets};

/// `67108864` → `64.0 MiB`; below 1 KiB, plain bytes (`512 B`).
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// How long before `now` `t` was: "just now", "5 minutes ago", "3 hours
/// ago", "2 days ago" (whole units, rounded down; "in 5 minutes" for a time
/// ahead).
pub fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, ahead) = (secs.unsigned_abs(), secs < 0);
    if n < 10 {
        return "just now".into();
    }
    let (count, unit) = [
        (7 * 86_400, "week"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ]
    .into_iter()
    .find(|(per, _)| n >= *per)
    .map(|(per, u)| (n / per, u))
    .unwrap_or((n, "second"));
    let plural = if count == 1 { "" } else { "s" };
    if ahead {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// A time for people: local time with its offset (`2026-11-29 15:04:05
/// +01:00`), or UTC (`2026-11-29 14:04:05 UTC`) with `--utc`.
pub fn time(t: DateTime<Utc>, utc: bool) -> String {
    if utc {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        t.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string()
    }
}

/// A table without borders, laid out to the terminal's width when stdout is
/// one (long cells wrap inside their column; the widest ones are cut first),
/// at its natural width otherwise (a pipe gets every character).
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().copied());
    let term = console::Term::stdout();
    match term.is_term().then(|| term.size_checked()).flatten() {
        Some((_, cols)) => {
            t.set_width(cols);
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// `s` cut to `max` characters, with `…` marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}
