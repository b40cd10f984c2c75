//! `ducksnap status`: the daemon's report when one serves this store, else
//! the one computed here.

use crate::ops::{self, Ctx, DaemonInfo, StatusReport};
use crate::protocol::Request;

use super::client;
use super::human;
use super::output::{outln, print_json};
use super::remote;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
    /// One verdict for monitoring, as a Nagios plugin: a line with
    /// perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (--json: the
    /// checks as data).
    #[arg(long)]
    pub(super) check: bool,
}

pub fn run(ctx: &Ctx, env: &crate::config::HostEnv, a: Args) -> anyhow::Result<u8> {
    let from_daemon =
        client::daemon_for(ctx)?.and_then(|(mut c, _)| c.call(&Request::Status {}).ok());
    if a.check {
        return check(ctx, env, from_daemon, a.json);
    }
    let report: StatusReport = match from_daemon {
        Some(resp) => serde_json::from_value(remote::answer(resp)?)?,
        None => ops::status(ctx, None)?,
    };
    if a.json {
        print_json(&report)?;
    } else {
        print_status(&report, a.utc)?;
    }
    Ok(0)
}

/// `--check`: the verdict and the plugin exit code.
fn check(
    ctx: &Ctx,
    env: &crate::config::HostEnv,
    from_daemon: Option<crate::protocol::Response>,
    json: bool,
) -> anyhow::Result<u8> {
    let answered = from_daemon.is_some();
    // The bucket asked now, when this process has the credentials (a cron
    // job may not: then the last check's findings stand).
    let offsite_unchecked = ops::offsite::confirm_if_possible(ctx, env).err();
    let report = match from_daemon {
        Some(resp) => remote::answer(resp)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())),
        None => ops::status(ctx, None).map_err(|e| e.to_string()),
    };
    let mut facts = ops::health::facts(ctx, report, answered);
    facts.offsite_unchecked = offsite_unchecked;
    let verdict = crate::monitor::check::evaluate(&facts, chrono::Utc::now());
    if json {
        print_json(&verdict)?;
    } else {
        outln!("{}", verdict.line);
    }
    Ok(verdict.level.exit_code())
}

/// `--check` when the command failed before a verdict (an unreadable
/// config, say): UNKNOWN with the error, exit 3 — a plugin runner reads
/// the usual exit 2 as CRITICAL. A closed stdout stays an error.
pub(super) fn unknown(err: anyhow::Error, json: bool) -> anyhow::Result<u8> {
    if err.downcast_ref::<super::StdoutClosed>().is_some() {
        return Err(err);
    }
    let verdict = crate::monitor::check::unknown(&format!("{err:#}"));
    if json {
        print_json(&verdict)?;
    } else {
        outln!("{}", verdict.line);
    }
    Ok(verdict.level.exit_code())
}

fn print_status(r: &StatusReport, utc: bool) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    outln!("mode:          {} ({})", r.mode, r.mode_reason);
    if let Some(d) = &r.disabled {
        outln!("               {d}");
    }
    outln!(
        "database:      {} ({})",
        r.database.display(),
        r.database_bytes
            .map(human::size)
            .unwrap_or_else(|| "missing".into())
    );
    outln!(
        "store:         {} ({} snapshots, {} stored)",
        r.store.display(),
        r.snapshots,
        human::size(r.store_bytes)
    );
    match &r.last_snapshot {
        Some(s) => outln!(
            "last snapshot: {} ({}, {}, {})",
            s.id,
            s.reason,
            human::time(s.created_at, utc),
            human::age(s.created_at, now)
        ),
        None => outln!("last snapshot: none"),
    }
    if let Some(o) = &r.offsite {
        match o.lag_seconds {
            Some(s) => outln!(
                "offsite:       {} ({} snapshot(s) not pushed yet, the oldest for {})",
                o.url,
                o.not_pushed,
                human::age(now - chrono::TimeDelta::seconds(s), now).trim_end_matches(" ago")
            ),
            None => outln!("offsite:       {} (every snapshot is offsite)", o.url),
        }
    }
    if let Some(c) = &r.continuous {
        let last = c
            .last_commit
            .map(|t| format!("last commit archived {}", human::age(t, now)))
            .unwrap_or_else(|| "no commit archived yet".into());
        let behind = c
            .behind_bytes
            .map(|b| format!(", {} of the WAL not archived", human::size(b)))
            .unwrap_or_default();
        outln!(
            "continuous:    {}: {last}{behind}",
            if c.enabled { "on" } else { "off" }
        );
        if let Some(why) = &c.refused {
            outln!("               the WAL is not archived: {why}");
        }
        if let (Some(n @ 1..), Some(t)) = (c.behind_commits, c.behind_since) {
            outln!(
                "               {n} commit(s) not archived yet (written {} or earlier)",
                human::age(t, now)
            );
        }
        if let Some(a) = &c.archiver
            && let Some(e) = &a.error
        {
            let since = a
                .failing_since
                .map(|t| format!(" (since {})", human::age(t, now)))
                .unwrap_or_default();
            outln!("               archiving fails{since}: {e}");
        }
        if let Some(t) = c.last_unprotected {
            outln!(
                "               {} unprotected window(s), the newest ended {} (list --commits)",
                c.unprotected_windows,
                human::age(t, now)
            );
        }
        if c.damaged_records > 0 {
            outln!(
                "               {} archive record(s) damaged or missing (verify)",
                c.damaged_records
            );
        }
    }
    match &r.daemon {
        Some(d) => print_daemon(r, d, utc),
        None => {
            outln!("next run:      none (no daemon runs; the schedule runs in `ducksnap daemon`)");
            outln!("daemon:        not running");
            print_last_error(r.recorded_error.as_ref(), utc)
        }
    }
}

fn print_daemon(r: &StatusReport, d: &DaemonInfo, utc: bool) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    outln!(
        "next run:      {}",
        r.next_run
            .map(|t| format!("{} ({})", human::time(t, utc), human::age(t, now)))
            .unwrap_or_else(|| "none scheduled".into())
    );
    outln!("daemon:        running (pid {})", d.pid);
    print_last_error(d.last_error.as_ref(), utc)
}

fn print_last_error(e: Option<&crate::ops::LastError>, utc: bool) -> anyhow::Result<()> {
    match e {
        Some(e) => outln!(
            "last error:    {} ({}) {}: {}",
            human::time(e.at, utc),
            human::age(e.at, chrono::Utc::now()),
            e.what,
            e.message
        ),
        None => outln!("last error:    none"),
    }
    Ok(())
}
