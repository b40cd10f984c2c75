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

/// `show`, `pin`, `unpin`, `restore` and `export` choose their snapshot
/// alike: the same words for `ID` and `--as-of` in every `--help`, the
/// same refusal of both at once and of neither (the fields are written out
/// in three request types: see `ops::select::SnapshotRef`).
#[test]
fn the_snapshot_is_chosen_alike_everywhere() {
    let ws = Workspace::new();
    let section = |cmd: &str, flag: &str| -> String {
        let out = ws.run(&[cmd, "--help"]);
        let text = stdout(&out);
        let mut lines = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag));
        let first = lines.next().unwrap_or_else(|| panic!("{cmd}: no {flag}"));
        let rest: Vec<&str> = lines
            .take_while(|l| {
                !l.trim().is_empty()
                    && !l.trim_start().starts_with('-')
                    && !l.trim_start().starts_with('<')
            })
            .collect();
        std::iter::once(first)
            .chain(rest)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cmds = ["show", "pin", "unpin", "restore", "export"];
    for flag in ["--as-of", "[ID]"] {
        let texts: Vec<String> = cmds.iter().map(|c| section(c, flag)).collect();
        for (c, t) in cmds.iter().zip(&texts) {
            assert_eq!(t, &texts[0], "{c} {flag} differs from show's");
        }
    }
    let to = ws.path().join("x.duckdb");
    let to = to.to_str().unwrap();
    for cmd in cmds {
        let extra: &[&str] = match cmd {
            "restore" => &["--to", to],
            "export" => &["--table", "t", "--to", to],
            _ => &[],
        };
        let run = |sel: &[&str]| {
            let mut args = vec![cmd];
            args.extend(sel);
            args.extend(extra);
            ws.run(&args)
        };
        let both = run(&["latest", "--as-of", "1h"]);
        assert_eq!(both.status.code(), Some(2), "{cmd}: {}", stderr(&both));
        assert!(
            stderr(&both).contains("cannot be used with"),
            "{cmd}: {}",
            stderr(&both)
        );
        let neither = run(&[]);
        assert_eq!(
            neither.status.code(),
            Some(2),
            "{cmd}: {}",
            stderr(&neither)
        );
        assert!(
            stderr(&neither).contains("required"),
            "{cmd}: {}",
            stderr(&neither)
        );
    }
}
