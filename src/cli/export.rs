//! `ducksnap export ID --table T --to FILE`: one table of a snapshot as CSV
//! or a DuckDB file (run here, reading the store; never the live database).

use crate::config::HostEnv;
use crate::ops::{self, Ctx, ExportRequest};

use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: ExportRequest,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args) -> anyhow::Result<u8> {
    let mut req = a.req;
    req.to = env.cwd.join(&req.to);
    let r = ops::export(ctx, &req)?;
    if a.json {
        print_json(&r)?;
        return Ok(0);
    }
    match (&r.table, r.rows) {
        (Some(t), Some(n)) => outln!(
            "exported {t} ({n} rows) of snapshot {} to {}",
            r.id,
            r.path.display()
        ),
        _ => outln!("exported snapshot {} to {}", r.id, r.path.display()),
    }
    Ok(0)
}
