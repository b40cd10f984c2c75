//! Command-line interface: argument definitions and the printing of each
//! operation's outcome, for humans and (with `--json`) for scripts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, HostEnv, LogFormat};
use crate::environment;
use crate::logging;
use crate::ops::{self, Ctx, OpError};
use crate::protocol::{Request, Response};
use crate::{client, handlers};

#[derive(Debug, Parser)]
#[command(
    name = "ducksnap",
    version,
    about = "Point-in-time snapshots of a local DuckDB database"
)]
pub struct Cli {
    /// Config file (default: $DUCKSNAP_CONFIG, ./ducksnap.toml, $XDG_CONFIG_HOME/ducksnap/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log level (error, warn, info, debug, trace); default warn for commands, the config's for the daemon.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a snapshot of the database now.
    Snapshot {
        /// Why: manual, pre-delete, scheduled, ... (letters, digits, - _ .).
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Free text shown in listings.
        #[arg(long)]
        label: Option<String>,
        /// Keep this snapshot whatever the retention policy says.
        #[arg(long)]
        pin: bool,
        #[arg(long)]
        json: bool,
    },
    /// List snapshots, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one snapshot's manifest.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Put a snapshot back: over the configured database (after a pinned
    /// pre-restore safety snapshot), or as a standalone file with --to.
    Restore {
        id: String,
        /// Write the snapshot to this path instead of replacing the database.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// With --to: overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Also open the restored file with DuckDB and compare its tables and
        /// row counts with the snapshot's (every chunk's and the whole file's
        /// hash is always checked).
        #[arg(long)]
        check: bool,
        /// Do not ask for confirmation (needed when not on a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check that snapshots are intact: every chunk re-hashed; --deep also
    /// opens each with DuckDB and reads every column.
    Verify {
        /// One snapshot (default: all).
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        deep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy and delete chunks no snapshot needs.
    Prune {
        /// Show what would be removed, and why, without removing anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Keep a snapshot whatever the retention policy says.
    Pin {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Let retention remove a snapshot again.
    Unpin {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the service: schedule, watcher and socket (systemd user unit).
    Daemon,
    /// Mode, database, last snapshot, next run, store size, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show the environment detection: the mode and every signal.
    Env {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the config; print the effective config with paths resolved.
    Check {
        #[arg(long)]
        json: bool,
    },
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    // One write: a snapshot's manifest is a thousand lines, and stdout is
    // line-buffered.
    let mut text = serde_json::to_vec_pretty(v)?;
    text.push(b'\n');
    std::io::stdout().lock().write_all(&text)?;
    Ok(())
}

/// Runs the parsed command. Returns the exit code on success.
pub fn run(cli: Cli, env: HostEnv) -> anyhow::Result<u8> {
    let config = config::load(cli.config.as_deref(), &env).map_err(OpError::from)?;
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Human) => LogFormat::Human,
        None => config.log.format,
    };
    let level = cli.log_level.clone().unwrap_or_else(|| match cli.command {
        Command::Daemon => config.log.level.clone(),
        _ => "warn".to_string(),
    });
    logging::init(format, &level, env.var("DUCKSNAP_LOG")).map_err(|reason| {
        OpError::InvalidArgument {
            what: "--log-level",
            reason,
        }
    })?;
    let detection = environment::detect(&env, &config.database.path, config.database.mode);
    tracing::debug!(event = "env.detected", mode = ?detection.mode, reason = %detection.reason, "environment detected");
    let mut ctx = Ctx { config, detection };
    if !matches!(
        cli.command,
        Command::Daemon | Command::Config { .. } | Command::Env { .. }
    ) {
        adopt_daemon_mode(&mut ctx, &env)?;
    }

    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { json },
        } => {
            if json {
                print_json(&ctx.config)?;
            } else {
                let src = ctx
                    .config
                    .source
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "built-in defaults (no config file found)".into());
                println!("# config OK: {src}");
                print!(
                    "{}",
                    toml::to_string_pretty(&ctx.config).context("rendering the config")?
                );
            }
            Ok(0)
        }
        Command::Env { json } => {
            let d = &ctx.detection;
            if json {
                print_json(d)?;
            } else {
                println!("mode: {:?} ({})", d.mode, d.reason);
                println!("setting: database.mode = {:?}", d.setting);
                if config::mode_from_env(&env)?.is_none()
                    && let Some((_, hello)) = client::daemon_for(&ctx)?
                {
                    println!(
                        "a daemon serves this store (pid {}): its mode, {:?} ({}), is what the other commands use",
                        hello.pid, hello.mode, hello.mode_reason
                    );
                }
                for s in &d.signals {
                    println!(
                        "  [{}] {:<26} {} = {}",
                        if s.fired { "x" } else { " " },
                        s.name,
                        s.rule,
                        s.value
                            .as_deref()
                            .map(|v| format!("{v:?}"))
                            .unwrap_or_else(|| "(unset)".into())
                    );
                }
            }
            Ok(0)
        }
        Command::Snapshot {
            reason,
            label,
            pin,
            json,
        } => {
            let r = call(&ctx, Request::Snapshot { reason, label, pin })?;
            if json {
                print_json(&r)?;
            } else if r["disabled"] == true {
                println!("{}", r["reason"].as_str().unwrap_or("backups are disabled"));
            } else if r["unchanged"] == true {
                println!(
                    "database unchanged since snapshot {}; nothing stored",
                    r["since"].as_str().unwrap_or("?")
                );
            } else {
                let m: crate::store::Manifest = serde_json::from_value(r["snapshot"].clone())?;
                println!(
                    "snapshot {} created: {} database bytes, {} new bytes stored, {} capture in {} ms, {}",
                    m.id,
                    m.db_size(),
                    m.bytes_new,
                    format!("{:?}", m.capture.method).to_lowercase(),
                    m.capture.duration_ms,
                    m.check
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("verified ({} tables)", m.check.tables.len()))
                );
            }
            Ok(0)
        }
        Command::List { json } => {
            let listing = ops::list(&ctx)?;
            if json {
                print_json(&listing.snapshots)?;
            } else if listing.disabled {
                println!("{}", environment::disabled_message(&ctx.detection));
            } else if listing.snapshots.is_empty() && listing.unreadable.is_empty() {
                println!("no snapshots in {}", ctx.config.store.dir.display());
            } else {
                println!(
                    "{:<22} {:<20} {:<12} {:>12} {:>12} {:<8} label",
                    "id", "time (UTC)", "reason", "db bytes", "new bytes", "verified"
                );
                for e in &listing.snapshots {
                    let s = &e.summary;
                    let mut flags = String::new();
                    match (s.pinned, s.pinned_until) {
                        (true, Some(t)) => {
                            flags.push_str(&format!(" [pinned until {}]", t.format("%Y-%m-%d")))
                        }
                        (true, None) => flags.push_str(" [pinned]"),
                        _ => {}
                    }
                    if e.missing_chunks > 0 {
                        flags.push_str(&format!(
                            " [DAMAGED: {} chunk(s) missing]",
                            e.missing_chunks
                        ));
                    }
                    println!(
                        "{:<22} {:<20} {:<12} {:>12} {:>12} {:<8} {}{}",
                        s.id,
                        s.created_at.format("%Y-%m-%d %H:%M:%S"),
                        s.reason,
                        s.db_size,
                        s.bytes_new,
                        if s.verified { "yes" } else { "no" },
                        s.label.as_deref().unwrap_or(""),
                        flags
                    );
                }
            }
            for b in &listing.unreadable {
                eprintln!("warning: unreadable manifest {}: {}", b.file, b.reason);
            }
            Ok(0)
        }
        Command::Restore {
            id,
            to,
            force,
            check,
            yes,
            json,
        } => {
            if !yes {
                confirm(&ctx, &id, to.as_deref())?;
            }
            let to = to.map(|p| env.cwd.join(p));
            let v = call(
                &ctx,
                Request::Restore {
                    id,
                    to,
                    force,
                    check,
                },
            )?;
            let r: ops::Restored = serde_json::from_value(v)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "restored snapshot {} to {}{}",
                    r.id,
                    r.path.display(),
                    if r.wal { " (with its WAL)" } else { "" }
                );
                if let Some(p) = &r.pre_restore {
                    println!(
                        "the previous database is kept as pinned snapshot {p} (restore it to undo)"
                    );
                }
                if !r.verified {
                    println!(
                        "note: the bundled DuckDB cannot read this storage version; only the file hash was checked"
                    );
                }
            }
            Ok(0)
        }
        Command::Verify {
            id,
            all: _,
            deep,
            json,
        } => {
            let v = call(&ctx, Request::Verify { id, deep })?;
            let report: ops::VerifyReport = serde_json::from_value(v)?;
            if json {
                print_json(&report)?;
            } else if report.disabled {
                println!("{}", environment::disabled_message(&ctx.detection));
            } else {
                for r in &report.snapshots {
                    if r.ok {
                        println!(
                            "ok      {} ({} chunks){}",
                            r.id,
                            r.chunks,
                            r.deep
                                .as_deref()
                                .map(|d| format!(", {d}"))
                                .unwrap_or_default()
                        );
                    } else {
                        println!("FAILED  {}", r.id);
                        for h in &r.missing_chunks {
                            println!("        missing chunk {h}");
                        }
                        for h in &r.corrupt_chunks {
                            println!("        corrupt chunk {h}");
                        }
                        if let Some(e) = &r.error {
                            println!("        {e}");
                        }
                    }
                }
                println!(
                    "{} snapshot(s) checked, {} ok, {} with problems",
                    report.checked,
                    report.checked - report.problems,
                    report.problems
                );
            }
            if report.problems > 0 {
                return Err(OpError::VerifyFailed {
                    checked: report.checked,
                    problems: report.problems,
                }
                .into());
            }
            Ok(0)
        }
        Command::Prune { dry_run, json } => {
            let v = call(&ctx, Request::Prune { dry_run })?;
            let r: ops::PruneReport = serde_json::from_value(v)?;
            if json {
                print_json(&r)?;
            } else if r.disabled {
                println!("{}", environment::disabled_message(&ctx.detection));
                println!("0 snapshots removed");
            } else {
                if let Some(plan) = &r.plan {
                    for d in &plan.decisions {
                        println!(
                            "{} {} {}",
                            if d.keep { "keep  " } else { "remove" },
                            d.id,
                            d.reasons.join("; ")
                        );
                    }
                }
                if dry_run {
                    let n = r.plan.as_ref().map(|p| p.forgotten().count()).unwrap_or(0);
                    println!("dry run: {n} snapshot(s) would be removed");
                } else {
                    println!(
                        "{} snapshot(s) removed, {} chunk(s) deleted, {} bytes freed",
                        r.removed, r.chunks_deleted, r.bytes_freed
                    );
                }
            }
            Ok(0)
        }
        Command::Status { json } => {
            let report: ops::StatusReport =
                match forward_to(&ctx)?.and_then(|mut c| c.call(&Request::Status {}).ok()) {
                    Some(resp) => serde_json::from_value(answer(resp)?)?,
                    None => ops::status(&ctx, None)?,
                };
            if json {
                print_json(&report)?;
            } else {
                print_status(&report);
            }
            Ok(0)
        }
        Command::Daemon => {
            let cfg_arg = cli.config.clone();
            let env2 = env.clone();
            let reload: crate::daemon::Reload =
                Box::new(move || config::load(cfg_arg.as_deref(), &env2));
            crate::daemon::run(ctx, env, reload)
        }
        Command::Pin { id, json } => pin(&ctx, &id, true, json),
        Command::Unpin { id, json } => pin(&ctx, &id, false, json),
        Command::Show { id, json } => {
            let shown = ops::show(&ctx, &id)?;
            if json {
                print_json(&shown)?;
            } else {
                let m = &shown.manifest;
                println!("id:          {}", m.id);
                println!("created:     {}", m.created_at.to_rfc3339());
                println!("reason:      {}", m.reason);
                println!("label:       {}", m.label.as_deref().unwrap_or("-"));
                println!("pinned:      {}", m.pinned);
                println!("database:    {} ({} bytes)", m.database.path, m.db_size());
                println!(
                    "storage:     version {}, block size {}, {} blocks, header iteration {}",
                    m.database.storage_version,
                    m.database.block_size,
                    m.database.block_count,
                    m.database.iteration
                );
                for f in &m.files {
                    println!(
                        "file {:<6} {} bytes, {} chunks, blake3 ({}) {}",
                        f.role,
                        f.size,
                        f.chunks.len(),
                        match f.hash_of {
                            crate::store::FileHash::Bytes => "of the bytes",
                            crate::store::FileHash::ChunkList => "of the chunk list",
                        },
                        f.hash
                    );
                }
                println!(
                    "capture:     {:?}, {} attempt(s), {} ms, {} new bytes stored",
                    m.capture.method, m.capture.attempts, m.capture.duration_ms, m.bytes_new
                );
                println!(
                    "check:       {:?}{} (DuckDB {})",
                    m.check.status,
                    m.check
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                    m.check.duckdb_version
                );
                for t in &m.check.tables {
                    println!("  {}.{}: {} rows", t.schema, t.name, t.rows);
                }
            }
            if !shown.missing_chunks.is_empty() {
                for h in &shown.missing_chunks {
                    eprintln!("missing chunk: {h}");
                }
                return Err(OpError::Damaged {
                    id: shown.manifest.id.clone(),
                    missing: shown.missing_chunks.len(),
                }
                .into());
            }
            Ok(0)
        }
    }
}

