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

/// The width output is laid out to: `COLUMNS` when it is set to a number
/// (as `ls` reads it), else the terminal's when stdout is one, else none (a
/// pipe gets every character).
pub fn width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n.into());
    }
    let term = console::Term::stdout();
    term.is_term()
        .then(|| term.size_checked())
        .flatten()
        .map(|(_, cols)| cols.into())
}

/// A table without borders, laid out to [`width`] when there is one (long
/// cells wrap inside their column; the widest ones are cut first), at its
/// natural width otherwise.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().copied());
    match width() {
        Some(cols) => {
            t.set_width(u16::try_from(cols).unwrap_or(u16::MAX));
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// One column of a [`fit`] table.
pub struct Column {
    pub header: &'static str,
    pub cells: Vec<String>,
    /// When the table is too wide, columns go in ascending `give_way`;
    /// `None` never goes.
    pub give_way: Option<u8>,
}

/// The narrowest the cut column gets before other columns give way, and
/// the narrowest it is ever cut to.
const CUT_FIRST_TO: usize = 24;
const CUT_AT_MOST_TO: usize = 12;

/// Lines of a table that fits `width`, no cell ever wrapped: the column
/// `cut` is first cut to [`CUT_FIRST_TO`] characters, then columns give
/// way in their order, then `cut` is cut further (never below
/// [`CUT_AT_MOST_TO`]). Columns are two spaces apart; without a width every
/// cell is whole.
pub fn fit(mut columns: Vec<Column>, cut: usize, width: Option<usize>) -> Vec<String> {
    let natural = |c: &Column| {
        c.cells
            .iter()
            .map(|s| console::measure_text_width(s))
            .chain([c.header.len()])
            .max()
            .unwrap_or(0)
    };
    let mut widths: Vec<usize> = columns.iter().map(natural).collect();
    if let Some(width) = width {
        let total = |w: &[usize], cut: usize, cut_w: usize| {
            let n = w.len();
            (0..n)
                .map(|i| if i == cut { cut_w } else { w[i] })
                .sum::<usize>()
                + 2 * n.saturating_sub(1)
        };
        let mut cut_at = cut;
        while total(&widths, cut_at, widths[cut_at].min(CUT_FIRST_TO)) > width {
            let next = (0..columns.len())
                .filter(|&i| columns[i].give_way.is_some())
                .min_by_key(|&i| columns[i].give_way);
            let Some(i) = next else { break };
            columns.remove(i);
            widths.remove(i);
            if i < cut_at {
                cut_at -= 1;
            }
        }
        let others = total(&widths, cut_at, 0);
        let room = width.saturating_sub(others).max(CUT_AT_MOST_TO);
        widths[cut_at] = widths[cut_at].min(room).max(columns[cut_at].header.len());
        for cell in &mut columns[cut_at].cells {
            *cell = cut_width(cell, widths[cut_at]);
        }
    }
    let rows = columns.first().map_or(0, |c| c.cells.len());
    let line = |cell: &dyn Fn(&Column) -> &str| {
        let mut out = String::new();
        for (c, w) in columns.iter().zip(&widths) {
            if !out.is_empty() {
                out.push_str("  ");
            }
            out.push_str(&console::pad_str(
                cell(c),
                *w,
                console::Alignment::Left,
                None,
            ));
        }
        out.trim_end().to_string()
    };
    let mut lines = vec![line(&|c| c.header)];
    for r in 0..rows {
        lines.push(line(&|c| c.cells[r].as_str()));
    }
    lines
}

/// `s` cut to `max` terminal columns, with `…` marking the cut.
fn cut_width(s: &str, max: usize) -> String {
    if console::measure_text_width(s) <= max {
        return s.to_string();
    }
    console::truncate_str(s, max, "…").into_owned()
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

/// `text` in lines of at most `width` characters (a longer word stands
/// alone), lines after the first indented by `indent`.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let room = if lines.is_empty() {
            width
        } else {
            width - indent.len()
        };
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l } else { format!("{indent}{l}") })
        .collect()
}
