//! Command-line interface: the global options and a short dispatch to one
//! module per subcommand, each owning its arguments, its call and its
//! printing. Output goes through `outln!` (`cli/output.rs`), so a closed pipe
//! (`ducksnap list | head -1`) ends the command quietly (see `main.rs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, HostEnv, LogFormat};
use crate::environment;
use crate::logging;
use crate::ops::{Ctx, OpError};

mod adopt;
pub mod client;
mod completions;
mod config_check;
mod daemon;
mod demo;
mod diff;
mod doctor;
mod env;
mod export;
pub mod human;
mod init;
pub mod list;
mod offsite;
mod output;
mod pin;
mod progress;
mod prune;
mod remote;
mod rescue;
mod restore;
mod show;
mod snapshot;
mod status;
mod verify;
mod version;

pub use output::{StdoutClosed, print_json_error};
pub use remote::RemoteError;

#[derive(Debug, Parser)]
#[command(
    name = "ducksnap",
    version,
    about = "Point-in-time snapshots of a local DuckDB database",
    after_help = "See `ducksnap --help` for examples and the exit codes.",
    after_long_help = long_help()
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

/// Examples and the exit-code table, after `--help`.
fn long_help() -> String {
    let mut s = String::from(
        "Examples:
  ducksnap demo                           see the main job work on a sample database
  ducksnap init --systemd                 set this project up, with a systemd user unit
  ducksnap snapshot --reason pre-delete --label \"before the cleanup\"
  ducksnap list --since 1d --reason pre-delete
  ducksnap show latest
  ducksnap restore latest:pre-delete      put back the newest pre-delete snapshot
  ducksnap restore 20261129T14 --to /tmp/copy.duckdb   (a unique id prefix)
  ducksnap doctor                         why DuckDB will not open the database
  ducksnap rescue --to /tmp/rescued.duckdb   every commit that can be got back
  ducksnap verify --deep

A snapshot is named by its id, a unique prefix of it, `latest`, or
`latest:REASON`.

Exit codes:
",
    );
    for (code, meaning) in crate::protocol::code::EXIT_CODES {
        s.push_str(&format!("  {code}  {meaning}\n"));
    }
    s
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

/// Every subcommand: those that work on a configured database and store,
/// and those that need no config (the demo, `init`, completions, the man
/// page, `version`).
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Configured(Configured),
    /// See the main job work on a sample database of its own: the daemon, an
    /// app holding the database, an online pre-delete snapshot, the delete,
    /// the restore, the rows back.
    Demo(demo::Args),
    /// Set a project up: find its DuckDB file, write ducksnap.toml with
    /// absolute paths, optionally install a systemd user unit.
    Init(init::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the man page (roff): `ducksnap man | man -l -`.
    Man,
    /// This build, the bundled DuckDB and the storage versions it reads.
    Version(version::Args),
    /// The demo's application process (internal).
    #[command(name = "__demo-app", hide = true)]
    DemoApp(demo::app::Args),
}

/// The subcommands that load the config first.
#[derive(Debug, Subcommand)]
pub enum Configured {
    /// Take a snapshot of the database now.
    Snapshot(snapshot::Args),
    /// List snapshots, newest first.
    List(list::Args),
    /// Show one snapshot's manifest.
    Show(show::Args),
    /// Put a snapshot back: over the configured database (after a pinned
    /// pre-restore safety snapshot), or as a standalone file with --to.
    Restore(restore::Args),
    /// What changed between two states: snapshots, --as-of a time, or live;
    /// with --table, that table's rows (added, removed, changed).
    Diff(diff::Args),
    /// One table of a snapshot (or --as-of a time) to a .csv or .duckdb file.
    Export(export::Args),
    /// Check that snapshots are intact: every chunk re-hashed; --deep also
    /// opens each with DuckDB and reads every column.
    Verify(verify::Args),
    /// Apply the retention policy and delete chunks no snapshot needs.
    Prune(prune::Args),
    /// Keep a snapshot whatever the retention policy says.
    Pin(show::Args),
    /// Let retention remove a snapshot again.
    Unpin(show::Args),
    /// Run the service: schedule, watcher and socket (systemd user unit).
    Daemon,
    /// Mode, database, last snapshot, next run, store size, last error.
    Status(status::Args),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show the environment detection: the mode and every signal.
    Env(env::Args),
    /// Why DuckDB will not open the database, and what to do (reads only).
    Doctor(doctor::Args),
    /// When DuckDB will not open the database: one that opens, with every
    /// commit that can be got back (the broken files kept as a snapshot).
    Rescue(rescue::Args),
    /// The copy of the store in S3-compatible object storage.
    Offsite(offsite::Args),
    /// Make the configured store this database's: for a project that moved
    /// or was copied on purpose (a store belongs to one database).
    Adopt(adopt::Args),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the config; print the effective config with paths resolved.
    Check(config_check::Args),
}

impl Cli {
    /// Whether the command was asked for JSON (`--json`): then its error,
    /// too, is reported as JSON on stdout (`main.rs`).
    pub fn wants_json(&self) -> bool {
        let command = match &self.command {
            Command::Configured(c) => c,
            Command::Version(a) => return a.json,
            _ => return false,
        };
        match command {
            Configured::Snapshot(a) => a.json,
            Configured::List(a) => a.json,
            Configured::Show(a) | Configured::Pin(a) | Configured::Unpin(a) => a.json,
            Configured::Restore(a) => a.json,
            Configured::Diff(a) => a.json,
            Configured::Export(a) => a.json,
            Configured::Verify(a) => a.json,
            Configured::Prune(a) => a.json,
            Configured::Status(a) => a.json,
            Configured::Config {
                command: ConfigCommand::Check(a),
            } => a.json,
            Configured::Env(a) => a.json,
            Configured::Doctor(a) => a.json,
            Configured::Rescue(a) => a.json,
            Configured::Offsite(a) => a.json,
            Configured::Adopt(a) => a.json,
            Configured::Daemon => false,
        }
    }
}

/// Runs the parsed command. Returns the exit code on success.
pub fn run(cli: Cli, env: HostEnv) -> anyhow::Result<u8> {
    let level = cli.log_level.as_deref();
    match cli.command {
        Command::Configured(Configured::Status(a)) if a.check => {
            let json = a.json;
            let c = Configured::Status(a);
            run_configured(c, cli.config, cli.log_format, level, env)
                .or_else(|e| status::unknown(e, json))
        }
        Command::Configured(c) => run_configured(c, cli.config, cli.log_format, level, env),
        Command::Demo(a) => {
            init_logging(cli.log_format, level, None, &env)?;
            demo::run(a)
        }
        Command::DemoApp(a) => demo::app::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man => completions::man(),
        Command::Version(a) => version::run(a),
        Command::Init(a) => {
            init_logging(cli.log_format, level, None, &env)?;
            init::run(a, &env)
        }
    }
}

fn run_configured(
    command: Configured,
    config_arg: Option<PathBuf>,
    format: Option<LogFormatArg>,
    level: Option<&str>,
    env: HostEnv,
) -> anyhow::Result<u8> {
    let config = config::load(config_arg.as_deref(), &env).map_err(OpError::from)?;
    let daemon = matches!(command, Configured::Daemon);
    init_logging(format, level, Some((&config, daemon)), &env)?;
    let detection = environment::detect(&env, &config.database.path, config.database.mode);
    tracing::debug!(event = "env.detected", mode = %detection.mode, reason = %detection.reason, "environment detected");
    let mut ctx = Ctx { config, detection };
    let feedback = progress::Feedback::from_env(&env);
    if !matches!(
        command,
        Configured::Daemon
            | Configured::Config { .. }
            | Configured::Env { .. }
            | Configured::Doctor { .. }
    ) {
        remote::adopt_daemon_mode(&mut ctx, &env)?;
    }
    match command {
        Configured::Snapshot(a) => snapshot::run(&ctx, a, feedback),
        Configured::List(a) => list::run(&ctx, a),
        Configured::Show(a) => show::run(&ctx, a),
        Configured::Restore(a) => restore::run(&ctx, &env, a, feedback),
        Configured::Diff(a) => diff::run(&ctx, a),
        Configured::Export(a) => export::run(&ctx, &env, a),
        Configured::Verify(a) => verify::run(&ctx, a, feedback),
        Configured::Prune(a) => prune::run(&ctx, &env, a),
        Configured::Pin(a) => pin::run(&ctx, a, true),
        Configured::Unpin(a) => pin::run(&ctx, a, false),
        Configured::Status(a) => status::run(&ctx, &env, a),
        Configured::Daemon => daemon::run(ctx, env, config_arg),
        Configured::Config {
            command: ConfigCommand::Check(a),
        } => config_check::run(&ctx, a),
        Configured::Env(a) => env::run(&ctx, &env, a),
        Configured::Doctor(a) => doctor::run(&ctx, a),
        Configured::Rescue(a) => rescue::run(&ctx, &env, a, feedback),
        Configured::Offsite(a) => offsite::run(&ctx, &env, a),
        Configured::Adopt(a) => adopt::run(&ctx, a),
    }
}

/// Logging on stderr: `--log-format` / `--log-level`, else the config's
/// format, and its level for the daemon; `warn` for every other command
/// (and human lines when there is no config).
fn init_logging(
    format: Option<LogFormatArg>,
    level: Option<&str>,
    config: Option<(&config::Config, bool)>,
    env: &HostEnv,
) -> Result<(), OpError> {
    let format = match format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Human) => LogFormat::Human,
        None => config
            .map(|(c, _)| c.log.format)
            .unwrap_or(LogFormat::Human),
    };
    let level = match (level, config) {
        (Some(l), _) => l,
        (None, Some((c, true))) => c.log.level.as_str(),
        _ => "warn",
    };
    let color = progress::Feedback::from_env(env).color;
    let journal = logging::stderr_is_journal(env.var("JOURNAL_STREAM"));
    logging::init(format, level, env.var("DUCKSNAP_LOG"), color, journal).map_err(|reason| {
        OpError::InvalidArgument {
            what: "--log-level",
            reason,
        }
    })
}