/// Asks on the terminal before replacing the database; refuses without one.
fn confirm(ctx: &Ctx, id: &str, to: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if ctx.detection.is_cloud() {
        return Ok(()); // restore answers with the disabled error itself
    }
    let target = to
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ctx.config.database.path.display().to_string());
    if !std::io::stdin().is_terminal() {
        return Err(OpError::NotConfirmed(format!(
            "restoring {id} to {target} needs confirmation; pass --yes when not on a terminal"
        ))
        .into());
    }
    eprint!(
        "Restore snapshot {id} to {target}?{} [y/N] ",
        if to.is_none() {
            " The current database is first saved as a pinned pre-restore snapshot."
        } else {
            ""
        }
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(OpError::NotConfirmed("restore cancelled".into()).into())
    }
}

fn pin(ctx: &Ctx, id: &str, pinned: bool, json: bool) -> anyhow::Result<u8> {
    let id = id.to_string();
    let v = call(
        ctx,
        if pinned {
            Request::Pin { id }
        } else {
            Request::Unpin { id }
        },
    )?;
    let s: crate::store::Summary = serde_json::from_value(v)?;
    if json {
        print_json(&s)?;
    } else {
        println!(
            "snapshot {} is {}",
            s.id,
            if s.pinned { "pinned" } else { "not pinned" }
        );
    }
    Ok(0)
}

