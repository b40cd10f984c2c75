//! `ducksnap adopt`: make the configured store the configured database's
//! (a project moved or copied on purpose; see `ops::owner`).

use super::output::{outln, print_json};
use crate::ops::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let r = crate::ops::owner::adopt(ctx)?;
    if a.json {
        print_json(&r)?;
        return Ok(0);
    }
    match &r.previous {
        Some(p) if p != &r.database => outln!(
            "the store {} now belongs to {} (it belonged to {})",
            r.store.display(),
            r.database.display(),
            p.display()
        ),
        _ => outln!(
            "the store {} belongs to {}",
            r.store.display(),
            r.database.display()
        ),
    }
    Ok(0)
}
