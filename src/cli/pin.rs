//! `ducksnap pin ID` / `ducksnap unpin ID`.

use crate::ops::Ctx;
use crate::protocol::calls;
use crate::store::Summary;

use super::output::{outln, print_json};
use super::remote;
/// The same arguments as `show`: one snapshot, and `--json`.
pub use super::show::Args;

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
