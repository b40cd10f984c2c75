//! Offsite copies against real S3-compatible servers on 127.0.0.1 (moto,
//! rclone): disaster recovery from only the config and the key, encryption
//! that hides the content, refusals of bad input, incremental pushes.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::helpers::remote::{self, KEY_ID, Remote, SECRET};
use crate::helpers::*;

pub fn with_creds(ws: &Workspace, args: &[&str]) -> Output {
    ws.cmd(args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap()
}

pub fn ok_json(ws: &Workspace, args: &[&str]) -> Value {
    let out = with_creds(ws, args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
}

/// A workspace whose config has `[offsite]` on `server`, initialised.
pub fn offsite_ws(server: &Remote) -> Workspace {
    let ws = Workspace::new();
    server.bucket("backups");
    let key = ws.path().join("offsite.key");
    ws.write_config(&server.section("backups", &key));
    let init = ok_json(&ws, &["offsite", "init", "--json"]);
    assert_eq!(init["key_created"], true, "{init}");
    assert_eq!(init["conditional_put"], server.kind != "rclone", "{init}");
    ws
}

pub fn change(ws: &Workspace, sql: &str) -> String {
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch(sql).unwrap();
    drop(c);
    ws.snapshot()["id"].as_str().unwrap().to_string()
}

fn disaster_recovery(server: &Remote) {
    let ws = offsite_ws(server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, 'row ' || range AS s FROM range(50000)",
    );
    let ids = [
        ws.snapshot()["id"].as_str().unwrap().to_string(),
        change(&ws, "DELETE FROM t WHERE i < 1000"),
        change(
            &ws,
            "INSERT INTO t SELECT range, 'new' FROM range(100000, 120000)",
        ),
    ];
    let pushed = ok_json(&ws, &["offsite", "push", "--json"]);
    assert_eq!(pushed["snapshots"].as_array().unwrap().len(), 3, "{pushed}");
    let again = ok_json(&ws, &["offsite", "push", "--json"]);
    assert_eq!(
        (again["objects"].as_u64(), again["already"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    // A new machine: only the config and the key file.
    let fresh = Workspace::new();
    std::fs::copy(
        ws.path().join("offsite.key"),
        fresh.path().join("offsite.key"),
    )
    .unwrap();
    fresh.write_config(&server.section("backups", &fresh.path().join("offsite.key")));
    let listed = ok_json(&fresh, &["offsite", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    for id in &ids {
        let to = fresh.path().join(format!("{id}.duckdb"));
        let r = ok_json(
            &fresh,
            &[
                "restore",
                id,
                "--from",
                "offsite",
                "--to",
                to.to_str().unwrap(),
                "--check",
                "--yes",
                "--json",
            ],
        );
        assert_eq!(r["id"], id.as_str());
        assert_eq!(r["checked"], true, "{r}");
        let original = ws.reassemble(id, &ws.path().join("orig").join(id));
        assert_eq!(
            std::fs::read(&to).unwrap(),
            std::fs::read(&original).unwrap(),
            "{id} not byte-identical"
        );
        let m = ws.manifest(id);
        let rows = query_i64(&open_ro(&to), "SELECT count(*) FROM t");
        assert_eq!(rows as u64, m.check.tables[0].rows, "{id}");
    }
    // What came from offsite is offsite: `list` says so (it said "not yet").
    let listed = ok_json(&fresh, &["list", "--json"]);
    let offsite: Vec<(&str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["offsite"] == true))
        .collect();
    assert_eq!(offsite.len(), 3, "{listed}");
    assert!(offsite.iter().all(|(_, yes)| *yes), "{offsite:?}");
    println!(
        "{}: 3 snapshots recovered byte for byte on a fresh machine",
        server.kind
    );
}

#[test]
fn disaster_recovery_from_moto() {
    disaster_recovery(&Remote::moto());
}

#[test]
fn disaster_recovery_from_rclone() {
    let root = tempfile::tempdir().unwrap();
    disaster_recovery(&Remote::rclone(root.path()));
}

#[test]
fn disaster_recovery_from_a_directory() {
    let root = tempfile::tempdir().unwrap();
    disaster_recovery(&Remote::directory(root.path()));
}

/// Pushes a snapshot of a table full of a secret to `server` (its files
/// under `root`): no object holds the secret, names the snapshot or names
/// a chunk. Returns the workspace, the snapshot and the objects.
fn pushed_secret(
    server: &Remote,
    root: &Path,
) -> (Workspace, String, Vec<(std::path::PathBuf, Vec<u8>)>) {
    let ws = offsite_ws(server);
    let secret = "Zebra-Quokka-7431-customer-secret";
    make_db(
        &ws.db(),
        &format!("CREATE TABLE t AS SELECT '{secret}' || range AS s FROM range(20000)"),
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let objects = remote::files(root);
    assert!(objects.len() >= 3, "{} objects", objects.len());
    let chunk_hashes: Vec<String> = ws
        .manifest(&id)
        .chunk_hashes()
        .map(str::to_string)
        .collect();
    for (path, bytes) in &objects {
        let name = path.to_string_lossy();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{name} holds the secret"
        );
        assert!(!name.contains(id.as_str()), "{name} names the snapshot");
        assert!(
            chunk_hashes.iter().all(|h| !name.contains(h.as_str())),
            "{name} names a chunk"
        );
    }
    (ws, id, objects)
}

/// A wrong key restores nothing and writes nothing; init without the key
/// on a remote set up already makes no new key; one flipped byte in a pack
/// fails the restore naming the pack, leaving no file and no snapshot.
fn nothing_usable_without_the_key_or_with_damage(
    ws: &Workspace,
    server: &Remote,
    id: &str,
    objects: &[(std::path::PathBuf, Vec<u8>)],
) {
    let id = id.to_string();
    // A wrong key: a clear error, nothing written anywhere.
    let fresh = Workspace::new();
    // A new machine whose key file holds another key.
    fresh.write_config(&server.section("backups", &fresh.path().join("offsite.key")));
    let other_key = format!("ducksnap-offsite-key-v1 {}\n", "ab".repeat(32));
    std::fs::write(fresh.path().join("offsite.key"), other_key).unwrap();
    std::fs::set_permissions(
        fresh.path().join("offsite.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let other = Workspace::new();
    // init on a remote that is set up already, without its key: refused,
    // and no new key is made.
    other.write_config(&server.section("backups", &other.path().join("offsite.key")));
    let out = with_creds(&other, &["offsite", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("set up already"), "{}", stderr(&out));
    assert!(!other.path().join("offsite.key").exists());
    let to = fresh.path().join("x.duckdb");
    let out = with_creds(
        &fresh,
        &[
            "restore",
            &id,
            "--from",
            "offsite",
            "--to",
            to.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not the key"), "{}", stderr(&out));
    assert!(!to.exists() && !fresh.store_dir().exists());
    // One flipped byte in one pack: restore refuses, naming the object.
    let (pack, mut bytes) = objects
        .iter()
        .find(|(p, _)| p.to_string_lossy().contains("/packs/"))
        .cloned()
        .unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();
    std::fs::copy(
        ws.path().join("offsite.key"),
        fresh.path().join("offsite.key"),
    )
    .unwrap();
    let out = with_creds(
        &fresh,
        &[
            "restore",
            &id,
            "--from",
            "offsite",
            "--to",
            to.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(stderr(&out).contains(&pack_name), "{}", stderr(&out));
    assert!(!to.exists());
    assert!(
        std::fs::read_dir(fresh.store_dir().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn the_server_sees_neither_content_nor_a_usable_object() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let (ws, id, objects) = pushed_secret(&server, root.path());
    nothing_usable_without_the_key_or_with_damage(&ws, &server, &id, &objects);
}

/// The same for a directory: a stolen disk or a NAS's other users see
/// neither content nor names.
#[test]
fn a_directory_holds_neither_content_nor_a_usable_object() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::directory(root.path());
    let (ws, id, objects) = pushed_secret(&server, root.path());
    nothing_usable_without_the_key_or_with_damage(&ws, &server, &id, &objects);
}

#[test]
fn bad_offsite_settings_are_refused_naming_the_key() {
    let server = Remote::moto();
    server.bucket("backups");
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t (i INT)");
    ws.snapshot();
    let key = ws.path().join("offsite.key");
    let expect = |section: &str, code: i32, needle: &str| {
        ws.write_config(section);
        let out = with_creds(&ws, &["offsite", "init"]);
        assert_eq!(out.status.code(), Some(code), "{section}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{section}: wanted {needle:?} in {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains(SECRET),
            "the secret leaked: {}",
            stderr(&out)
        );
    };
    let k = key.display();
    let ep = server.endpoint();
    let cases = [
        (
            format!("url = \"http://backups\"\nendpoint = \"{ep}\"\nkey_file = \"{k}\"\n"),
            2,
            "offsite.url",
        ),
        (
            format!("url = \"s3://Bad_Bucket\"\nendpoint = \"{ep}\"\nkey_file = \"{k}\"\n"),
            2,
            "offsite.url",
        ),
        (
            format!(
                "url = \"s3://backups\"\nendpoint = \"http://192.0.2.1:9000\"\nkey_file = \"{k}\"\n"
            ),
            2,
            "offsite.allow_http",
        ),
        (
            format!("url = \"s3://backups\"\nendpoint = \"{ep}\"\n"),
            2,
            "offsite.key_file",
        ),
        (
            format!(
                "url = \"s3://no-such-bucket\"\nendpoint = \"{ep}\"\nkey_file = \"{k}\"\ntimeout = \"5s\"\n"
            ),
            1,
            "no-such-bucket",
        ),
    ];
    for (body, code, needle) in &cases {
        expect(&format!("[offsite]\n{body}"), *code, needle);
    }
    let creds = ws.path().join("creds");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    expect(
        &format!(
            "[offsite]\nurl = \"s3://backups\"\nendpoint = \"{ep}\"\nkey_file = \"{k}\"\ncredentials_file = \"{}\"\n",
            creds.display()
        ),
        2,
        "offsite.credentials_file",
    );
    // Without credentials at all.
    ws.write_config(&server.section("backups", &key));
    let out = ws.run(&["offsite", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    // Nothing was pushed by any of them.
    assert!(!Path::new(&key).exists() || ws.store_dir().join("offsite").read_dir().is_err());
}

/// A workspace with one snapshot, for a directory remote at
/// `<disk>/ducksnap` (not created); its `[offsite]` section.
fn directory_ws(disk: &Path) -> (Workspace, String) {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    ws.snapshot();
    let section = format!(
        "[offsite]\nurl = \"file://{}\"\nkey_file = \"{}\"\n",
        disk.join("ducksnap").display(),
        ws.path().join("offsite.key").display()
    );
    (ws, section)
}

/// A directory remote's config: the S3 settings, a relative path and a
/// directory in or around the store are refused, naming the key.
#[test]
fn a_directory_remote_s_config_is_checked() {
    let disk = tempfile::tempdir().unwrap();
    let (ws, _) = directory_ws(disk.path());
    let d = disk.path().join("ducksnap");
    let d = d.display();
    let store = ws.store_dir();
    let cases = [
        (
            format!("url = \"file://{d}\"\nendpoint = \"http://127.0.0.1:9\"\n"),
            "offsite.endpoint",
        ),
        (
            format!("url = \"file://{d}\"\nregion = \"eu\"\n"),
            "offsite.region",
        ),
        (
            format!("url = \"file://{d}\"\ncredentials_file = \"c\"\n"),
            "offsite.credentials_file",
        ),
        ("url = \"file://relative/dir\"\n".to_string(), "absolute"),
        (
            format!("url = \"file://{}/copy\"\n", store.display()),
            "must not contain one another",
        ),
        (
            format!("url = \"file://{}\"\n", ws.path().display()),
            "must not contain one another",
        ),
    ];
    let key = ws.path().join("offsite.key");
    for (body, needle) in &cases {
        ws.write_config(&format!(
            "[offsite]\n{body}key_file = \"{}\"\n",
            key.display()
        ));
        let out = with_creds(&ws, &["offsite", "init"]);
        assert_eq!(out.status.code(), Some(2), "{body}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{body}: {}", stderr(&out));
    }
    assert!(!key.exists(), "a key was written for a refused config");
}

/// The disk is not mounted (its directory is not there): init and push
/// fail, creating nothing and writing no key; a file in its place is
/// refused; mounted, it is set up — with a warning, since this test's
/// directory is on the store's disk.
#[test]
fn an_unmounted_disk_creates_nothing() {
    let disk = tempfile::tempdir().unwrap();
    let (ws, section) = directory_ws(disk.path());
    let dir = disk.path().join("ducksnap");
    let key = ws.path().join("offsite.key");
    ws.write_config(&section);
    let out = with_creds(&ws, &["offsite", "init"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("mount the disk"), "{}", stderr(&out));
    assert!(!dir.exists() && !key.exists(), "something was created");
    let out = with_creds(&ws, &["offsite", "push"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(!dir.exists(), "push created the directory");
    std::fs::write(&dir, b"not a directory").unwrap();
    let out = with_creds(&ws, &["offsite", "init"]);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let out = with_creds(&ws, &["offsite", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("same disk as the store"),
        "{}",
        stderr(&out)
    );
    ok_json(&ws, &["offsite", "push", "--json"]);
}

/// Someone with write access to the share plants symlinks: a "record"
/// pointing at the key file, a "pack" pointing at a file of the user's.
/// Neither is read (the record is reported, the good snapshot still
/// lists); while the bad record is there no pack is deleted; once it is
/// gone, the unnamed "pack" is — the link, never what it points to.
#[test]
fn planted_symlinks_in_a_directory_remote_are_not_followed() {
    let disk = tempfile::tempdir().unwrap();
    let (ws, section) = directory_ws(disk.path());
    let dir = disk.path().join("ducksnap");
    let key = ws.path().join("offsite.key");
    std::fs::create_dir(&dir).unwrap();
    ws.write_config(&section);
    ok_json(&ws, &["offsite", "init", "--json"]);
    ok_json(&ws, &["offsite", "push", "--json"]);
    let key_bytes = std::fs::read(&key).unwrap();
    let victim = disk.path().join("victim.txt");
    std::fs::write(&victim, b"the user's file").unwrap();
    std::os::unix::fs::symlink(&key, dir.join("snapshots/planted")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("packs/planted")).unwrap();
    let out = with_creds(&ws, &["offsite", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let listed = ok_json(&ws, &["offsite", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    ws.write_config(&(section + "prune_grace = \"1s\"\n"));
    let prune = || {
        for _ in 0..2 {
            with_creds(&ws, &["offsite", "prune"]);
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    };
    prune();
    assert!(dir.join("packs/planted").symlink_metadata().is_ok());
    std::fs::remove_file(dir.join("snapshots/planted")).unwrap();
    prune();
    assert!(
        dir.join("packs/planted").symlink_metadata().is_err(),
        "the link is pruned"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"the user's file");
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "the key file");
}

#[test]
fn wrong_credentials_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    server.bucket("backups");
    let ws = Workspace::new();
    ws.write_config(&server.section("backups", &ws.path().join("offsite.key")));
    let out = ws
        .cmd(&["offsite", "init"])
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong-secret"), "{}", stderr(&out));
    assert!(
        remote::files(root.path()).is_empty(),
        "something was stored"
    );
}

#[test]
fn an_incremental_push_uploads_about_what_changed() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    let size = make_big(&ws, 2_500_000);
    assert!(size >= 64 << 20, "database of {size} bytes");
    let first_id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let first = ok_json(&ws, &["offsite", "push", "--json"]);
    let chunks = ws.manifest(&first_id).chunk_hashes().count();
    println!(
        "first push: {} objects ({} bytes) for {chunks} chunks of a {size}-byte database",
        first["objects"], first["bytes"]
    );
    let stored = |root: &Path| {
        remote::files(root)
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>()
    };
    let before = stored(root.path());
    // ~1% of the rows, one contiguous range.
    let c = duckdb::Connection::open(ws.db()).unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    c.execute_batch(&format!(
        "UPDATE events SET amount = amount + 1 WHERE id BETWEEN 1000 AND {}; CHECKPOINT;",
        1000 + rows / 100
    ))
    .unwrap();
    drop(c);
    ws.snapshot();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let received = stored(root.path()) - before;
    let db = std::fs::metadata(ws.db()).unwrap().len();
    println!(
        "incremental push: the server received {received} bytes for a {db}-byte database ({:.2}%)",
        received as f64 * 100.0 / db as f64
    );
    assert!(received * 20 <= db, "{received} > 5% of {db}");
}

/// Restores every snapshot the remote lists on a fresh machine (only the
/// config and the key) and checks each against the local original.
/// A new machine for `ws`'s remote: a workspace with only the config and
/// a copy of the key file.
pub fn fresh_machine(ws: &Workspace, server: &Remote) -> Workspace {
    let fresh = Workspace::new();
    std::fs::copy(
        ws.path().join("offsite.key"),
        fresh.path().join("offsite.key"),
    )
    .unwrap();
    fresh.write_config(&server.section("backups", &fresh.path().join("offsite.key")));
    fresh
}

/// `restore ID --from offsite --to TO --yes` on `fresh`; its JSON.
pub fn restore_from_offsite(fresh: &Workspace, id: &str, to: &Path) -> Value {
    ok_json(
        fresh,
        &[
            "restore",
            id,
            "--from",
            "offsite",
            "--to",
            to.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    )
}

pub fn every_remote_snapshot_restores(ws: &Workspace, server: &Remote) -> usize {
    let fresh = fresh_machine(ws, server);
    let listed = ok_json(&fresh, &["offsite", "list", "--json"]);
    let ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        let to = fresh.path().join(format!("{id}.duckdb"));
        restore_from_offsite(&fresh, id, &to);
        let original = ws.reassemble(id, &ws.path().join("orig").join(id));
        assert_eq!(
            std::fs::read(&to).unwrap(),
            std::fs::read(&original).unwrap(),
            "{id}"
        );
    }
    ids.len()
}

/// ducksnap killed with SIGKILL at random instants of pushes to `server`,
/// 20 times (the database changing before each): afterwards every
/// snapshot the remote lists restores byte for byte on a fresh machine.
/// Returns how many it lists.
fn kill_pushes(ws: &Workspace, server: &Remote) -> usize {
    make_big(ws, 500_000);
    ws.snapshot();
    let push = || {
        ws.cmd(&["offsite", "push"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let change = |round: u32| {
        let c = duckdb::Connection::open(ws.db()).unwrap();
        c.execute_batch(&format!(
            "UPDATE events SET amount = {round} WHERE id % 97 = {}; CHECKPOINT;",
            round % 97
        ))
        .unwrap();
        drop(c);
        ws.snapshot();
    };
    ok_json(ws, &["offsite", "push", "--json"]);
    // How long the push of one round's change takes: the kills fall within
    // twice that, so that about half land mid-push (at any instant of it)
    // and the others let a push finish what earlier ones left.
    change(99);
    let start = std::time::Instant::now();
    ok_json(ws, &["offsite", "push", "--json"]);
    let window = start.elapsed().as_millis() as u64;
    let mut rng = Rng(0x00ff_517e);
    let mut killed = 0;
    for round in 0..20 {
        change(round);
        let mut child = push();
        std::thread::sleep(std::time::Duration::from_millis(
            rng.below(2 * window.max(1)),
        ));
        killed += usize::from(child.try_wait().unwrap().is_none());
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "{}: {killed} of 20 pushes were killed while running (window {window} ms)",
        server.kind
    );
    let restored = every_remote_snapshot_restores(ws, server);
    println!(
        "{}: after the kills: {restored} remote snapshot(s), each restores",
        server.kind
    );
    restored
}

/// Pushes killed at random instants, then the server killed mid-push and
/// restarted: the remote only ever lists snapshots that restore, and the
/// next push completes.
#[test]
fn pushes_killed_at_random_instants_leave_only_restorable_snapshots() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    kill_pushes(&ws, &server);
    // The server dies mid-push and comes back: it is killed as soon as the
    // push has committed a small snapshot, while it uploads the packs of a
    // large change.
    ws.snapshot();
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("UPDATE events SET amount = -1, token = md5(token); CHECKPOINT;")
        .unwrap();
    drop(c);
    ws.snapshot();
    let mut child = ws
        .cmd(&[
            "--log-format",
            "json",
            "--log-level",
            "info",
            "offsite",
            "push",
        ])
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::io::BufReader::new(child.stderr.take().unwrap());
    use std::io::BufRead;
    let mut lines = log.lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("offsite.pushed")),
        "no snapshot pushed"
    );
    let port = server.port;
    server.kill();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the push finished before the server died"
    );
    let server = Remote::rclone_at(root.path(), port);
    let done = ok_json(&ws, &["offsite", "push", "--json"]);
    println!("server killed during a push; after it came back: {done}");
    let local = ws.list_ids().len();
    let restored = every_remote_snapshot_restores(&ws, &server);
    assert_eq!(
        restored, local,
        "every local snapshot is offsite and restores"
    );
}

/// The same kills on a directory remote: every snapshot it lists restores,
/// every pack and record it holds reads back whole (`offsite verify` of
/// all of them), and a last push completes what the kills cut short.
#[test]
fn pushes_to_a_directory_killed_at_random_instants_leave_only_restorable_snapshots() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::directory(root.path());
    let ws = offsite_ws(&server);
    kill_pushes(&ws, &server);
    let v = ok_json(&ws, &["offsite", "verify", "--sample", "100", "--json"]);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    ok_json(&ws, &["offsite", "push", "--json"]);
    assert_eq!(
        every_remote_snapshot_restores(&ws, &server),
        ws.list_ids().len()
    );
}

/// Remote retention removes the snapshots the policy forgets, then — one
/// grace period later — exactly the packs no remaining record names; a
/// verify names a damaged pack; a rolling sample covers every pack.
#[test]
fn offsite_prune_and_verify() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    let key = ws.path().join("offsite.key");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(400000)",
    );
    ws.snapshot();
    // A new database in its place: the first snapshot shares nothing with
    // the later ones, so its packs become unnamed once it is pruned (a pack
    // stays while any chunk in it is named: there is no repacking).
    std::fs::remove_file(ws.db()).unwrap();
    make_db(
        &ws.db(),
        "CREATE TABLE u AS SELECT range AS i, md5((range * 7)::VARCHAR) AS s FROM range(300000)",
    );
    ws.snapshot();
    for n in 0..2 {
        change(&ws, &format!("UPDATE u SET s = md5(s) WHERE i % 4 = {n}"));
    }
    ok_json(&ws, &["offsite", "push", "--json"]);
    let extra = "prune_grace = \"3s\"\n[offsite.retention]\nkeep_last = 2\n";
    ws.write_config(&(server.section("backups", &key) + extra));
    let dry = ok_json(&ws, &["offsite", "prune", "--dry-run", "--json"]);
    assert_eq!(dry["records_deleted"], 0);
    let kept: Vec<&Value> = dry["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .collect();
    assert_eq!(kept.len(), 2, "{dry}");
    let packs = |root: &Path| {
        remote::files(root)
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("/packs/"))
            .count()
    };
    let before = packs(root.path());
    let first = ok_json(&ws, &["offsite", "prune", "--json"]);
    assert_eq!(first["records_deleted"], 2, "{first}");
    assert_eq!(first["packs_deleted"], 0, "{first}");
    assert!(first["packs_doomed"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(
        packs(root.path()),
        before,
        "nothing deleted before the grace"
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    let second = ok_json(&ws, &["offsite", "prune", "--json"]);
    assert_eq!(second["packs_deleted"], first["packs_doomed"], "{second}");
    let v = ok_json(&ws, &["offsite", "verify", "--json"]);
    assert_eq!(
        v["packs_total"].as_u64().unwrap() as usize,
        packs(root.path()),
        "packs left = packs named: {v}"
    );
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(every_remote_snapshot_restores(&ws, &server), 2);
    // Half and half: two sampled runs cover every pack.
    let a = ok_json(&ws, &["offsite", "verify", "--sample", "50", "--json"]);
    let b = ok_json(&ws, &["offsite", "verify", "--sample", "50", "--json"]);
    assert!(
        a["packs_checked"].as_u64().unwrap() + b["packs_checked"].as_u64().unwrap()
            >= v["packs_total"].as_u64().unwrap()
    );
    // A flipped byte in one pack: named, exit 6.
    let (pack, mut bytes) = remote::files(root.path())
        .into_iter()
        .find(|(p, _)| p.to_string_lossy().contains("/packs/"))
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&pack, bytes).unwrap();
    let out = with_creds(&ws, &["offsite", "verify"]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(pack.file_name().unwrap().to_str().unwrap()),
        "{}",
        stdout(&out)
    );
}

/// A prune racing pushes from another process: every snapshot the remote
/// lists afterwards restores.
#[test]
fn a_prune_racing_a_push_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    let key = ws.path().join("offsite.key");
    let extra = "prune_grace = \"6s\"\n[offsite.retention]\nkeep_last = 3\n";
    ws.write_config(&(server.section("backups", &key) + extra));
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000)",
    );
    ws.snapshot();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let started = std::time::Instant::now();
    for round in 0..6 {
        change(
            &ws,
            &format!("UPDATE t SET s = md5(s) WHERE i % 3 = {}", round % 3),
        );
        let mut pusher = ws
            .cmd(&["offsite", "push"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = with_creds(&ws, &["offsite", "prune"]);
        assert!(out.status.success(), "{}", stderr(&out));
        pusher.wait().unwrap();
        if round == 2 {
            // Let the packs doomed so far age past the grace.
            std::thread::sleep(std::time::Duration::from_secs(6));
        }
    }
    // A push slower than half the grace (a loaded machine) refuses to
    // commit and says the next one goes on: it must, within a few tries.
    let mut tries = 0;
    loop {
        let out = with_creds(&ws, &["offsite", "push", "--json"]);
        if out.status.success() {
            break;
        }
        tries += 1;
        assert!(
            tries < 4 && stdout(&out).contains("longer than half of offsite.prune_grace"),
            "{}",
            stdout(&out)
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(6));
    let last = ok_json(&ws, &["offsite", "prune", "--json"]);
    println!("after {:?} of racing: {last}", started.elapsed());
    let n = every_remote_snapshot_restores(&ws, &server);
    assert!(n >= 3, "{n}");
}

/// `list` says which snapshots are offsite; cloud mode disables every
/// offsite operation; no secret reaches `config check` or the logs.
#[test]
fn list_marks_offsite_cloud_disables_it_secrets_stay_hidden() {
    let server = Remote::moto();
    let ws = offsite_ws(&server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    let first = ws.snapshot()["id"].as_str().unwrap().to_string();
    let list = ws.json(&["list", "--json"]);
    assert_eq!(list[0]["offsite"], false, "{list}");
    ok_json(&ws, &["offsite", "push", "--json"]);
    let second = change(&ws, "INSERT INTO t VALUES (-1)");
    let list = ws.json(&["list", "--json"]);
    let by_id = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()["offsite"]
            .clone()
    };
    assert_eq!(
        (by_id(&first), by_id(&second)),
        (Value::Bool(true), Value::Bool(false)),
        "{list}"
    );
    assert!(stdout(&ws.run(&["list"])).contains("not yet"));
    let st = ws.json(&["status", "--json"]);
    assert_eq!(st["offsite"]["not_pushed"], 1, "{st}");
    // Cloud mode: every offsite operation is disabled (exit 7), no request made.
    for args in [
        &["offsite", "push"][..],
        &["offsite", "status"],
        &["offsite", "list"],
        &["offsite", "init"],
    ] {
        let out = ws
            .cmd(args)
            .env("DUCKSNAP_MODE", "cloud")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", stderr(&out));
    }
    // Secrets: not in config check, not in debug logs of a push.
    let check = stdout(&with_creds(&ws, &["config", "check"]));
    assert!(
        check.contains("[offsite]") && !check.contains(SECRET) && !check.contains(KEY_ID),
        "{check}"
    );
    let key = std::fs::read_to_string(ws.path().join("offsite.key")).unwrap();
    let hexkey = key.split_whitespace().last().unwrap().to_string();
    let out = with_creds(&ws, &["--log-level", "trace", "offsite", "push"]);
    let logs = stderr(&out);
    assert!(out.status.success(), "{logs}");
    assert!(
        !logs.contains(SECRET) && !logs.contains(&hexkey),
        "a secret in the logs"
    );
}

/// `offsite status` with the server gone: it still reports, from the local
/// record of pushes, says why the remote could not be asked, and exits 1.
#[test]
fn offsite_status_says_when_the_remote_cannot_be_reached() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Remote::rclone(root.path());
    let ws = offsite_ws(&server);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    ws.snapshot();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let second = change(&ws, "INSERT INTO t VALUES (-1)");
    let up = ok_json(&ws, &["offsite", "status", "--json"]);
    assert_eq!(up["remote_snapshots"], 1, "{up}");
    assert_eq!(up["not_pushed"], serde_json::json!([second]), "{up}");
    assert!(up.get("unreachable").is_none(), "{up}");

    server.kill();
    let out = with_creds(&ws, &["offsite", "status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let down: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(down["remote_snapshots"], 1, "{down}");
    assert_eq!(down["not_pushed"], serde_json::json!([second]), "{down}");
    assert!(down["lag_seconds"].as_i64().unwrap() >= 0, "{down}");
    assert!(!down["unreachable"].as_str().unwrap().is_empty(), "{down}");
    let out = with_creds(&ws, &["offsite", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("unreachable"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(remote::SECRET));
}

/// `offsite init` before the bucket exists: one line naming the bucket and
/// what to do (not the server's XML), exit 1 as before,
/// and no key file left behind — so the run after the bucket is created
/// writes the key and shows the "NEW KEY" warning.
#[test]
fn offsite_init_before_the_bucket_exists() {
    let server = Remote::moto();
    let ws = Workspace::new();
    let key = ws.path().join("offsite.key");
    ws.write_config(&server.section("not-yet", &key));
    let out = with_creds(&ws, &["offsite", "init"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bucket \"not-yet\" does not exist") && err.contains("create it"),
        "{err}"
    );
    assert!(
        !err.contains('<') && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(
        !key.exists(),
        "a key was written for a remote that was never set up"
    );
    server.bucket("not-yet");
    let out = with_creds(&ws, &["offsite", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("NEW KEY written to"), "{said}");
    assert!(key.exists());
    // Once set up, the same message for a bucket that went away.
    let gone = Workspace::new();
    std::fs::copy(&key, gone.path().join("offsite.key")).unwrap();
    gone.write_config(&server.section("other", &gone.path().join("offsite.key")));
    let out = with_creds(&gone, &["offsite", "push"]);
    assert!(
        stderr(&out).contains("bucket \"other\" does not exist"),
        "{}",
        stderr(&out)
    );
}
