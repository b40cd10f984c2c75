//! Offsite against a bucket edited behind ducksnap's back (`rclone serve
//! s3`, whose objects are files the test deletes, plants and corrupts): the
//! bucket's state is what counts, checked — a deleted record or pack never
//! lets local retention give a snapshot up, the next push sends it again,
//! monitoring says CRITICAL meanwhile, and one bad object never stops the
//! intact ones from being listed and restored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::remote::{self, Remote};
use crate::helpers::*;
use crate::offsite::{
    change, fresh_machine, offsite_ws, ok_json, restore_from_offsite, with_creds,
};

/// The objects under `dir` (`snapshots` or `packs`) on rclone's disk.
fn objects(root: &Path, dir: &str) -> BTreeSet<PathBuf> {
    remote::files(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.parent().is_some_and(|d| d.ends_with(dir)))
        .collect()
}

/// The object at `path` on rclone's disk deleted, or `body` written there,
/// through the S3 API (the server's view changes at once; an edit on its
/// disk shows only when its directory cache expires).
fn edit(server: &Remote, root: &Path, path: &Path, body: Option<&[u8]>) {
    let key = path.strip_prefix(root.join("backups")).unwrap();
    server.api("backups", key.to_str().unwrap(), body);
}

fn push(ws: &Workspace) -> Value {
    ok_json(ws, &["offsite", "push", "--json"])
}

fn check(ws: &Workspace) -> (i32, String) {
    let out = with_creds(ws, &["status", "--check"]);
    (out.status.code().unwrap(), stdout(&out).trim().to_string())
}

/// Restores `id` from the bucket on a fresh machine and counts its rows of
/// `t`.
fn rows_offsite(ws: &Workspace, server: &Remote, id: &str) -> i64 {
    let fresh = fresh_machine(ws, server);
    let to = fresh.path().join("r.duckdb");
    restore_from_offsite(&fresh, id, &to);
    query_i64(&open_ro(&to), "SELECT count(*) FROM t")
}

fn decision<'a>(prune: &'a Value, id: &str) -> &'a Value {
    prune["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {prune}"))
}

