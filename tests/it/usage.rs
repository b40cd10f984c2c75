//! What a newcomer and a person at a terminal see: the demo, saying which
//! snapshot, errors as JSON, sizes and times for people, configs that print
//! back exactly what they say.

use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

fn snapshot_with(ws: &Workspace, reason: &str, sql: &str) -> String {
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch(sql).unwrap();
    drop(c);
    let v = ws.json(&["snapshot", "--reason", reason, "--json"]);
    v["snapshot"]["id"].as_str().unwrap().to_string()
}

#[test]
fn the_demo_shows_the_main_job_and_checks_it() {
    let ws = Workspace::new();
    let dir = ws.path().join("demo");
    let out = ws
        .bare_cmd()
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for step in [
        "online capture",
        "$ ducksnap snapshot --reason pre-delete",
        "deletes customer 42",
        "$ ducksnap restore latest:pre-delete",
        "The rows are back",
        "Every step checked out",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
    // The Python hint names the client's real API.
    assert!(
        text.contains("@with_snapshot(reason=\"pre-delete\")")
            && text.contains("from ducksnap import with_snapshot")
            && !text.contains("client.with_snapshot"),
        "{text}"
    );
    // No `ducksnap` on this PATH: the commands to copy name this binary.
    let me = std::fs::canonicalize(BIN).unwrap();
    assert!(
        text.contains(&format!("  {} list", me.display()))
            && text.contains("no ducksnap on PATH runs this build"),
        "{text}"
    );
    // What it says happened did: the store holds the online pre-delete
    // snapshot and the restore's safety snapshot, and customer 42 is back.
    let config = dir.join("ducksnap.toml");
    let out = ws
        .bare_cmd()
        .arg("--config")
        .arg(&config)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["pre-restore", "pre-delete"], "{list}");
    assert_eq!(list[1]["method"], "online", "{list}");
    let c = open_ro(&dir.join("data/shop.duckdb"));
    assert_eq!(
        query_i64(&c, "SELECT count(*) FROM orders WHERE customer_id = 42"),
        21
    );
    drop(c);
    // It never works in a directory that holds anything.
    let before = tree_digest(&dir);
    let out = ws
        .bare_cmd()
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(tree_digest(&dir), before);
    // With this binary on PATH as `ducksnap`, the commands say `ducksnap`.
    let bin_dir = me.parent().unwrap();
    let out = ws
        .bare_cmd()
        .env("PATH", bin_dir)
        .args(["demo", "--dir"])
        .arg(ws.path().join("demo2"))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("\n  ducksnap list ") && !text.contains("no ducksnap on PATH"),
        "{text}"
    );
}

/// `init` that cannot tell which database is meant is a usage error (exit
/// 2, as the exit-code table says), naming the candidates and the option.
#[test]
fn init_without_one_database_is_a_usage_error() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.config_path()).unwrap();
    let out = ws.bare_cmd().arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no DuckDB database found"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir_all(ws.path().join("a")).unwrap();
    std::fs::create_dir_all(ws.path().join("b")).unwrap();
    make_db(&ws.path().join("a/one.duckdb"), "CREATE TABLE t (i INT)");
    make_db(&ws.path().join("b/two.duckdb"), "CREATE TABLE t (i INT)");
    let out = ws.bare_cmd().arg("init").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("one.duckdb") && err.contains("two.duckdb") && err.contains("--database FILE"),
        "{err}"
    );
    assert!(!ws.config_path().exists());
}

/// The shortest prefix of `id` that no other id in `ids` starts with.
fn unique_prefix(id: &str, ids: &[String]) -> String {
    (1..=id.len())
        .map(|n| &id[..n])
        .find(|p| ids.iter().filter(|o| o.starts_with(p)).count() == 1)
        .unwrap()
        .to_string()
}

