//! The daemon's offsite pushes: in the background, never holding up a
//! pre-delete, stopped in time by SIGTERM, on their own schedule.

use crate::helpers::daemon::*;
use crate::helpers::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// With `[offsite] push = "after-snapshot"` the daemon pushes in the
/// background: a pre-delete snapshot is answered while the server hangs,
/// the failure is retried, retention keeps what is not offsite yet, and the
/// queue drains when the server is back.
#[test]
fn offsite_pushes_in_the_background_and_never_holds_up_a_pre_delete() {
    use crate::helpers::remote::{KEY_ID, Remote, SECRET};
    let root = tempfile::tempdir().unwrap();
    let mut server = Remote::rclone(root.path());
    server.bucket("backups");
    let ws = Workspace::new();
    let key = ws.path().join("offsite.key");
    set_config(
        &ws,
        &format!(
            "[schedule]\nenabled = false\n[retention]\nkeep_last = 1\n{}",
            server.section("backups", &key)
        ),
    );
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(100000)",
    );
    let creds = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let out = cli_with(&ws, &creds, &["offsite", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut d = Daemon::start(&ws, &creds);
    let mut c = d.connect();
    let pre_delete = json!({"op": "snapshot", "reason": "pre-delete"});
    let t = Instant::now();
    assert_eq!(c.call(pre_delete.clone())["ok"], true);
    let normal = t.elapsed();
    d.wait_event("offsite.pushed", Duration::from_secs(60));
    // The server now accepts connections and never answers.
    let port = server.port;
    server.kill();
    let hang = crate::helpers::remote::Hang::at(port);
    write_db(&ws.db(), "INSERT INTO t VALUES (-1)");
    let t = Instant::now();
    let r = d.connect().call(pre_delete.clone());
    let hanging = t.elapsed();
    println!(
        "pre-delete snapshot answered in {normal:?} normally, {hanging:?} while the offsite server hangs"
    );
    assert_eq!(r["ok"], true, "{r}");
    // The push times out (10 s a request here); the answer came long before.
    assert!(hanging < Duration::from_secs(10), "{hanging:?}");
    let failed = d.wait_event("offsite.push_failed", Duration::from_secs(120));
    assert!(!failed.to_string().contains(SECRET));
    // Logged after the failure is recorded for `status`.
    d.wait_event("offsite.retry_scheduled", Duration::from_secs(10));
    let st = d.connect().call(json!({"op": "status"}));
    assert_eq!(
        st["result"]["daemon"]["last_error"]["what"], "offsite",
        "{st}"
    );
    assert_eq!(st["result"]["offsite"]["not_pushed"], 1, "{st}");
    // keep_last = 1, but the snapshot not offsite yet stays.
    let p = d.connect().call(json!({"op": "prune"}));
    let kept: Vec<&Value> = p["result"]["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .collect();
    assert_eq!(kept.len(), 2, "{p}");
    assert!(
        kept[0]["reasons"].to_string().contains("not offsite yet"),
        "{p}"
    );
    // The server comes back where it was: the retry drains the queue.
    drop(hang);
    let _back = Remote::rclone_at(root.path(), port);
    d.wait_event("offsite.push_completed", Duration::from_secs(120));
    let st = d.connect().call(json!({"op": "status"}));
    assert_eq!(st["result"]["offsite"]["not_pushed"], 0, "{st}");
    assert!(st["result"]["daemon"]["last_error"].is_null(), "{st}");
    let out = cli_with(&ws, &creds, &["offsite", "list", "--json"]);
    let remote: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(remote.as_array().unwrap().len(), 2, "{remote}");
}

/// SIGTERM while the daemon pushes a large snapshot: it exits within its
/// shutdown bound, and every snapshot the remote lists restores.
#[test]
fn sigterm_during_an_offsite_push_stops_in_time_and_leaves_the_remote_whole() {
    use crate::helpers::remote::{KEY_ID, Remote, SECRET};
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    server.bucket("backups");
    let ws = Workspace::new();
    let key = ws.path().join("offsite.key");
    set_config(
        &ws,
        &format!(
            "[schedule]\nenabled = false\n{}",
            server.section("backups", &key)
        ),
    );
    make_big(&ws, 1_500_000);
    let creds = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let out = cli_with(&ws, &creds, &["offsite", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut d = Daemon::start(&ws, &creds);
    let r = d
        .connect()
        .call(json!({"op": "snapshot", "reason": "pre-delete"}));
    assert_eq!(r["ok"], true, "{r}");
    d.wait_event("offsite.push_started", Duration::from_secs(30));
    let t = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let code = d.wait_exit(ducksnap::daemon::SHUTDOWN_BOUND + Duration::from_secs(10));
    println!(
        "stopped {:?} after SIGTERM, mid-push, with {code:?}",
        t.elapsed()
    );
    assert_eq!(code, Some(0));
    let n = crate::offsite::every_remote_snapshot_restores(&ws, &server);
    println!("{n} snapshot(s) offsite after the stop, each restores");
    // The next push completes what the stop cut off.
    let done = crate::offsite::ok_json(&ws, &["offsite", "push", "--json"]);
    assert_eq!(
        crate::offsite::every_remote_snapshot_restores(&ws, &server),
        1,
        "{done}"
    );
}

/// `push = "manual"`: the daemon never pushes by itself, `offsite push`
/// does; a reload to a cron expression makes the daemon push at those
/// times (each second here) without a snapshot kicking it.
#[test]
fn offsite_push_manual_then_cron() {
    use crate::helpers::remote::{KEY_ID, Remote, SECRET};
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    server.bucket("backups");
    let ws = Workspace::new();
    let key = ws.path().join("offsite.key");
    let with_push = |push: &str| {
        format!(
            "[schedule]\nenabled = false\n{}push = \"{push}\"\n",
            server.section("backups", &key)
        )
    };
    set_config(&ws, &with_push("manual"));
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    let creds = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    assert!(cli_with(&ws, &creds, &["offsite", "init"]).status.success());
    let mut d = Daemon::start(&ws, &creds);
    let not_pushed = |d: &Daemon| {
        let st = d.connect().call(json!({"op": "status"}));
        st["result"]["offsite"]["not_pushed"].clone()
    };
    assert_eq!(d.connect().call(json!({"op": "snapshot"}))["ok"], true);
    // After-snapshot would start within milliseconds; manual never does.
    let started = d.wait_where(Duration::from_secs(3), |v| {
        v["event"] == "offsite.push_started"
    });
    assert!(started.is_none(), "{started:?}");
    assert_eq!(not_pushed(&d), 1);
    let out = cli_with(&ws, &creds, &["offsite", "push", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(not_pushed(&d), 0);

    // Cron each second: the daemon pushes a snapshot taken while it waits.
    set_config(&ws, &with_push("* * * * * *"));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_event("daemon.reloaded", Duration::from_secs(10));
    write_db(&ws.db(), "INSERT INTO t VALUES (-1)");
    assert_eq!(d.connect().call(json!({"op": "snapshot"}))["ok"], true);
    let pushed = d.wait_where(Duration::from_secs(30), |v| v["event"] == "offsite.pushed");
    assert!(pushed.is_some(), "no cron push within 30 s");
    d.wait_event("offsite.push_completed", Duration::from_secs(30));
    assert_eq!(not_pushed(&d), 0);
}
