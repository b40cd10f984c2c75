//! `ducksnap verify [ID]`: re-hash chunks; `--deep` has DuckDB read each copy.

use crate::environment;
use crate::ops::{Ctx, OpError, SnapshotCheck, VerifyReport, VerifyRequest};
use crate::protocol::calls;

use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    req: VerifyRequest,
    /// All snapshots (the default; kept for scripts that say so).
    #[arg(long, conflicts_with = "id")]
    all: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let report: VerifyReport = remote::call(ctx, calls::verify(a.req))?;
    if a.json {
        print_json(&report)?;
    } else if report.disabled {
        outln!("{}", environment::disabled_message(&ctx.detection));
    } else {
        for r in &report.snapshots {
            print_check(r)?;
        }
        outln!(
            "{} snapshot(s) checked, {} ok, {} with problems",
            report.checked,
            report.checked - report.problems,
            report.problems
        );
    }
    if report.problems > 0 {
        let err = OpError::VerifyFailed {
            checked: report.checked,
            problems: report.problems,
        };
        return super::output::fail_after_report(a.json, err);
    }
    Ok(0)
}

fn print_check(r: &SnapshotCheck) -> anyhow::Result<()> {
    if r.ok {
        outln!(
            "ok      {} ({} chunks){}",
            r.id,
            r.chunks,
            r.deep
                .as_deref()
                .map(|d| format!(", {d}"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    outln!("FAILED  {}", r.id);
    for h in &r.missing_chunks {
        outln!("        missing chunk {h}");
    }
    for h in &r.corrupt_chunks {
        outln!("        corrupt chunk {h}");
    }
    if let Some(e) = &r.error {
        outln!("        {e}");
    }
    Ok(())
}
