//! `ducksnap offsite init|push|status|list|prune|verify|pull`: the copy of
//! the store in object storage (README, "Offsite").

use crate::config::HostEnv;
use crate::ops::{Ctx, offsite};

use super::human;
use super::output::{outln, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Check the server, the credentials and the bucket; create the key
    /// (never over an existing one); set the remote up.
    Init,
    /// Upload every local snapshot the remote lacks, oldest first.
    Push,
    /// Snapshots offsite, local ones not pushed yet, the lag.
    Status,
    /// The snapshots offsite, newest first.
    List,
    /// Apply [offsite.retention], then delete packs no snapshot names (in
    /// two phases: a pack goes once it has been unnamed for prune_grace).
    Prune {
        /// Show the plan, with reasons, without deleting anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Download and check every record and a sample of the packs.
    Verify {
        /// Percent of the packs to check this time (a rolling sample:
        /// repeated runs cover them all).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        sample: u32,
    },
    /// Copy a snapshot from offsite into the local store (created if absent).
    Pull {
        /// An id, a unique prefix, latest or latest:REASON (among the remote's).
        id: String,
    },
}

pub fn run(ctx: &Ctx, env: &HostEnv, a: Args) -> anyhow::Result<u8> {
    let json = a.json;
    match a.command {
        Sub::Init => init(ctx, env, json),
        Sub::Push => push(ctx, env, json),
        Sub::Status => status(ctx, env, json),
        Sub::List => list(ctx, env, json),
        Sub::Prune { dry_run } => prune(ctx, env, json, dry_run),
        Sub::Verify { sample } => verify(ctx, env, json, sample),
        Sub::Pull { id } => pull(ctx, env, json, &id),
    }
}

fn init(ctx: &Ctx, env: &HostEnv, json: bool) -> anyhow::Result<u8> {
    let r = offsite::init(ctx, env)?;
    if json {
        return print_json(&r).map(|()| 0);
    }
    if r.key_created {
        let key = ctx
            .config
            .offsite
            .as_ref()
            .map(|o| o.key_file.display().to_string());
        eprintln!(
            "NEW KEY written to {}: every offsite object is encrypted with it. Keep a copy somewhere else than this machine (a password manager): without it the offsite copy cannot be read by anyone, you included.",
            key.unwrap_or_default()
        );
    }
    outln!(
        "offsite {} {} (encryption {}, conditional puts {})",
        r.url,
        if r.existed {
            "was set up already; the key fits"
        } else {
            "is set up"
        },
        r.encryption,
        if r.conditional_put {
            "supported"
        } else {
            "not supported: plain puts"
        }
    );
    if r.same_disk {
        eprintln!(
            "WARNING: {} is on the same disk as the store {}: a failure of that disk takes both copies. Point offsite.url at another disk (a NAS, an external drive).",
            r.url,
            ctx.config.store.dir.display()
        );
    }
    Ok(0)
}

fn push(ctx: &Ctx, env: &HostEnv, json: bool) -> anyhow::Result<u8> {
    let r = offsite::push(ctx, env)?;
    if json {
        return print_json(&r).map(|()| 0);
    }
    outln!(
        "{} snapshot(s) pushed ({} object(s), {}); {} already offsite",
        r.snapshots.len(),
        r.objects,
        human::size(r.bytes),
        r.already
    );
    Ok(0)
}

fn status(ctx: &Ctx, env: &HostEnv, json: bool) -> anyhow::Result<u8> {
    let (mut r, failure) = offsite::status(ctx, env)?;
    r.last_error = daemon_offsite_error(ctx);
    // Unreachable: the report from the local record, then the failure's exit code.
    let code = failure.map_or(0, |e| e.exit_code());
    if json {
        return print_json(&r).map(|()| code);
    }
    outln!("offsite:     {}", r.url);
    if let Some(why) = &r.unreachable {
        outln!("remote:      unreachable ({why}); figures from the local record of pushes");
    }
    outln!(
        "snapshots:   {} offsite, {} local not pushed yet",
        r.remote_snapshots,
        r.not_pushed.len()
    );
    match r.lag_seconds {
        Some(s) => outln!("lag:         {s} s (the oldest snapshot not pushed yet)"),
        None => outln!("lag:         none (every local snapshot is offsite)"),
    }
    match &r.last_error {
        Some(e) => outln!(
            "last error:  {} ({}): {}",
            human::time(e.at, false),
            human::age(e.at, chrono::Utc::now()),
            e.message
        ),
        None => outln!("last error:  none"),
    }
    Ok(code)
}

fn list(ctx: &Ctx, env: &HostEnv, json: bool) -> anyhow::Result<u8> {
    let r = offsite::list(ctx, env)?;
    if json {
        return print_json(&r).map(|()| 0);
    }
    for s in &r {
        outln!(
            "{}  {:<12} {}  {}",
            s.id,
            s.reason,
            human::size(s.db_size + s.wal_size),
            s.label.as_deref().unwrap_or("")
        );
    }
    outln!("{} snapshot(s) offsite", r.len());
    Ok(0)
}

fn prune(ctx: &Ctx, env: &HostEnv, json: bool, dry_run: bool) -> anyhow::Result<u8> {
    let r = offsite::prune(ctx, env, dry_run)?;
    if json {
        return print_json(&r).map(|()| 0);
    }
    for d in &r.plan.decisions {
        outln!(
            "{} {}  {}",
            if d.keep { "keep  " } else { "remove" },
            d.id,
            d.reasons.join("; ")
        );
    }
    outln!(
        "{}{} snapshot(s) removed offsite; {} pack(s) deleted ({}), {} newly unnamed (deleted by a prune after offsite.prune_grace)",
        if r.dry_run { "dry run: " } else { "" },
        r.records_deleted,
        r.packs_deleted,
        human::size(r.bytes_freed),
        r.packs_doomed
    );
    Ok(0)
}

fn verify(ctx: &Ctx, env: &HostEnv, json: bool, sample: u32) -> anyhow::Result<u8> {
    let r = offsite::verify(ctx, env, sample)?;
    if json {
        print_json(&r)?;
    } else {
        for p in &r.problems {
            outln!("PROBLEM {p}");
        }
        outln!(
            "{} snapshot record(s), {} of {} pack(s) checked ({} chunks), {} problem(s)",
            r.snapshots,
            r.packs_checked,
            r.packs_total,
            r.chunks_checked,
            r.problems.len()
        );
    }
    if !r.problems.is_empty() {
        let err = crate::ops::OpError::VerifyFailed {
            checked: r.packs_checked,
            problems: r.problems.len(),
        };
        return super::output::fail_after_report(json, err);
    }
    Ok(0)
}

fn pull(ctx: &Ctx, env: &HostEnv, json: bool, id: &str) -> anyhow::Result<u8> {
    let r = offsite::pull_one(ctx, env, id)?;
    if json {
        return print_json(&r).map(|()| 0);
    }
    if r.already {
        outln!("snapshot {} is in the local store already", r.id);
    } else {
        outln!(
            "pulled snapshot {} ({} pack(s), {})",
            r.id,
            r.packs,
            human::size(r.bytes)
        );
    }
    Ok(0)
}

/// The running daemon's last offsite failure (it pushes in the background).
fn daemon_offsite_error(ctx: &Ctx) -> Option<crate::ops::LastError> {
    let (mut c, _) = super::client::daemon_for(ctx).ok()??;
    let resp = c.call(&crate::protocol::Request::Status {}).ok()?;
    let report: crate::ops::StatusReport =
        serde_json::from_value(super::remote::answer(resp).ok()?).ok()?;
    report
        .daemon?
        .last_error
        .filter(|e| e.what == crate::monitor::Job::Offsite)
}
