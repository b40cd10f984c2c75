//! The `ducksnap` binary: parse arguments, run, print any error once with its
//! chain, exit with the documented code. A closed stdout (`ducksnap list |
//! head -1`) ends the command quietly with exit 0, as ripgrep does.

use std::process::ExitCode;

use clap::Parser;
use ducksnap::cli::{self, Cli, RemoteError};
use ducksnap::config::HostEnv;
use ducksnap::ops::OpError;
use ducksnap::protocol::ErrorCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    let json = args.wants_json();
    match cli::run(args, HostEnv::from_process()) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let message = render_chain(&err);
            eprintln!("ducksnap: error: {message}");
            let code = error_code(&err);
            if json {
                cli::print_json_error(code.as_str(), code.exit_code(), &message);
            }
            ExitCode::from(code.exit_code())
        }
    }
}

/// The error's code in the one table; `failed` (exit 1) for the rest.
fn error_code(err: &anyhow::Error) -> ErrorCode {
    err.downcast_ref::<OpError>()
        .map(OpError::code)
        .or_else(|| err.downcast_ref::<RemoteError>().map(|e| e.code))
        .unwrap_or(ErrorCode::Failed)
}

/// Whether the command stopped only because stdout's reader went away
/// (not a broken pipe to the daemon, which is an error).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<cli::StdoutClosed>().is_some()
}

/// The error and its causes, skipping causes whose text the message above
/// already contains.
fn render_chain(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
