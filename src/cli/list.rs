//! `ducksnap list`: the snapshots, newest first (read here, from the store).

use crate::environment;
use crate::ops::{self, Ctx, ListEntry};

use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let listing = ops::list(ctx)?;
    if a.json {
        print_json(&listing.snapshots)?;
    } else if listing.disabled {
        outln!("{}", environment::disabled_message(&ctx.detection));
    } else if listing.snapshots.is_empty() && listing.unreadable.is_empty() {
        outln!("no snapshots in {}", ctx.config.store.dir.display());
    } else {
        outln!(
            "{:<22} {:<20} {:<12} {:>12} {:>12} {:<8} label",
            "id",
            "time (UTC)",
            "reason",
            "db bytes",
            "new bytes",
            "verified"
        );
        for e in &listing.snapshots {
            print_row(e)?;
        }
    }
    for b in &listing.unreadable {
        eprintln!("warning: unreadable manifest {}: {}", b.file, b.reason);
    }
    Ok(0)
}

fn print_row(e: &ListEntry) -> anyhow::Result<()> {
    let s = &e.summary;
    let mut flags = String::new();
    match (s.pinned, s.pinned_until) {
        (true, Some(t)) => flags.push_str(&format!(" [pinned until {}]", t.format("%Y-%m-%d"))),
        (true, None) => flags.push_str(" [pinned]"),
        _ => {}
    }
    if e.missing_chunks > 0 {
        flags.push_str(&format!(
            " [DAMAGED: {} chunk(s) missing]",
            e.missing_chunks
        ));
    }
    outln!(
        "{:<22} {:<20} {:<12} {:>12} {:>12} {:<8} {}{}",
        s.id,
        s.created_at.format("%Y-%m-%d %H:%M:%S"),
        s.reason,
        s.db_size,
        s.bytes_new,
        if s.verified { "yes" } else { "no" },
        s.label.as_deref().unwrap_or(""),
        flags
    );
    Ok(())
}
