//! Restore, verify, prune/GC and pin through the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Per-table content checksums of a database, opened read-only.
fn digest(db: &Path) -> Vec<(String, i64, String)> {
    let c = open_ro(db);
    let mut stmt = c
        .prepare("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1")
        .unwrap();
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|t| {
            let q = format!("SELECT count(*), coalesce(md5(string_agg(x::VARCHAR, '|' ORDER BY x::VARCHAR)), '') FROM \"{t}\" x");
            let (n, h): (i64, String) = c.query_row(&q, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            (t, n, h)
        })
        .collect()
}

const SCHEMA: &str = "
CREATE TABLE customers AS SELECT range AS id, 'c' || range AS name FROM range(2000);
CREATE TABLE orders AS SELECT range AS id, range % 2000 AS customer_id, random() AS amount FROM range(50000);
";

fn cascade_delete(db: &Path) {
    let c = duckdb::Connection::open(db).unwrap();
    c.execute_batch(
        "DELETE FROM orders WHERE customer_id < 500; DELETE FROM customers WHERE id < 500;
         UPDATE orders SET amount = -1 WHERE id % 10 = 0; CHECKPOINT;",
    )
    .unwrap();
}

#[test]
fn round_trip_with_pre_restore_snapshot() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let original = digest(&ws.db());
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    cascade_delete(&ws.db());
    let changed = digest(&ws.db());
    assert_ne!(original, changed);

    let r = ws.json(&["restore", &s1, "--yes", "--json"]);
    assert_eq!(
        digest(&ws.db()),
        original,
        "restored content differs from the snapshot"
    );
    assert_eq!(r["verified"], true);
    assert_eq!(r["checked"], true, "in place, DuckDB checks the final path");
    let pre = r["pre_restore"]
        .as_str()
        .expect("a pre-restore snapshot")
        .to_string();
    let list = ws.json(&["list", "--json"]);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == pre.as_str())
        .expect("pre-restore listed");
    assert_eq!(entry["pinned"], true);
    assert_eq!(entry["reason"], "pre-restore");
    // No leftovers beside the database.
    let names: Vec<String> = std::fs::read_dir(ws.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("ducksnap")),
        "leftovers: {names:?}"
    );

    // The pre-restore snapshot brings the changed state back.
    ws.json(&["restore", &pre, "--yes", "--json"]);
    assert_eq!(digest(&ws.db()), changed);

    // --to writes a standalone copy and refuses to overwrite without --force.
    let to = ws.path().join("old.duckdb");
    ws.json(&[
        "restore",
        &s1,
        "--to",
        to.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert_eq!(digest(&to), original);
    assert_eq!(
        digest(&ws.db()),
        changed,
        "--to must not touch the database"
    );
    let out = ws.run(&["restore", &s1, "--to", to.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    ws.json(&[
        "restore",
        &s1,
        "--to",
        to.to_str().unwrap(),
        "--force",
        "--yes",
        "--json",
    ]);

    // Without --yes and without a terminal: refused, nothing touched.
    let before = std::fs::read(ws.db()).unwrap();
    let out = ws.run(&["restore", &s1]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.db()).unwrap(), before);
}

#[test]
fn restore_to_a_path_checks_hashes_and_with_check_duckdb() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    let plain = ws.path().join("plain.duckdb");
    let r = ws.json(&[
        "restore",
        &s1,
        "--to",
        plain.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert_eq!(
        r["checked"], false,
        "--to re-opens with DuckDB only with --check"
    );
    assert_eq!(r["verified"], true, "the hash matches a verified snapshot");
    let to = ws.path().join("copy.duckdb");
    let r = ws.json(&[
        "restore",
        &s1,
        "--to",
        to.to_str().unwrap(),
        "--check",
        "--yes",
        "--json",
    ]);
    assert_eq!(r["checked"], true);
    assert_eq!(r["verified"], true);
    assert_eq!(
        query_i64(&open_ro(&to), "SELECT count(*) FROM orders"),
        50000
    );
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&plain).unwrap());
}

#[test]
fn an_old_wal_is_never_applied_to_the_restored_file() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let original = digest(&ws.db());
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    // Changes that live only in the WAL.
    run_python(
        "import duckdb,sys
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute('pragma disable_checkpoint_on_shutdown')
c.execute('DELETE FROM orders WHERE id < 40000')
c.execute('INSERT INTO customers VALUES (99999, \\'wal only\\')')
c.close()",
        &[ws.db().to_str().unwrap()],
    );
    let wal = ws.path().join("data/app.duckdb.wal");
    assert!(wal.exists(), "setup: expected a WAL");
    let with_wal = digest(&ws.db());
    assert_ne!(with_wal, original);
    let r = ws.json(&["restore", &s1, "--yes", "--json"]);
    assert!(
        !wal.exists(),
        "the old WAL must be gone from beside the restored file"
    );
    assert_eq!(digest(&ws.db()), original);
    // The safety snapshot kept the WAL's changes.
    let pre = r["pre_restore"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(digest(&ws.reassemble(pre, dir.path())), with_wal);
}

#[test]
fn restore_refuses_while_the_app_holds_the_database() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    let stop = ws.path().join("stop");
    let mut app = Command::new(python())
        .arg("-c")
        .arg(
            "import duckdb,sys,os,time
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute('pragma disable_checkpoint_on_shutdown')
c.execute('DELETE FROM orders WHERE id < 10')
print('ready', flush=True)
while not os.path.exists(sys.argv[2]): time.sleep(0.02)
",
        )
        .arg(ws.db())
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(app.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let wal = ws.path().join("data/app.duckdb.wal");
    let db_before = std::fs::read(ws.db()).unwrap();
    let wal_before = std::fs::read(&wal).ok();
    let out = ws.run(&["restore", &s1, "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains(&app.id().to_string()),
        "message should name PID {}: {err}",
        app.id()
    );
    assert_eq!(
        std::fs::read(ws.db()).unwrap(),
        db_before,
        "database touched"
    );
    assert_eq!(std::fs::read(&wal).ok(), wal_before, "WAL touched");
    std::fs::write(&stop, b"").unwrap();
    assert!(app.wait().unwrap().success());
}

#[test]
fn bad_snapshots_fail_before_touching_the_database() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    cascade_delete(&ws.db());
    let m = ws.manifest(&s1);
    let chunk = m.files[0].chunks[1].hash.clone();
    let cpath = ws.store().chunk_path(&chunk);
    let good = std::fs::read(&cpath).unwrap();

    // Corrupt chunk.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&cpath, &bad).unwrap();
    let before = std::fs::read(ws.db()).unwrap();
    let out = ws.run(&["restore", &s1, "--yes"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&chunk), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.db()).unwrap(), before, "database touched");
    let out = ws.run(&["verify", &s1]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&s1) && stdout(&out).contains(&format!("corrupt chunk {chunk}")),
        "{}",
        stdout(&out)
    );

    // Missing chunk.
    std::fs::remove_file(&cpath).unwrap();
    let out = ws.run(&["restore", &s1, "--yes"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.db()).unwrap(), before);
    let v = ws.run(&["verify", "--all", "--json"]);
    assert_eq!(v.status.code(), Some(6));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let bad_one = report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == s1.as_str())
        .unwrap();
    assert_eq!(bad_one["missing_chunks"][0], chunk.as_str());
    std::fs::write(&cpath, &good).unwrap();
    ws.json(&["verify", "--all", "--deep", "--json"]);

    // Truncated manifest.
    let mpath = ws.store_dir().join(format!("snapshots/{s1}.json"));
    let text = std::fs::read(&mpath).unwrap();
    std::fs::write(&mpath, &text[..text.len() / 3]).unwrap();
    let out = ws.run(&["restore", &s1, "--yes"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("unreadable"), "{}", stderr(&out));
    assert_eq!(std::fs::read(ws.db()).unwrap(), before);
    let out = ws.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(stdout(&out).contains(&s1), "{}", stdout(&out));
}

