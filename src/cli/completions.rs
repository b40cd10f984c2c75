//! `ducksnap completions SHELL` and `ducksnap man`: shell completions and a
//! man page, generated from the same clap definitions as the parser.

use clap::CommandFactory;

use super::Cli;
use super::output::stdout_error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Writes the completion script for `a.shell` to stdout, e.g.
/// `ducksnap completions bash > ~/.local/share/bash-completion/completions/ducksnap`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "ducksnap", &mut out);
    write_all(&out)
}

/// Writes the man page (roff) to stdout, e.g.
/// `ducksnap man > ~/.local/share/man/man1/ducksnap.1`.
pub fn man() -> anyhow::Result<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    write_all(&out)
}

fn write_all(bytes: &[u8]) -> anyhow::Result<u8> {
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(stdout_error)?;
    Ok(0)
}
