//! The conformance suite every offsite backend runs (as restic's backend
//! tests do): a directory (`file://`), moto and `rclone serve s3`. Each
//! case checks the backend against what the server or the disk holds, read
//! without ducksnap ([`Remote::read`], [`Remote::keys`]): create-if-absent
//! under a race, list, read back, replace and delete; a crash between the
//! upload of a snapshot's packs and its record; a damaged object.

use std::collections::BTreeMap;

use ducksnap::config::HostEnv;
use ducksnap::offsite::backend::Backend;

use crate::helpers::remote::{KEY_ID, Remote, SECRET};
use crate::helpers::*;
use crate::offsite::{
    change, every_remote_snapshot_restores, fresh_machine, offsite_ws, ok_json, with_creds,
};

const BUCKET: &str = "conformance";

/// The backend for `remote`'s bucket [`BUCKET`], connected as the
/// operations connect (through `offsite::connect`, from a config).
fn backend(remote: &Remote, conditional: bool) -> Box<dyn Backend> {
    remote.bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let env = HostEnv {
        vars: BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_string(), KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
        ]),
        cwd: dir.path().to_path_buf(),
    };
    let text = remote.section(BUCKET, &dir.path().join("key"));
    let cfg = ducksnap::config::from_str_at(&text, None, dir.path(), &env).unwrap();
    ducksnap::offsite::connect(cfg.offsite.as_ref().unwrap(), &env, conditional).unwrap()
}

/// The key of object `name` under the bucket.
fn key(name: &str) -> String {
    format!("team/app/{name}")
}