#[test]
fn kill_9_during_restore_never_leaves_a_mix() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let a_state = digest(&ws.db());
    let a_bytes = std::fs::read(ws.db()).unwrap();
    let target = ws.snapshot()["id"].as_str().unwrap().to_string();
    // Snapshot state B, then go back to A for each round.
    cascade_delete(&ws.db());
    let b_state = digest(&ws.db());
    let b_snap = ws.snapshot()["id"].as_str().unwrap().to_string();
    let _ = target;
    let reset_to_a = || {
        std::fs::write(ws.db(), &a_bytes).unwrap();
        let _ = std::fs::remove_file(ws.path().join("data/app.duckdb.wal"));
    };
    reset_to_a();
    let t0 = Instant::now();
    ws.json(&["restore", &b_snap, "--yes", "--json"]);
    let full = t0.elapsed();
    let mut rng = Rng(0xdead_beef_0042);
    let (mut killed, mut rounds, mut saw_b) = (0, 0, 0);
    while killed < 20 && rounds < 80 {
        rounds += 1;
        reset_to_a();
        let mut child = ws
            .cmd(&["restore", &b_snap, "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(
            rng.below(full.as_micros() as u64 + 1),
        ));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Before any recovery: the path holds A or B, openable.
        let now = digest(&ws.db());
        assert!(
            now == a_state || now == b_state,
            "round {rounds}: a mix of old and new"
        );
        if now == b_state {
            saw_b += 1;
        }
        // The next ducksnap run finishes or undoes the interrupted restore.
        let list = ws.json(&["list", "--json"]);
        let after = digest(&ws.db());
        assert!(
            after == a_state || after == b_state,
            "round {rounds}: mix after recovery"
        );
        let leftovers: Vec<String> = std::fs::read_dir(ws.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("ducksnap"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {rounds}: leftovers {leftovers:?}"
        );
        if after == b_state {
            // The safety snapshot of state A: the snapshot that already
            // holds A, pinned (a state already stored is not stored again).
            let safety = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["pinned"] == true)
                .count();
            assert!(safety > 0, "restored without a safety snapshot listed");
        }
    }
    println!(
        "restore kill -9: {killed} kills in {rounds} rounds, {saw_b} left the restored state (full restore {full:?})"
    );
    assert!(killed >= 20, "only {killed} kills landed mid-restore");
    assert!(ws.run(&["verify", "--all"]).status.success());
}

