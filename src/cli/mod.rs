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

pub mod client;
mod config_check;
mod daemon;
mod env;
pub mod human;
mod list;
mod output;
mod pin;
mod prune;
mod remote;
mod restore;
mod show;
mod snapshot;
mod status;
mod verify;

pub use output::{StdoutClosed, print_json_error};
pub use remote::RemoteError;

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
    Snapshot(snapshot::Args),
    /// List snapshots, newest first.
    List(list::Args),
    /// Show one snapshot's manifest.
    Show(show::Args),
    /// Put a snapshot back: over the configured database (after a pinned
    /// pre-restore safety snapshot), or as a standalone file with --to.
    Restore(restore::Args),
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
        match &self.command {
            Command::Snapshot(a) => a.json,
            Command::List(a) => a.json,
            Command::Show(a) | Command::Pin(a) | Command::Unpin(a) => a.json,
            Command::Restore(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Prune(a) => a.json,
            Command::Status(a) => a.json,
            Command::Config {
                command: ConfigCommand::Check(a),
            } => a.json,
            Command::Env(a) => a.json,
            Command::Daemon => false,
        }
    }
}

/// Runs the parsed command. Returns the exit code on success.
pub fn run(cli: Cli, env: HostEnv) -> anyhow::Result<u8> {
    let config = config::load(cli.config.as_deref(), &env).map_err(OpError::from)?;
    init_logging(&cli, &config, &env)?;
    let detection = environment::detect(&env, &config.database.path, config.database.mode);
    tracing::debug!(event = "env.detected", mode = %detection.mode, reason = %detection.reason, "environment detected");
    let mut ctx = Ctx { config, detection };
    if !matches!(
        cli.command,
        Command::Daemon | Command::Config { .. } | Command::Env { .. }
    ) {
        remote::adopt_daemon_mode(&mut ctx, &env)?;
    }
    match cli.command {
        Command::Snapshot(a) => snapshot::run(&ctx, a),
        Command::List(a) => list::run(&ctx, a),
        Command::Show(a) => show::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, &env, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Pin(a) => pin::run(&ctx, a, true),
        Command::Unpin(a) => pin::run(&ctx, a, false),
        Command::Status(a) => status::run(&ctx, a),
        Command::Daemon => daemon::run(ctx, env, cli.config),
        Command::Config {
            command: ConfigCommand::Check(a),
        } => config_check::run(&ctx, a),
        Command::Env(a) => env::run(&ctx, &env, a),
    }
}

fn init_logging(cli: &Cli, config: &config::Config, env: &HostEnv) -> Result<(), OpError> {
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
    })
}
