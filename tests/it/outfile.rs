//! Files written outside the store (`export --to`, `restore --to`) cannot
//! be redirected: links planted at every name ducksnap ever used for its
//! temporary files are never followed, `--force` replaces only regular
//! files (never a device, a FIFO, a socket or a directory), and no output
//! goes into the store. Checked against the bytes of every file around.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::helpers::*;

/// Every entry under `dir` (not following links) with its kind and, for
/// regular files, a hash of its bytes.
fn entries(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let name = p.strip_prefix(base).unwrap().display().to_string();
            let what = if t.is_symlink() {
                format!("link → {}", std::fs::read_link(&p).unwrap().display())
            } else if t.is_dir() {
                walk(base, &p, out);
                "dir".into()
            } else if t.is_file() {
                blake3::hash(&std::fs::read(&p).unwrap())
                    .to_hex()
                    .to_string()
            } else if t.is_fifo() {
                "fifo".into()
            } else if t.is_char_device() {
                "char device".into()
            } else {
                "other".into()
            };
            out.push((name, what));
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

type Around = (Vec<(String, String)>, Vec<(String, String)>);

/// Fails naming only the entries that differ (there are thousands).
fn assert_same(before: &Around, now: &Around, what: &str) {
    for (b, n) in [(&before.0, &now.0), (&before.1, &now.1)] {
        let gone: Vec<_> = b.iter().filter(|e| !n.contains(e)).take(5).collect();
        let new: Vec<_> = n.iter().filter(|e| !b.contains(e)).take(5).collect();
        assert!(
            gone.is_empty() && new.is_empty(),
            "{what} changed files around it: gone or changed {gone:?}, new or changed {new:?}"
        );
    }
}

/// A workspace with one snapshot of a 1,000-row table, and its id.
fn one_snapshot() -> (Workspace, String) {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(1000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    (ws, id)
}

/// A shared directory with links planted at every temporary name an
/// earlier ducksnap used, for the next PIDs, pointing at another user's
/// database: export and restore --to write their outputs, and nothing else
/// in either directory changes.
#[test]
fn outputs_cannot_be_redirected() {
    let (ws, id) = one_snapshot();
    // Another user's directory, where links are planted at every name an
    // earlier ducksnap used for temporary files, for the next PIDs.
    let shared = ws.path().join("shared");
    let victim_dir = ws.path().join("victim");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim = victim_dir.join("theirs.duckdb");
    make_db(&victim, "CREATE TABLE mine AS SELECT 42 AS answer");
    let me = std::process::id();
    for name in ["out.csv", "out.duckdb", "copy.duckdb"] {
        for pid in me..me + 2000 {
            for pattern in [
                format!(".{name}.ducksnap-export-{pid}"),
                format!(".{name}.ducksnap-staged{pid}"),
                format!(".{name}.staged{pid}"),
            ] {
                let _ = std::os::unix::fs::symlink(&victim, shared.join(pattern));
            }
        }
    }
    let around = || (entries(&shared), entries(&victim_dir));
    let before = around();
    let count = |p: &Path| {
        let c = open_ro(p);
        query_i64(&c, "SELECT count(*) FROM t")
    };
    // The outputs are written, and nothing else changed.
    for (args, out) in [
        (vec!["export", &id, "--table", "t", "--to"], "out.csv"),
        (vec!["export", &id, "--table", "t", "--to"], "out.duckdb"),
        (vec!["restore", &id, "--yes", "--to"], "copy.duckdb"),
    ] {
        let to = shared.join(out);
        let mut a = args.clone();
        let to_s = to.display().to_string();
        a.push(&to_s);
        let o = ws.run(&a);
        assert_eq!(o.status.code(), Some(0), "{a:?}: {}", stderr(&o));
        if out.ends_with(".duckdb") {
            assert_eq!(count(&to), 1000);
        }
        let mut now = around();
        now.0.retain(|(n, _)| n != out);
        assert_same(&before, &now, &format!("{a:?}"));
        std::fs::remove_file(&to).unwrap();
    }
    let c = open_ro(&victim);
    assert_eq!(query_i64(&c, "SELECT answer FROM mine"), 42);
    assert_eq!(
        query_i64(&c, "SELECT count(*) FROM duckdb_tables()"),
        1,
        "no table was written into another database"
    );
    drop(c);
}

/// `--force` replaces regular files only: a FIFO, a directory, a socket,
/// a device and a FIFO where a WAL side file would go are refused, and
/// left as they were.
#[test]
fn force_replaces_regular_files_only() {
    let (ws, id) = one_snapshot();
    let shared = ws.path().join("shared");
    let victim_dir = ws.path().join("victim");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&victim_dir).unwrap();
    let around = || (entries(&shared), entries(&victim_dir));
    let fifo = shared.join("fifo.csv");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let dir = shared.join("dir.duckdb");
    std::fs::create_dir(&dir).unwrap();
    let sock_path = shared.join("sock.csv");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut targets = vec![fifo.clone(), dir.clone(), sock_path.clone()];
    let dev = shared.join("null.duckdb");
    // /dev/null's numbers, made here (root can; elsewhere it is skipped).
    let made_dev = nix::sys::stat::mknod(
        &dev,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .is_ok();
    if made_dev {
        targets.push(dev.clone());
    }
    // A WAL side file that is a FIFO: restore --to would replace it.
    let side = shared.join("side.duckdb");
    nix::unistd::mkfifo(
        &shared.join("side.duckdb.wal"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    let before = around();
    for to in targets.iter().chain([&side]) {
        let to_s = to.display().to_string();
        let table = if to_s.ends_with(".csv") { "t" } else { "" };
        let mut cmds: Vec<Vec<&str>> = Vec::new();
        if table.is_empty() {
            cmds.push(vec!["restore", &id, "--yes", "--force", "--to", &to_s]);
            cmds.push(vec!["export", &id, "--force", "--to", &to_s]);
        } else {
            cmds.push(vec![
                "export", &id, "--table", "t", "--force", "--to", &to_s,
            ]);
        }
        for a in cmds {
            let o = ws.run(&a);
            assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains("regular file") || e.contains("directory"),
                "{a:?}: {e}"
            );
        }
    }
    assert_same(&before, &around(), "a refused write");
    if made_dev {
        assert!(
            std::fs::symlink_metadata(&dev)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

/// Nothing is written into the store, by any spelling of a path in it.
#[test]
fn nothing_is_written_into_the_store() {
    let (ws, id) = one_snapshot();
    let store_before = tree_digest(&ws.store_dir());
    for to in [
        ws.store_dir().join("snapshots/x.duckdb"),
        ws.store_dir().join("x.csv"),
        ws.path().join("data/../data/backups/chunks/x.duckdb"),
    ] {
        let to_s = to.display().to_string();
        for a in [
            vec!["export", &id, "--table", "t", "--to", &to_s],
            vec!["restore", &id, "--yes", "--to", &to_s],
        ] {
            if a[0] == "restore" && to_s.ends_with(".csv") {
                continue;
            }
            let o = ws.run(&a);
            assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("inside the store"), "{}", stderr(&o));
        }
    }
    assert_eq!(tree_digest(&ws.store_dir()), store_before);
    assert_eq!(ws.run(&["verify", "--all"]).status.code(), Some(0));
}

/// The disaster-recovery case: a fresh machine, the config naming the
/// database, no file of it there yet: `restore --to` the configured path
/// is allowed (nothing to protect); once the file exists it is refused.
#[test]
fn restore_to_the_configured_path_on_a_fresh_machine() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(10)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    std::fs::remove_file(ws.db()).unwrap();
    let to = ws.db().display().to_string();
    let o = ws.run(&["restore", &id, "--to", &to, "--check", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(query_i64(&open_ro(&ws.db()), "SELECT count(*) FROM t"), 10);
    let o = ws.run(&["restore", &id, "--to", &to, "--force", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is the configured database"),
        "{}",
        stderr(&o)
    );
}