#[test]
fn prune_applies_retention_and_collects_garbage() {
    let ws = Workspace::new();
    ws.write_config("[retention]\nkeep_last = 2\n");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i, random() r FROM range(200000)",
    );
    let mut ids = Vec::new();
    for round in 0..5 {
        let c = duckdb::Connection::open(ws.db()).unwrap();
        c.execute_batch(&format!(
            "UPDATE t SET r = random() WHERE i % 5 = {round}; CHECKPOINT;"
        ))
        .unwrap();
        drop(c);
        ids.push(ws.snapshot()["id"].as_str().unwrap().to_string());
    }
    ws.json(&["pin", &ids[0], "--json"]);
    let dry = ws.json(&["prune", "--dry-run", "--json"]);
    let decisions = dry["plan"]["decisions"].as_array().unwrap();
    let removed: Vec<&str> = decisions
        .iter()
        .filter(|d| d["keep"] == false)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [ids[2].as_str(), ids[1].as_str()],
        "newest first; the pinned oldest stays"
    );
    assert_eq!(
        ws.json(&["list", "--json"]).as_array().unwrap().len(),
        5,
        "dry run removed something"
    );

    let before = ws.store().stored_bytes().unwrap();
    let r = ws.json(&["prune", "--json"]);
    assert_eq!(r["removed"], 2);
    let freed = r["bytes_freed"].as_u64().unwrap();
    assert!(freed > 0);
    let after = ws.store().stored_bytes().unwrap();
    println!("gc: store {before} -> {after} bytes, reported freed {freed}");
    assert_eq!(
        before - after,
        freed,
        "store size did not drop by the reported bytes"
    );
    let out = ws.run(&["verify", "--all", "--deep"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let left: Vec<String> = ws
        .json(&["list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [ids[4].clone(), ids[3].clone(), ids[0].clone()]);
    // Planning again removes nothing.
    assert_eq!(ws.json(&["prune", "--json"])["removed"], 0);
    ws.json(&["unpin", &ids[0], "--json"]);
    assert_eq!(ws.json(&["prune", "--json"])["removed"], 1);
}

#[test]
fn no_space_fails_cleanly() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    let store_before = tree_digest(&ws.store_dir());
    let db_before = std::fs::read(ws.db()).unwrap();
    ws.write_config("[store]\n");
    std::fs::write(
        ws.config_path(),
        "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups\"\nmin_free_space = \"1000TB\"\n",
    )
    .unwrap();
    for args in [&["snapshot"][..], &["restore", &s1, "--yes"][..]] {
        let out = ws.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not enough free space"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            tree_digest(&ws.store_dir()),
            store_before,
            "{args:?} changed the store"
        );
        assert_eq!(std::fs::read(ws.db()).unwrap(), db_before);
    }
    assert!(ws.run(&["verify", "--all"]).status.success());
}

#[test]
fn cloud_mode_answers_disabled() {
    let ws = Workspace::new();
    make_db(&ws.db(), SCHEMA);
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    std::fs::write(ws.config_path(), "[database]\npath = \"data/app.duckdb\"\nmode = \"cloud\"\n[store]\ndir = \"data/backups\"\n").unwrap();
    let out = ws.run(&["restore", &s1, "--yes"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("disabled"), "{}", stderr(&out));
    assert_eq!(ws.json(&["prune", "--json"])["removed"], 0);
    let out = ws.run(&["prune"]);
    assert!(stdout(&out).contains("0 snapshots removed"));
    let v = ws.json(&["verify", "--json"]);
    assert_eq!(v["disabled"], true);
    let out = ws.run(&["verify"]);
    assert!(
        out.status.success() && stdout(&out).contains("disabled"),
        "{}",
        stdout(&out)
    );
}

/// Unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_during_snapshot_loses_nothing() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i, random() r FROM range(300000)",
    );
    let fs_dir = ws.path().join("fs");
    std::fs::create_dir_all(&fs_dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&fs_dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!(
            "cannot mount a tmpfs here (not root?): the free-space reserve test (no_space_fails_cleanly) covers this"
        );
        return;
    }
    let _guard = Tmpfs(fs_dir.clone());
    std::fs::write(
        ws.config_path(),
        "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"fs/backups\"\nmin_free_space = \"0B\"\n",
    )
    .unwrap();
    let store = fs_dir.join("backups");
    let first = ws.snapshot()["id"].as_str().unwrap().to_string();
    // All-new content, then fill the file system so that the database's
    // size fits but an online capture's staged copy plus its new chunks do
    // not. The connection stays open, so
    // the snapshot is online (a writer holds the database).
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("UPDATE t SET r = random(); CHECKPOINT;")
        .unwrap();
    let db_size = std::fs::metadata(ws.db()).unwrap().len();
    let st = nix::sys::statvfs::statvfs(&fs_dir).unwrap();
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    let filler = avail - db_size - db_size / 3;
    std::fs::write(fs_dir.join("filler"), vec![0u8; filler as usize]).unwrap();
    let out = ws.run(&["snapshot"]);
    println!(
        "disk full: database {db_size} bytes, {} bytes free: exit {:?}: {}",
        db_size + db_size / 3,
        out.status.code(),
        stderr(&out).trim()
    );
    // The free-space check counts the staged copy an online capture writes
    // besides its chunks, and says so, before anything is written.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough free space") && stderr(&out).contains("staged copy"),
        "expected the free-space check to count the staged copy: {}",
        stderr(&out)
    );
    drop(c);
    std::fs::remove_file(fs_dir.join("filler")).unwrap();
    let ids = ws.list_ids();
    assert_eq!(
        ids,
        [first.as_str()],
        "only the complete snapshot is listed"
    );
    let out = ws.run(&["verify", "--all", "--deep"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let staging: Vec<_> = std::fs::read_dir(store.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "staging leftovers: {staging:?}");
    // With room again, the next snapshot works.
    ws.snapshot();
}

#[test]
fn pre_restore_of_a_stored_state_is_not_stored_twice_and_its_pin_expires() {
    let ws = Workspace::new();
    ws.write_config("[retention]\nkeep_last = 0\npre_restore_pin = \"2s\"\n");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    let s1 = ws.snapshot()["id"].as_str().unwrap().to_string();
    make_db(&ws.db(), "INSERT INTO t SELECT range FROM range(500)");
    let first = ws.json(&["restore", &s1, "--yes", "--json"]);
    let p1 = first["pre_restore"].as_str().unwrap().to_string();
    assert_ne!(p1, s1);
    assert!(
        ws.manifest(&p1).pinned_until.is_some(),
        "a pre-restore pin expires"
    );
    // The database is now exactly s1: restoring s1 again stores nothing new.
    let second = ws.json(&["restore", &s1, "--yes", "--json"]);
    assert_eq!(second["pre_restore"], s1.as_str(), "{second}");
    assert_eq!(ws.list_ids().len(), 2);
    let m = ws.manifest(&s1);
    assert!(
        m.pinned && m.pinned_until.is_some(),
        "the reused snapshot is pinned for as long"
    );
    // After the pins expire, retention treats both as unpinned and releases
    // the pin of what it keeps.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let plan = ws.json(&["prune", "--json"]);
    assert_eq!(plan["removed"], 1, "{plan}");
    let left = ws.list_ids();
    assert_eq!(left, [p1.as_str()], "the newest good snapshot stays");
    let m = ws.manifest(&p1);
    assert!(
        !m.pinned && m.pinned_until.is_none(),
        "expired pin released"
    );
    // A pin by hand never expires.
    let out = ws.run(&["pin", &p1]);
    assert!(out.status.success());
    assert!(ws.manifest(&p1).pinned_until.is_none());
}

/// `restore` says what it restores — reason, label, age — and warns when
/// `latest` is the safety copy an earlier restore made (the state that
/// restore undid).
#[test]
fn restore_names_what_it_restores_and_warns_on_a_safety_copy() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS i");
    let first = ws.json(&["snapshot", "--label", "before the import", "--json"]);
    let first = first["snapshot"]["id"].as_str().unwrap().to_string();
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("INSERT INTO t VALUES (2)").unwrap();
    drop(c);
    let out = ws.run(&["restore", &first, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&first)
            && e.contains("reason manual")
            && e.contains("before the import")
            && (e.contains("ago") || e.contains("just now")),
        "{e}"
    );
    assert!(!e.contains("warning"), "{e}");
    let out = ws.run(&["restore", "latest", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("reason pre-restore"), "{e}");
    assert!(
        e.contains("warning: this is a pre-restore safety copy"),
        "{e}"
    );
}
