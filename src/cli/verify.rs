//! `ducksnap verify [ID]`: re-hash chunks; `--deep` has DuckDB read each
//! copy. Runs in this process (it only reads the store, and `--deep` takes
//! the store's lock, so it waits for a daemon's job rather than racing it),
//! with a progress bar on a terminal and each snapshot's result printed as
//! it finishes.

use std::sync::{Arc, Mutex};

use crate::environment;
use crate::ops::progress::{Event, Progress};
use crate::ops::{self, Ctx, OpError, SnapshotCheck, VerifyReport, VerifyRequest};

use super::output::{outln, print_json};
use super::progress::Feedback;

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

pub fn run(ctx: &Ctx, a: Args, feedback: Feedback) -> anyhow::Result<u8> {
    let bar = feedback.bytes("verifying", 0);
    // The first write error (a closed stdout) is kept and returned after.
    let failed: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let progress = {
        let (bar, failed, json) = (bar.clone(), failed.clone(), a.json);
        Progress::new(move |e| match e {
            Event::Begin { total } => bar.set_length(total),
            Event::Bytes(n) => bar.inc(n),
            Event::Checked(r) if !json => {
                let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                if f.is_none() {
                    *f = bar.suspend(|| print_check(r)).err();
                }
            }
            Event::Checked(_) => {}
        })
    };
    let report = ops::verify_with(ctx, &a.req, &progress);
    bar.finish_and_clear();
    let report: VerifyReport = report?;
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    summary(ctx, &a, &report)
}

fn summary(ctx: &Ctx, a: &Args, report: &VerifyReport) -> anyhow::Result<u8> {
    if a.json {
        print_json(report)?;
    } else if report.disabled {
        outln!("{}", environment::disabled_message(&ctx.detection));
    } else {
        // Snapshots whose manifest is unusable have no chunks to stream.
        for r in report.snapshots.iter().filter(|r| r.chunks == 0 && !r.ok) {
            print_check(r)?;
        }
        let bad = report.snapshots.iter().filter(|r| !r.ok).count();
        outln!(
            "{} snapshot(s) checked, {} ok, {bad} with problems",
            report.checked,
            report.checked - bad,
        );
        if let Some(a) = &report.archive {
            for p in &a.problems {
                outln!("DAMAGED archive: {p}");
            }
            outln!(
                "WAL archive: {} generation(s), {} segment(s) checked, {} with problems",
                a.generations,
                a.segments,
                a.problems.len()
            );
        }
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