#[test]
fn latest_prefixes_and_reasons_select_a_snapshot() {
    let ws = Workspace::new();
    let first = snapshot_with(&ws, "manual", "CREATE TABLE t AS SELECT 1 AS i");
    let pre = snapshot_with(&ws, "pre-delete", "INSERT INTO t VALUES (2)");
    let newest = snapshot_with(&ws, "manual", "INSERT INTO t VALUES (3)");
    let ids = ws.list_ids();
    let shown = |sel: &str| ws.json(&["show", sel, "--json"])["manifest"]["id"].clone();
    assert_eq!(shown("latest"), newest.as_str());
    assert_eq!(shown("latest:pre-delete"), pre.as_str());
    assert_eq!(shown("latest:manual"), newest.as_str());
    assert_eq!(shown(&unique_prefix(&first, &ids)), first.as_str());
    assert_eq!(shown(&first), first.as_str());
    // Ambiguous: exit 2, every candidate named, on stderr and in JSON.
    let out = ws.run(&["show", "2"]);
    assert_eq!(out.status.code(), Some(2));
    for id in &ids {
        assert!(stderr(&out).contains(id.as_str()), "{}", stderr(&out));
    }
    let out = ws.run(&["show", "2", "--json"]);
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "invalid_argument", "{err}");
    assert_eq!(err["error"]["exit_code"], 2, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains(&pre));
    // No match, and hostile ones.
    let out = ws.run(&["show", "latest:scheduled", "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    for bad in [
        "latest:",
        "latest:../x",
        "x\"; DROP TABLE t; --",
        "2026/..",
        "",
    ] {
        let out = ws.run(&["show", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    // restore --to, pin and verify take them too.
    let to = ws.path().join("copy.duckdb");
    let r = ws.json(&[
        "restore",
        "latest:pre-delete",
        "--to",
        to.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert_eq!(r["id"], pre.as_str(), "{r}");
    assert_eq!(query_i64(&open_ro(&to), "SELECT count(*) FROM t"), 2);
    let p = ws.json(&["pin", &unique_prefix(&pre, &ids), "--json"]);
    assert_eq!(
        (p["id"].as_str(), p["pinned"].as_bool()),
        (Some(pre.as_str()), Some(true))
    );
    let v = ws.json(&["verify", "latest", "--json"]);
    assert_eq!(v["snapshots"][0]["id"], newest.as_str(), "{v}");
    // In place, `latest` is the newest snapshot before the restore's own
    // pre-restore snapshot.
    snapshot_with(&ws, "scratch", "INSERT INTO t VALUES (4)");
    let latest = ws.list_ids()[0].clone();
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("INSERT INTO t VALUES (5)").unwrap();
    drop(c);
    let r = ws.json(&["restore", "latest", "--yes", "--json"]);
    assert_eq!(r["id"], latest.as_str(), "{r}");
    assert_ne!(r["pre_restore"], latest.as_str(), "{r}");
    assert_eq!(query_i64(&open_ro(&ws.db()), "SELECT count(*) FROM t"), 4);
}

#[test]
fn list_filters_by_reason_label_and_time() {
    let ws = Workspace::new();
    snapshot_with(&ws, "manual", "CREATE TABLE t AS SELECT 1 AS i");
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("INSERT INTO t VALUES (2)").unwrap();
    drop(c);
    let labelled = ws.json(&[
        "snapshot",
        "--reason",
        "pre-delete",
        "--label",
        "Before deleting customer 42",
        "--json",
    ])["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list", "--json"];
        a.extend_from_slice(args);
        ws.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--reason", "pre-delete"]), vec![labelled.as_str()]);
    assert_eq!(ids(&["--label", "CUSTOMER 42"]), vec![labelled.as_str()]);
    assert_eq!(ids(&["--since", "1h"]).len(), 2);
    assert_eq!(ids(&["--since", "2h ago", "--reason", "manual"]).len(), 1);
    assert!(ids(&["--since", "2099-01-01T00:00:00Z"]).is_empty());
    assert_eq!(ids(&["--since", "2000-01-01 00:00 Europe/Berlin"]).len(), 2);
    assert_eq!(ids(&["--since", "2 minutes ago"]).len(), 2);
    assert_eq!(ids(&["--since", "yesterday"]).len(), 2);
    assert_eq!(ids(&["--as-of", "2000-01-01 00:00"]).len(), 0);
    for bad in ["yesterday-ish", "14:00", "5 parsecs"] {
        let out = ws.run(&["list", "--since", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&out).contains("accepted:"), "{}", stderr(&out));
    }
}

#[test]
fn sizes_and_times_are_printed_for_people() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(300000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let list = stdout(&ws.run(&["list"]));
    assert!(list.contains(" KiB") && list.contains("just now"), "{list}");
    assert!(list.lines().next().unwrap().contains("pinned"), "{list}");
    let db_bytes = std::fs::metadata(ws.db()).unwrap().len().to_string();
    assert!(!list.contains(&db_bytes), "raw byte count in:\n{list}");
    let utc = stdout(&ws.run(&["list", "--utc"]));
    assert!(utc.contains(" UTC"), "{utc}");
    let show = stdout(&ws.run(&["show", &id]));
    assert!(show.contains("capture:     quiescent"), "{show}");
    assert!(show.contains("check:       verified"), "{show}");
    let status = stdout(&ws.run(&["status"]));
    assert!(status.starts_with("mode:          local"), "{status}");
    assert!(status.contains(" KiB"), "{status}");
    // --json keeps exact numbers.
    let v = ws.json(&["list", "--json"]);
    assert!(v[0]["db_size"].is_u64(), "{v}");
}

/// `config check` prints what it read in units that read back to the same
/// values: the printed config, loaded again, is the same config.
#[test]
fn config_check_round_trips_every_shipped_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ws = Workspace::new();
    for shipped in ["config/ducksnap.toml", "config/default.toml"] {
        let path = root.join(shipped);
        let check = |p: &Path, json: bool| {
            let mut c = ws.bare_cmd();
            c.current_dir("/")
                .arg("--config")
                .arg(p)
                .args(["config", "check"]);
            if json {
                c.arg("--json");
            }
            let out = c.output().unwrap();
            assert!(out.status.success(), "{shipped}: {}", stderr(&out));
            stdout(&out)
        };
        let printed = check(&path, false);
        assert!(!printed.contains("67108864"), "{printed}");
        let again = ws.path().join("printed.toml");
        std::fs::write(&again, &printed).unwrap();
        let mut a: Value = serde_json::from_str(&check(&path, true)).unwrap();
        let mut b: Value = serde_json::from_str(&check(&again, true)).unwrap();
        a.as_object_mut().unwrap().remove("source");
        b.as_object_mut().unwrap().remove("source");
        assert_eq!(a, b, "{shipped} printed as:\n{printed}");
    }
}

#[test]
fn init_writes_a_config_that_works_from_anywhere_and_never_overwrites() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.config_path()).unwrap();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    // Not candidates: a database inside a hidden directory, and a store.
    std::fs::create_dir_all(ws.path().join(".venv")).unwrap();
    make_db(
        &ws.path().join(".venv/other.duckdb"),
        "CREATE TABLE u (i INT)",
    );
    let init = |args: &[&str]| {
        ws.bare_cmd()
            .env("XDG_CONFIG_HOME", ws.path().join("cfg"))
            .env("XDG_RUNTIME_DIR", ws.path().join("run"))
            .arg("init")
            .args(args)
            .output()
            .unwrap()
    };
    let out = init(&["--systemd"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("systemctl --user enable --now"),
        "{}",
        stdout(&out)
    );
    let written = std::fs::read(ws.config_path()).unwrap();
    // From cwd "/", the config finds the same database and store.
    let out = ws
        .bare_cmd()
        .current_dir("/")
        .arg("--config")
        .arg(ws.config_path())
        .args(["config", "check", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let real = std::fs::canonicalize(ws.db()).unwrap();
    assert_eq!(c["database"]["path"], real.to_str().unwrap(), "{c}");
    assert_eq!(
        c["socket"]["path"],
        ws.path()
            .join("run/ducksnap")
            .join(format!(
                "{}.sock",
                ws.path()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_start_matches('.')
            ))
            .to_str()
            .unwrap(),
        "{c}"
    );
    // The unit starts this very binary with this config.
    let units = ws.path().join("cfg/systemd/user");
    let unit_file = std::fs::read_dir(&units)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let unit = std::fs::read_to_string(&unit_file).unwrap();
    let exe = std::fs::canonicalize(BIN).unwrap();
    let exec = format!(
        "ExecStart=\"{}\" --config \"{}\" daemon",
        exe.display(),
        ws.config_path().canonicalize().unwrap().display()
    );
    assert!(unit.contains(&exec), "{exec}\n{unit}");
    // Where the offsite credentials and the alert go, said in the unit.
    assert!(
        unit.contains("\n#EnvironmentFile=%h/.config/ducksnap/")
            && unit.contains("offsite.credentials_file")
            && unit.contains("\n#OnFailure=ducksnap-alert@%n.service"),
        "{unit}"
    );
    // A second init refuses, config and unit untouched; --force rewrites.
    let out = init(&["--systemd"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.config_path()).unwrap(), written);
    std::fs::write(ws.config_path(), "# mine\n").unwrap();
    let out = init(&["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.config_path()).unwrap(), written);
    // Two candidate databases: refused, both named; --database chooses.
    make_db(
        &ws.path().join("data/second.duckdb"),
        "CREATE TABLE v (i INT)",
    );
    let out = init(&["--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("second.duckdb") && stderr(&out).contains("app.duckdb"));
    let out = init(&["--force", "--database", "data/second.duckdb"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    assert!(text.contains("second.duckdb\""), "{text}");
}

/// README's exit-code table is the one `--help` prints
/// (`protocol::code::EXIT_CODES`), row for row.
#[test]
fn the_exit_code_table_is_complete_and_the_same_everywhere() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let rows: Vec<(u8, String)> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Exit codes"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", code, meaning, ""] => Some((code.parse().ok()?, meaning.to_string())),
                _ => None,
            }
        })
        .collect();
    let table: Vec<(u8, String)> = ducksnap::protocol::code::EXIT_CODES
        .iter()
        .map(|(c, m)| (*c, m.to_string()))
        .collect();
    assert_eq!(rows[..table.len()], table[..]);
    // Help is wrapped to the terminal (100 columns on a pipe): compare the
    // words, each row starting a line.
    let help = stdout(&Workspace::new().bare_cmd().arg("--help").output().unwrap());
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = words(&help);
    for (code, meaning) in &table {
        assert!(
            help.contains(&format!("\n  {code}  "))
                && flat.contains(&words(&format!("{code} {meaning}"))),
            "{code} missing from --help:\n{help}"
        );
    }
    // Every code an error can carry is in the table.
    use ducksnap::protocol::ErrorCode::*;
    for c in [
        InvalidJson,
        InvalidRequest,
        LineTooLong,
        IdleTimeout,
        Unauthorized,
        TooManyConnections,
        ShuttingDown,
        Disabled,
        InvalidArgument,
        NotFound,
        DatabaseMissing,
        Busy,
        InUse,
        Damaged,
        NoSpace,
        WrongDatabase,
        Failed,
    ] {
        assert!(
            table.iter().any(|(code, _)| *code == c.exit_code()),
            "{c:?}"
        );
    }
}

#[test]
fn version_completions_and_man_page() {
    let ws = Workspace::new();
    let v = ws.json(&["version", "--json"]);
    assert_eq!(v["ducksnap"], env!("CARGO_PKG_VERSION"));
    assert!(v["duckdb"].as_str().unwrap().starts_with('v'), "{v}");
    assert_eq!(
        v["storage_versions"][1],
        ducksnap::database::duckfile::BUNDLED_STORAGE_VERSION
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = ws.run(&["completions", shell]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("restore"), "{shell}");
    }
    let out = ws.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let man = stdout(&ws.run(&["man"]));
    assert!(man.starts_with(".ie") && man.contains(".SH NAME"), "{man}");
    assert!(man.contains("latest:REASON") && man.contains("Exit codes"));
}

/// Runs `args` with stdin, stdout and stderr on a pseudo-terminal
/// (util-linux `script`); returns everything the terminal received.
fn on_a_pty(ws: &Workspace, env: &[(&str, &str)], args: &str) -> String {
    let cmd = format!("{BIN} --config {} {args}", ws.config_path().display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", ws.path())
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .current_dir(ws.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_and_colour_only_on_a_terminal_and_never_with_no_color() {
    let ws = Workspace::new();
    make_big(&ws, 2_000_000);
    ws.snapshot();
    let tty = on_a_pty(&ws, &[], "verify --deep");
    assert!(tty.contains("verifying ["), "no progress bar:\n{tty}");
    assert!(tty.contains("\x1b[2K"), "the bar is not redrawn:\n{tty}");
    assert!(tty.contains("1 snapshot(s) checked, 1 ok"), "{tty}");
    let plain = on_a_pty(&ws, &[("NO_COLOR", "1")], "verify --deep");
    assert!(
        !plain.contains('\x1b'),
        "escape sequences with NO_COLOR:\n{plain:?}"
    );
    assert!(plain.contains("ok      "), "{plain}");
    // Log lines: coloured on a terminal, plain with NO_COLOR (a stale
    // catalog makes `list` log a warning).
    let stale = || std::fs::write(ws.store_dir().join("snapshot_metadata.json"), "{}").unwrap();
    stale();
    let tty = on_a_pty(&ws, &[], "list");
    assert!(
        tty.contains("WARN") && tty.contains("\x1b[3"),
        "warning not coloured:\n{tty:?}"
    );
    stale();
    let plain = on_a_pty(&ws, &[("NO_COLOR", "1")], "list");
    assert!(
        plain.contains("WARN") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    // Piped: the results and nothing else.
    let out = ws.run(&["verify", "--deep"]);
    assert!(out.status.success());
    assert!(!stdout(&out).contains("verifying") && !stdout(&out).contains('\x1b'));
    assert_eq!(stderr(&out), "", "nothing extra on a pipe");
}

#[test]
fn times_people_type_parse_exactly_as_documented() {
    use chrono::{TimeZone, Utc};
    use ducksnap::when::parse;
    let now = Utc.with_ymd_and_hms(2026, 11, 29, 15, 0, 0).unwrap();
    let at = |s: &str| parse(s, now).map(|t| t.to_rfc3339());
    assert_eq!(at("now").unwrap(), now.to_rfc3339());
    assert_eq!(at("90m").unwrap(), "2026-11-29T13:30:00+00:00");
    assert_eq!(at("2h ago").unwrap(), "2026-11-29T13:00:00+00:00");
    assert_eq!(at("1w").unwrap(), "2026-11-22T15:00:00+00:00");
    assert_eq!(
        at("2026-11-29T14:00:00Z").unwrap(),
        "2026-11-29T14:00:00+00:00"
    );
    assert_eq!(
        at("2026-11-29 15:00:00+01:00").unwrap(),
        "2026-11-29T14:00:00+00:00"
    );
    assert_eq!(
        at("2026-11-29 14:00 UTC").unwrap(),
        "2026-11-29T14:00:00+00:00"
    );
    assert_eq!(
        at("2026-11-29 14:00 Europe/Berlin").unwrap(),
        "2026-11-29T13:00:00+00:00"
    );
    assert_eq!(
        at("2026-07-01 Europe/Berlin").unwrap(),
        "2026-06-30T22:00:00+00:00"
    );
    // 02:30 does not exist in Berlin on 2026-03-29 (clocks go 02:00 → 03:00).
    let skipped = at("2026-03-29 02:30 Europe/Berlin").unwrap_err();
    assert!(skipped.contains("does not exist"), "{skipped}");
    // A repeated hour (2026-10-25 02:30 happens twice) means the earlier one.
    assert_eq!(
        at("2026-10-25 02:30 Europe/Berlin").unwrap(),
        "2026-10-25T00:30:00+00:00"
    );
    for bad in [
        "",
        "14:00 UTC",
        "yesterday at noon",
        "today 25:00",
        "2026-13-01 UTC",
        "5 parsecs",
        "2h later",
        "2026-11-29 14:00 Mars/Olympus",
        "99999999999999999999h",
    ] {
        let e = at(bad).unwrap_err();
        assert!(e.contains("accepted:"), "{bad:?}: {e}");
    }
}

/// The times `list` prints and the ones people type from it: "2 minutes
/// ago", a date and time without a zone (this machine's local time, as
/// `list` shows it), "yesterday" (local midnight) — each accepted, with the
/// clock changes handled as for an explicit zone.
#[test]
fn times_as_list_prints_them_are_accepted() {
    use chrono::{TimeZone, Utc};
    use chrono_tz::Europe::Berlin;
    use ducksnap::when::parse_in;
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 31, 0).unwrap();
    let at = |s: &str| parse_in(s, now, &Berlin).map(|t| t.to_rfc3339());
    for (typed, want) in [
        ("2 minutes ago", "2026-12-06T12:29:00+00:00"),
        ("1 minute ago", "2026-12-06T12:30:00+00:00"),
        ("3 hours ago", "2026-12-06T09:31:00+00:00"),
        ("1 day ago", "2026-12-05T12:31:00+00:00"),
        ("2 weeks ago", "2026-11-22T12:31:00+00:00"),
        ("45 seconds ago", "2026-12-06T12:30:15+00:00"),
        ("10 minutes", "2026-12-06T12:21:00+00:00"),
        ("just now", "2026-12-06T12:31:00+00:00"),
        // Berlin is UTC+1 in December: local 13:29:36 is 12:29:36 UTC.
        ("2026-12-06 13:29:36", "2026-12-06T12:29:36+00:00"),
        ("2026-12-06 13:29", "2026-12-06T12:29:00+00:00"),
        ("2026-12-06", "2026-12-05T23:00:00+00:00"),
        ("yesterday", "2026-12-04T23:00:00+00:00"),
        ("today", "2026-12-05T23:00:00+00:00"),
        ("yesterday 14:00", "2026-12-05T13:00:00+00:00"),
        ("today 09:15:30", "2026-12-06T08:15:30+00:00"),
        // With a zone, as before.
        ("2026-12-06 13:29:36 UTC", "2026-12-06T13:29:36+00:00"),
        ("2026-12-06 13:29:36 local", "2026-12-06T12:29:36+00:00"),
    ] {
        assert_eq!(at(typed).as_deref(), Ok(want), "{typed:?}");
    }
    // A local time the spring clock change skips is refused, naming it; one
    // the autumn change repeats means the earlier instant.
    let skipped = at("2026-03-29 02:30").unwrap_err();
    assert!(
        skipped.contains("does not exist in local time"),
        "{skipped}"
    );
    assert_eq!(
        at("2026-10-25 02:30").as_deref(),
        Ok("2026-10-25T00:30:00+00:00")
    );
    // Refusals show an accepted spelling of what was meant.
    let e = at("12:29:36").unwrap_err();
    assert!(
        e.contains("needs a date") && e.contains("today 12:29:36") && e.contains("2 minutes ago"),
        "{e}"
    );
}

/// A selector that matches nothing says what there is: the reasons the
/// store has for `latest:REASON`, where the ids are for an id or prefix;
/// one that is not a selector says the forms.
#[test]
fn a_selector_that_matches_nothing_says_what_there_is() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    let out = ws.run(&["pin", "latest:pre-delete"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("no store yet"), "{}", stderr(&out));
    ws.run(&["snapshot", "--reason", "pre-delete"]);
    let newest = ws.snapshot()["id"].as_str().unwrap().to_string();
    let out = ws.run(&["pin", "latest:pre-delet"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the reasons there are: manual, pre-delete"),
        "{}",
        stderr(&out)
    );
    let out = ws.run(&["show", "2025"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the newest is {newest}")),
        "{}",
        stderr(&out)
    );
    let out = ws.run(&["show", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for form in [
        "a unique prefix",
        "latest:REASON",
        "--as-of TIME",
        "ducksnap list",
    ] {
        assert!(stderr(&out).contains(form), "{form}: {}", stderr(&out));
    }
}