/// An operation error that came back over the socket (or from the local
/// handler), with its protocol code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub code: String,
    pub message: String,
}

impl RemoteError {
    /// The documented exit code for a protocol error code.
    pub fn exit_code(&self) -> u8 {
        match self.code.as_str() {
            "invalid_argument" | "invalid_request" | "wrong_database" => 2,
            "database_missing" => 3,
            "busy" => 4,
            "not_found" => 5,
            "damaged" => 6,
            "disabled" => 7,
            "in_use" => 8,
            _ => 1,
        }
    }
}

fn answer(resp: Response) -> anyhow::Result<serde_json::Value> {
    match (resp.ok, resp.result, resp.error) {
        (true, Some(v), _) => Ok(v),
        (_, _, Some(e)) => Err(RemoteError {
            code: e.code,
            message: e.message,
        }
        .into()),
        _ => Err(anyhow::anyhow!("malformed answer from the daemon")),
    }
}

/// One truth about the mode: unless `$DUCKSNAP_MODE` says otherwise in
/// this shell, a daemon serving this store decides (so that `list`, which
/// reads the store here, and `restore`, which the daemon runs, agree
/// whatever `STREAMLIT_*` variables the shell has).
fn adopt_daemon_mode(ctx: &mut Ctx, env: &HostEnv) -> anyhow::Result<()> {
    if config::mode_from_env(env)?.is_some() {
        return Ok(());
    }
    if let Some((_, hello)) = client::daemon_for(ctx)? {
        if hello.mode != ctx.detection.mode {
            tracing::info!(event = "env.daemon_decides", daemon = ?hello.mode, here = ?ctx.detection.mode, "the running daemon's mode differs from this shell's detection; using the daemon's");
        }
        ctx.detection =
            environment::Detection::from_daemon(hello.mode, &hello.mode_reason, hello.pid);
    }
    Ok(())
}

