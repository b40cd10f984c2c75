//! `ducksnap prune`: apply retention (every decision with its rule), then
//! delete unreferenced chunks. With `[offsite]`, the bucket is asked first
//! which snapshots it holds whole, so that none is given up locally on the
//! word of an old record (the daemon's own retention uses the check of its
//! last push).

use crate::config::HostEnv;
use crate::environment;
use crate::ops::{Ctx, PruneReport, PruneRequest};
use crate::protocol::calls;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: PruneRequest,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args) -> anyhow::Result<u8> {
    let dry_run = a.req.dry_run;
    if ctx.config.offsite.is_some()
        && !ctx.detection.is_cloud()
        && let Err(e) = crate::ops::offsite::confirm(ctx, env)
    {
        eprintln!(
            "warning: offsite could not be checked ({e}): no snapshot counts as offsite, so none that waits for it is removed"
        );
    }
    let r: PruneReport = remote::call(ctx, calls::prune(a.req))?;
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
    if dry_run {
        let n = r.plan.as_ref().map(|p| p.forgotten().count()).unwrap_or(0);
        outln!("dry run: {n} snapshot(s) would be removed");
    } else {
        outln!(
            "{} snapshot(s) removed, {} chunk(s) deleted, {} freed",
            r.removed,
            r.chunks_deleted,
            super::human::size(r.bytes_freed)
        );
    }
    Ok(0)
}
