//! The command line as a shell uses it.

use std::process::Stdio;

use crate::helpers::*;

/// Runs `args` with stdout a pipe whose reader is already gone (what
/// `ducksnap list | head -1` becomes once `head` has its line).
fn with_closed_stdout(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    ws.cmd(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    ws.snapshot();
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["show", &id],
        vec!["show", &id, "--json"],
        vec!["status"],
        vec!["env"],
        vec!["config", "check"],
        vec!["prune", "--dry-run"],
        vec!["verify"],
    ] {
        let out = with_closed_stdout(&ws, &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}: nothing on stderr");
    }
    // And as a shell pipeline, with ducksnap's own exit status.
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "{} --config {} show {id} --json | head -1",
            env!("CARGO_BIN_EXE_ducksnap"),
            ws.config_path().display()
        ))
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\n");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// Help read in an 80-column terminal (`COLUMNS=80`, as a terminal sets
/// it): every line of `--help`, and of every subcommand's, fits.
#[test]
fn help_fits_80_columns() {
    let ws = Workspace::new();
    let help = |args: &[&str]| {
        let out = ws
            .bare_cmd()
            .args(args)
            .env("COLUMNS", "80")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let top = help(&["--help"]);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    for c in std::iter::once(None).chain(commands.iter().map(Some)) {
        let args: Vec<&str> = c
            .map(String::as_str)
            .into_iter()
            .chain(["--help"])
            .collect();
        for line in help(&args).lines() {
            assert!(line.chars().count() <= 80, "{args:?}: {line}");
        }
    }
}
