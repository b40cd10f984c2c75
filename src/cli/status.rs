//! `ducksnap status`: the daemon's report when one serves this store, else
//! the one computed here.

use crate::ops::{self, Ctx, DaemonInfo, StatusReport};
use crate::protocol::Request;

use super::client;
use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let from_daemon =
        client::daemon_for(ctx)?.and_then(|(mut c, _)| c.call(&Request::Status {}).ok());
    let report: StatusReport = match from_daemon {
        Some(resp) => serde_json::from_value(remote::answer(resp)?)?,
        None => ops::status(ctx, None)?,
    };
    if a.json {
        print_json(&report)?;
    } else {
        print_status(&report)?;
    }
    Ok(0)
}

fn print_status(r: &StatusReport) -> anyhow::Result<()> {
    outln!("mode:          {:?} ({})", r.mode, r.mode_reason);
    if let Some(d) = &r.disabled {
        outln!("               {d}");
    }
    outln!(
        "database:      {} ({})",
        r.database.display(),
        r.database_bytes
            .map(|b| format!("{b} bytes"))
            .unwrap_or_else(|| "missing".into())
    );
    outln!(
        "store:         {} ({} snapshots, {} bytes stored)",
        r.store.display(),
        r.snapshots,
        r.store_bytes
    );
    match (&r.last_snapshot, r.last_snapshot_age_seconds) {
        (Some(s), Some(age)) => outln!("last snapshot: {} ({}, {age} s ago)", s.id, s.reason),
        _ => outln!("last snapshot: none"),
    }
    match &r.daemon {
        Some(d) => print_daemon(r, d),
        None => {
            outln!("next run:      none (no daemon runs; the schedule runs in `ducksnap daemon`)");
            outln!("daemon:        not running");
            Ok(())
        }
    }
}

fn print_daemon(r: &StatusReport, d: &DaemonInfo) -> anyhow::Result<()> {
    outln!(
        "next run:      {}",
        r.next_run
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none scheduled".into())
    );
    outln!("daemon:        running (pid {})", d.pid);
    match &d.last_error {
        Some(e) => outln!(
            "last error:    {} ({} s ago) {}: {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (chrono::Utc::now() - e.at).num_seconds(),
            e.what,
            e.message
        ),
        None => outln!("last error:    none"),
    }
    Ok(())
}
