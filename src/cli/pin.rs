//! `ducksnap pin ID` / `ducksnap unpin ID`.

use crate::ops::{Ctx, SnapshotRef};
use crate::protocol::calls;
use crate::store::Summary;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    snapshot: SnapshotRef,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args, pinned: bool) -> anyhow::Result<u8> {
    let s: Summary = remote::call(ctx, calls::pin(a.snapshot, pinned))?;
    if a.json {
        print_json(&s)?;
    } else {
        outln!(
            "snapshot {} is {}",
            s.id,
            if s.pinned { "pinned" } else { "not pinned" }
        );
    }
    Ok(0)
}