/// The daemon to send a request to: one serving this store and database,
/// in local mode, while this command is in local mode too (in cloud mode
/// the local handler gives the documented "disabled" answers).
fn forward_to(ctx: &Ctx) -> anyhow::Result<Option<client::Client>> {
    if ctx.detection.is_cloud() {
        return Ok(None);
    }
    Ok(client::daemon_for(ctx)?
        .filter(|(_, hello)| hello.mode == environment::Mode::Local)
        .map(|(c, _)| c))
}

/// Runs a request through the daemon when one serves this store (so it
/// queues behind the daemon's work), else directly with the same handler.
fn call(ctx: &Ctx, req: Request) -> anyhow::Result<serde_json::Value> {
    let resp = match forward_to(ctx)? {
        Some(mut c) => {
            tracing::debug!(
                event = "client.via_daemon",
                "sending the request to the running daemon"
            );
            c.call(&req)?
        }
        None => handlers::handle(ctx, req, ops::DaemonInfo::default()),
    };
    answer(resp)
}

fn print_status(r: &ops::StatusReport) {
    println!("mode:          {:?} ({})", r.mode, r.mode_reason);
    if let Some(d) = &r.disabled {
        println!("               {d}");
    }
    println!(
        "database:      {} ({})",
        r.database.display(),
        r.database_bytes
            .map(|b| format!("{b} bytes"))
            .unwrap_or_else(|| "missing".into())
    );
    println!(
        "store:         {} ({} snapshots, {} bytes stored)",
        r.store.display(),
        r.snapshots,
        r.store_bytes
    );
    match (&r.last_snapshot, r.last_snapshot_age_seconds) {
        (Some(s), Some(age)) => println!("last snapshot: {} ({}, {age} s ago)", s.id, s.reason),
        _ => println!("last snapshot: none"),
    }
    match &r.daemon {
        Some(d) => {
            println!(
                "next run:      {}",
                r.next_run
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "none scheduled".into())
            );
            println!("daemon:        running (pid {})", d.pid);
            match &d.last_error {
                Some(e) => println!(
                    "last error:    {} ({} s ago) {}: {}",
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    (chrono::Utc::now() - e.at).num_seconds(),
                    e.what,
                    e.message
                ),
                None => println!("last error:    none"),
            }
        }
        None => {
            println!(
                "next run:      none (no daemon runs; the schedule runs in `ducksnap daemon`)"
            );
            println!("daemon:        not running");
        }
    }
}
