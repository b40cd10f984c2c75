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

/// An operation's error after its report was printed: with `--json` the
/// report was the one JSON document on stdout, so the error goes to stderr
/// only and the exit code carries it; otherwise it is returned for `main`
/// to print.
pub(super) fn fail_after_report(json: bool, err: crate::ops::OpError) -> anyhow::Result<u8> {
    if json {
        eprintln!("ducksnap: error: {err}");
        return Ok(err.exit_code());
    }
    Err(err.into())
}

/// A command's error as the one JSON document on stdout (`--json`):
/// `{"error": {"code": "not_found", "exit_code": 5, "message": "…"}}`, the
/// code and exit code from the one table (README, "Exit codes").
pub fn print_json_error(code: &str, exit_code: u8, message: &str) {
    let doc = serde_json::json!({
        "error": { "code": code, "exit_code": exit_code, "message": message }
    });
    // Best effort: stdout may be the very thing that failed.
    let _ = print_json(&doc);
}

/// How to name this program in a command people copy: `ducksnap` when
/// that is what `PATH` finds, else this binary's full path (after `cargo
/// run`, `target/debug/ducksnap` is on no `PATH`).
pub fn program() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "ducksnap".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("ducksnap"))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == me)
    });
    if on_path {
        "ducksnap".into()
    } else {
        let shown = me.display().to_string();
        if shown.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
            format!("'{}'", shown.replace('\'', r"'\''"))
        } else {
            shown
        }
    }
}

/// Asks `question` on the terminal (`[y/N]`) before a command replaces
/// something; without a terminal, refuses with `unattended` (which should
/// say to pass --yes), and a "no" with `cancelled`.
pub(super) fn confirm(question: &str, unattended: String, cancelled: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(crate::ops::OpError::NotConfirmed(unattended).into());
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(crate::ops::OpError::NotConfirmed(cancelled.into()).into())
    }
}
