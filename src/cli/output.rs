//! Everything a subcommand prints goes through here: `outln!` and
//! [`print_json`] return write errors instead of panicking, and a closed
//! pipe becomes [`StdoutClosed`], which `main.rs` turns into a quiet exit 0.

use std::io::Write;

/// `println!` that returns the write's error instead of panicking (a closed
/// pipe becomes [`StdoutClosed`]); for functions returning `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::output::stdout_error)?
    }};
}
pub(crate) use outln;

/// Stdout's reader went away (`ducksnap list | head -1`): the command stops
/// and the process exits 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// A write error on stdout: [`StdoutClosed`] for a broken pipe.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::from(e).context("writing to standard output")
    }
}

/// Prints `v` as pretty JSON in one write (a manifest is a thousand lines,
/// and stdout is line-buffered).
pub(super) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(v)?;
    text.push(b'\n');
    std::io::stdout()
        .lock()
        .write_all(&text)
        .map_err(stdout_error)
}