/// The second push's record deleted on the server, `keep_last = 1`: a
/// prune by hand keeps that snapshot ("not offsite yet"), `offsite verify`
/// and `status --check` say it was lost, the next push sends it again, and
/// it restores from the bucket.
#[test]
fn a_deleted_record_never_costs_the_local_copy() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    let key = ws.path().join("offsite.key");
    ws.write_config(
        &(server.section("backups", &key)
            + "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"),
    );
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    push(&ws);
    let before = objects(root.path(), "snapshots");
    let s2 = change(&ws, "INSERT INTO t SELECT range FROM range(500)");
    push(&ws);
    let second: Vec<PathBuf> = objects(root.path(), "snapshots")
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(second.len(), 1, "one record per push");
    edit(&server, root.path(), &second[0], None);
    let s3id = change(&ws, "INSERT INTO t SELECT range FROM range(7)");
    let pruned = ok_json(&ws, &["prune", "--json"]);
    let d2 = decision(&pruned, &s2);
    assert_eq!(d2["keep"], true, "{pruned}");
    assert!(
        d2["reasons"].to_string().contains("not offsite yet"),
        "{d2}"
    );
    assert_eq!(
        decision(&pruned, &s1)["keep"],
        false,
        "s1 is whole offsite: {pruned}"
    );
    assert!(ws.list_ids().contains(&s2));
    // Pushed from here, gone from the bucket: an alarm, not a silence.
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains(&s2) && line.contains("offsite"), "{line}");
    let out = with_creds(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(stdout(&out).contains(&s2), "{}", stdout(&out));
    // The next push sends it again; it restores from the bucket.
    let pushed = push(&ws);
    let sent: Vec<&str> = pushed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        sent.contains(&s2.as_str()) && sent.contains(&s3id.as_str()),
        "{pushed}"
    );
    assert_eq!(rows_offsite(&ws, &server, &s2), 1500);
    let (code, line) = check(&ws);
    assert!(code < 2, "{line}");
    let out = with_creds(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// A pack the first snapshot's record names deleted on the server:
/// `status --check` (which lists the bucket when it has the credentials)
/// and `offsite verify` say so at once; the next snapshot's push re-checks
/// every pack it would reuse and uploads the missing chunks again;
/// afterwards every snapshot restores and the check is no longer
/// CRITICAL.
#[test]
fn a_deleted_pack_is_sent_again() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(200000)",
    );
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    push(&ws);
    let packs = objects(root.path(), "packs");
    assert!(!packs.is_empty());
    let s2 = change(&ws, "UPDATE t SET s = 'x' WHERE i < 10");
    push(&ws);
    // Every pack of the first push is named by both records (s2 shares
    // almost every chunk with s1): delete one.
    let gone = packs.iter().next().unwrap().clone();
    edit(&server, root.path(), &gone, None);
    // status --check asks the bucket itself (it has the credentials here).
    let (code, line) = check(&ws);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.contains(&s1) && line.contains("no longer restorable offsite"),
        "{line}"
    );
    let out = with_creds(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    let s3id = change(&ws, "UPDATE t SET s = 'y' WHERE i < 10");
    let pushed = push(&ws);
    assert!(pushed["snapshots"].to_string().contains(&s3id), "{pushed}");
    for (id, rows) in [(&s1, 200000), (&s2, 200000), (&s3id, 200000)] {
        assert_eq!(rows_offsite(&ws, &server, id), rows, "{id}");
    }
    let out = with_creds(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (code, line) = check(&ws);
    assert!(code < 2, "{line}");
}

/// Garbage, a replayed record (another snapshot's record under a second
/// name) and a nested object under `snapshots/`: every intact snapshot
/// still lists and restores, `offsite verify` names each bad object, and
/// `offsite prune` deletes no pack while they are there.
#[test]
fn one_bad_object_never_blocks_the_others() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    let s2 = change(&ws, "INSERT INTO t SELECT range FROM range(10)");
    push(&ws);
    let records: Vec<PathBuf> = objects(root.path(), "snapshots").into_iter().collect();
    assert_eq!(records.len(), 2);
    let dir = records[0].parent().unwrap().to_path_buf();
    edit(
        &server,
        root.path(),
        &dir.join("garbage"),
        Some(b"not a record at all"),
    );
    let first = std::fs::read(&records[0]).unwrap();
    edit(&server, root.path(), &dir.join("replayed"), Some(&first));
    let second = std::fs::read(&records[1]).unwrap();
    let nested = dir.join("sub").join(records[1].file_name().unwrap());
    edit(&server, root.path(), &nested, Some(&second));
    let listed = ok_json(&ws, &["offsite", "list", "--json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![s2.as_str(), s1.as_str()], "{listed}");
    assert_eq!(rows_offsite(&ws, &server, &s1), 1000);
    assert_eq!(rows_offsite(&ws, &server, &s2), 1010);
    assert_eq!(rows_offsite(&ws, &server, "latest"), 1010);
    let out = with_creds(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    for bad in ["garbage", "replayed", "sub/"] {
        assert!(stdout(&out).contains(bad), "{bad}: {}", stdout(&out));
    }
    let packs = objects(root.path(), "packs");
    ws.write_config(
        &(server.section("backups", &ws.path().join("offsite.key"))
            + "prune_grace = \"1s\"\n[offsite.retention]\nkeep_last = 1\n"),
    );
    let first = ok_json(&ws, &["offsite", "prune", "--json"]);
    assert_eq!(first["records_deleted"], 1, "{first}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = ok_json(&ws, &["offsite", "prune", "--json"]);
    assert_eq!(second["packs_deleted"], 0, "{second}");
    assert!(
        second["sweep_refused"].to_string().contains("garbage"),
        "{second}"
    );
    assert_eq!(objects(root.path(), "packs"), packs, "no pack deleted");
    assert_eq!(rows_offsite(&ws, &server, &s2), 1010);
}

/// The USER_GUIDE's disaster recovery, verbatim, in a fresh directory with
/// only the config (naming `data/app.duckdb`) and the key file.
#[test]
fn the_guide_s_disaster_recovery_runs_as_written() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(321)",
    );
    ws.snapshot();
    push(&ws);
    let fresh = fresh_machine(&ws, &server);
    for line in [
        "ducksnap --config ducksnap.toml offsite list",
        "ducksnap --config ducksnap.toml restore latest --from offsite --to data/app.duckdb --check --yes",
    ] {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let out = fresh
            .bare_cmd()
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", remote::KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", remote::SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{line}: {}", stderr(&out));
    }
    assert_eq!(
        query_i64(&open_ro(&fresh.db()), "SELECT count(*) FROM t"),
        321
    );
}

/// The daemon's own pushes failing — started without the credentials the
/// shell had — reach monitoring like any job's failures: `status --check`
/// WARNING, CRITICAL from the third in a row, the metrics count them and
/// say the job is failing, and `STATUS=` names the push.
#[test]
fn the_daemon_s_failing_pushes_are_seen() {
    use crate::helpers::daemon::{Daemon, set_config};
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    std::fs::create_dir_all(ws.path().join("metrics")).unwrap();
    set_config(
        &ws,
        &(server.section("backups", &ws.path().join("offsite.key"))
            + "[schedule]\nenabled = false\n[watch]\nenabled = false\n[monitor]\nmetrics_file = \"metrics/ducksnap.prom\"\n"),
    );
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    ws.snapshot();
    let d = Daemon::start(&ws, &[]);
    // STATUS= goes out after each push's outcome is recorded.
    for n in 1..=3 {
        let status = d.wait_status(|s| s.contains("last error: offsite"));
        assert!(status.contains("AWS_ACCESS_KEY_ID"), "{status}");
        let (code, line) = check(&ws);
        let want = if n < 3 { 1 } else { 2 };
        assert_eq!(code, want, "after {n} failed push(es): {line}");
        assert!(
            line.contains("last offsite failed") && line.contains("AWS_ACCESS_KEY_ID"),
            "{line}"
        );
    }
    let text = std::fs::read_to_string(ws.path().join("metrics/ducksnap.prom")).unwrap();
    assert!(
        text.contains("ducksnap_job_failing{job=\"offsite\"} 1"),
        "{text}"
    );
    let failed: u64 = text
        .lines()
        .find(|l| l.starts_with("ducksnap_runs_total{job=\"offsite\",result=\"failed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(failed >= 3, "{text}");
}
