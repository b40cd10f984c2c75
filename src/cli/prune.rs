//! `ducksnap prune`: apply retention (every decision with its rule), then
//! delete unreferenced chunks.

use crate::environment;
use crate::ops::{self, Ctx};
use crate::protocol::Request;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be removed, and why, without removing anything.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let r: ops::PruneReport = remote::call_as(ctx, Request::Prune { dry_run: a.dry_run })?;
    if a.json {
        print_json(&r)?;
        return Ok(0);
    }
    if r.disabled {
        outln!("{}", environment::disabled_message(&ctx.detection));
        outln!("0 snapshots removed");
        return Ok(0);
    }
    if let Some(plan) = &r.plan {
        for d in &plan.decisions {
            outln!(
                "{} {} {}",
                if d.keep { "keep  " } else { "remove" },
                d.id,
                d.reasons.join("; ")
            );
        }
    }
    if a.dry_run {
        let n = r.plan.as_ref().map(|p| p.forgotten().count()).unwrap_or(0);
        outln!("dry run: {n} snapshot(s) would be removed");
    } else {
        outln!(
            "{} snapshot(s) removed, {} chunk(s) deleted, {} bytes freed",
            r.removed,
            r.chunks_deleted,
            r.bytes_freed
        );
    }
    Ok(0)
}