/// Eight writers put different bytes under one name at once. With
/// conditional puts exactly one is told it created the object, and the
/// object holds that writer's bytes, whole; a later put changes nothing.
/// Without (rclone), the object holds one writer's bytes, whole.
fn create_if_absent_under_a_race(remote: &Remote, b: &dyn Backend) {
    let body = |w: u8| -> Vec<u8> {
        let mut v = vec![w; 256 * 1024];
        v[..8].copy_from_slice(&u64::from(w).to_le_bytes());
        v
    };
    let barrier = std::sync::Barrier::new(8);
    let created: Vec<(u8, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (w, b.put("race/object", body(w)).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = remote.read(BUCKET, &key("race/object")).expect("stored");
    let whole: Vec<u8> = (0..8u8).filter(|w| stored == body(*w)).collect();
    assert_eq!(
        whole.len(),
        1,
        "{}: the object is one writer's bytes",
        remote.kind
    );
    if b.conditional() {
        let winners: Vec<u8> = created
            .iter()
            .filter(|(_, c)| *c)
            .map(|(w, _)| *w)
            .collect();
        assert_eq!(winners, whole, "{}: {created:?}", remote.kind);
        assert!(!b.put("race/object", body(9)).unwrap(), "{}", remote.kind);
        assert_eq!(
            remote.read(BUCKET, &key("race/object")),
            Some(body(whole[0]))
        );
    }
    b.delete("race/object").unwrap();
}

/// Objects come back as they were put; `list` names everything under a
/// directory at any depth (a planted `packs/sub/x` as `sub/x`) with its
/// size, and nothing for an empty one; `get` of a missing object is `None`
/// and `get_all` of one an error; a replaced object holds the new bytes; a
/// deleted one is gone, and deleting it again is not an error.
fn list_read_back_replace_delete(remote: &Remote, b: &dyn Backend) {
    let a = b"a".to_vec();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert!(b.put("packs/a", a.clone()).unwrap() || !b.conditional());
    b.put("packs/big", big.clone()).unwrap();
    b.put("snapshots/c", b"c".to_vec()).unwrap();
    remote.api(BUCKET, &key("packs/sub/x"), Some(b"planted"));
    let mut listed: Vec<(String, u64)> = b
        .list("packs")
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.size))
        .collect();
    listed.sort();
    let want = [("a", 1), ("big", big.len() as u64), ("sub/x", 7)];
    let want: Vec<(String, u64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    assert_eq!(listed, want, "{}", remote.kind);
    assert!(
        b.list("nothing-here").unwrap().is_empty(),
        "{}",
        remote.kind
    );
    assert_eq!(b.get("packs/big").unwrap(), Some(big.clone()));
    assert_eq!(remote.read(BUCKET, &key("packs/big")), Some(big.clone()));
    assert_eq!(b.get("packs/missing").unwrap(), None, "{}", remote.kind);
    let both = b
        .get_all(&["packs/big".to_string(), "packs/a".to_string()])
        .unwrap();
    assert_eq!(both, vec![big, a], "{}: in the order asked", remote.kind);
    assert!(
        b.get_all(&["packs/a".into(), "packs/missing".into()])
            .is_err(),
        "{}",
        remote.kind
    );
    b.put_overwrite("doomed", b"first".to_vec()).unwrap();
    b.put_overwrite("doomed", b"second".to_vec()).unwrap();
    assert_eq!(
        remote.read(BUCKET, &key("doomed")),
        Some(b"second".to_vec())
    );
    for name in [
        "packs/a",
        "packs/big",
        "packs/sub/x",
        "snapshots/c",
        "doomed",
    ] {
        b.delete(name).unwrap();
        assert_eq!(
            remote.read(BUCKET, &key(name)),
            None,
            "{}: {name}",
            remote.kind
        );
        b.delete(name).unwrap();
    }
    assert!(b.list("packs").unwrap().is_empty(), "{}", remote.kind);
    assert!(
        remote.keys(BUCKET, "team/app/packs").is_empty(),
        "{}",
        remote.kind
    );
}

/// A push that died after uploading a snapshot's packs and before its
/// record (the record gone, the local record of what was pushed from
/// before that push): the remote lists only whole snapshots, each
/// restores, and the next push completes it.
fn crash_between_upload_and_record(remote: &Remote) {
    let ws = offsite_ws(remote);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(100000)",
    );
    ws.snapshot();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let pushed = ws.path().join("data/backups/offsite/pushed.json");
    let before = std::fs::read(&pushed).unwrap();
    let records = remote.keys("backups", "team/app/snapshots/");
    change(&ws, "UPDATE t SET s = md5(s) WHERE i % 3 = 0");
    ok_json(&ws, &["offsite", "push", "--json"]);
    let new: Vec<String> = remote
        .keys("backups", "team/app/snapshots/")
        .into_iter()
        .filter(|k| !records.contains(k))
        .collect();
    assert_eq!(new.len(), 1, "{}: {new:?}", remote.kind);
    remote.api("backups", &new[0], None);
    std::fs::write(&pushed, before).unwrap();
    let listed = ok_json(&ws, &["offsite", "list", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "{}: {listed}",
        remote.kind
    );
    let status = ok_json(&ws, &["offsite", "status", "--json"]);
    assert_eq!(
        status["not_pushed"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    assert_eq!(every_remote_snapshot_restores(&ws, remote), 1);
    let again = ok_json(&ws, &["offsite", "push", "--json"]);
    assert_eq!(again["snapshots"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!(every_remote_snapshot_restores(&ws, remote), 2);
}

/// One flipped byte in a pack, written on the server behind ducksnap's
/// back: `offsite verify` names the pack (exit 6) and a restore of the
/// snapshot on a fresh machine fails without leaving a file.
fn a_damaged_object(remote: &Remote) {
    let ws = offsite_ws(remote);
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(50000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    ok_json(&ws, &["offsite", "push", "--json"]);
    let pack = remote.keys("backups", "team/app/packs/")[0].clone();
    let mut bytes = remote.read("backups", &pack).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    remote.api("backups", &pack, Some(&bytes));
    if remote.kind == "rclone" {
        // rclone's directory cache (100 ms) must see the new file.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = with_creds(&ws, &["offsite", "verify", "--sample", "100"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}: {}",
        remote.kind,
        stdout(&out)
    );
    let name = pack.rsplit('/').next().unwrap();
    assert!(
        stdout(&out).contains(name),
        "{}: {}",
        remote.kind,
        stdout(&out)
    );
    let fresh = fresh_machine(&ws, remote);
    let to = fresh.path().join("restored.duckdb");
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
    assert!(!out.status.success(), "{}: {}", remote.kind, stdout(&out));
    assert!(
        !to.exists(),
        "{}: a damaged restore left a file",
        remote.kind
    );
}

/// Every case, each on a new remote from `make` (given a fresh directory).
fn conformance(make: &dyn Fn(&std::path::Path) -> Remote) {
    let fresh = || {
        let root = tempfile::tempdir().unwrap();
        (make(root.path()), root)
    };
    let (remote, _root) = fresh();
    let conditional = remote.kind != "rclone";
    let b = backend(&remote, conditional);
    assert_eq!(b.conditional(), conditional);
    create_if_absent_under_a_race(&remote, b.as_ref());
    list_read_back_replace_delete(&remote, b.as_ref());
    let (remote, _root) = fresh();
    crash_between_upload_and_record(&remote);
    let (remote, _root) = fresh();
    a_damaged_object(&remote);
}

#[test]
fn a_directory_conforms() {
    conformance(&Remote::directory);
}

#[test]
fn moto_conforms() {
    conformance(&|_| Remote::moto());
}

#[test]
fn rclone_conforms() {
    conformance(&Remote::rclone);
}
