//! `ducksnap pin ID` / `ducksnap unpin ID`.

use crate::ops::Ctx;
use crate::protocol::Request;
use crate::store::Summary;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    id: String,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args, pinned: bool) -> anyhow::Result<u8> {
    let id = a.id;
    let req = if pinned {
        Request::Pin { id }
    } else {
        Request::Unpin { id }
    };
    let s: Summary = remote::call_as(ctx, req)?;
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
