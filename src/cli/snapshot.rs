//! `ducksnap snapshot`: take a snapshot now.

use crate::ops::{Ctx, SnapshotReply, SnapshotRequest};
use crate::protocol::calls;

use super::output::{outln, print_json};
use super::progress::Feedback;
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: SnapshotRequest,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, a: Args, feedback: Feedback) -> anyhow::Result<u8> {
    let spinner = feedback.spinner(&format!(
        "snapshot of {}: capturing and checking",
        ctx.config.database.path.display()
    ));
    let r = remote::call(ctx, calls::snapshot(a.req));
    spinner.finish_and_clear();
    let r: SnapshotReply = r?;
    if a.json {
        print_json(&r)?;
    } else if r.disabled {
        outln!("{}", r.reason.as_deref().unwrap_or("backups are disabled"));
    } else if let Some(since) = &r.since {
        outln!("database unchanged since snapshot {since}; nothing stored");
    } else if let Some(m) = &r.snapshot {
        outln!(
            "snapshot {} created: database {}, {} new stored, {} capture in {} ms, {}",
            m.id,
            super::human::size(m.db_size()),
            super::human::size(m.bytes_new),
            m.capture.method,
            m.capture.duration_ms,
            m.check
                .reason
                .clone()
                .unwrap_or_else(|| format!("verified ({} tables)", m.check.tables.len()))
        );
    }
    Ok(0)
}
