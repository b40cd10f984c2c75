//! One store, one database: a second project's config naming a store that
//! belongs to another database is refused (exit 2, naming both), whatever
//! the command; `adopt` hands the store over on purpose; a project moved
//! with `mv` keeps its store.

use crate::helpers::*;

/// A second config in the same workspace for `other.duckdb`, naming the
/// same store.
fn second(ws: &Workspace) -> std::path::PathBuf {
    let p = ws.path().join("other.toml");
    std::fs::write(
        &p,
        "[database]\npath = \"data/other.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups\"\nmin_free_space = \"1MiB\"\n",
    )
    .unwrap();
    p
}

#[test]
fn two_projects_never_share_a_store() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE a AS SELECT 'project a' AS who");
    let a = ws.snapshot()["id"].as_str().unwrap().to_string();
    let other = ws.path().join("data/other.duckdb");
    make_db(&other, "CREATE TABLE b AS SELECT 'project b' AS who");
    let cfg = second(&ws);
    let before = tree_digest(&ws.store_dir());
    let run = |args: &[&str]| {
        let mut c = ws.bare_cmd();
        c.arg("--config").arg(&cfg).args(args);
        c.output().unwrap()
    };
    for args in [
        &["snapshot"][..],
        &["list"],
        &["restore", "latest", "--yes"],
        &["diff", "latest"],
        &["prune"],
        &["verify", "--all"],
        &["status"],
    ] {
        let out = run(args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains("app.duckdb") && e.contains("other.duckdb") && e.contains("adopt"),
            "{args:?}: {e}"
        );
    }
    let out = run(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("belongs to"), "{}", stdout(&out));
    // Nothing in the store changed, and project B's database is its own.
    assert_eq!(tree_digest(&ws.store_dir()), before);
    let c = open_ro(&other);
    let who: String = c.query_row("SELECT who FROM b", [], |r| r.get(0)).unwrap();
    assert_eq!(who, "project b");
    drop(c);
    // Project A still works.
    assert_eq!(ws.run(&["list"]).status.code(), Some(0));
    // Adopted on purpose: B's now, and A is the one refused.
    let out = run(&["adopt"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("other.duckdb"), "{}", stdout(&out));
    assert_eq!(run(&["list"]).status.code(), Some(0));
    let out = ws.run(&["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A's snapshot is still there for B to see (adopting deletes nothing).
    let listed = {
        let out = run(&["list", "--json"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(listed.contains(&a), "{listed}");
}

#[test]
fn a_moved_project_keeps_its_store() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE a AS SELECT 1 AS i");
    ws.snapshot();
    let record = ws.store_dir().join("DATABASE");
    assert!(record.is_file(), "the store records its database");
    // The project directory moved (the same file, another path).
    let moved = tempfile::tempdir().unwrap();
    let dest = moved.path().join("project");
    std::fs::rename(ws.path(), &dest).unwrap();
    let out = std::process::Command::new(BIN)
        .current_dir(&dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["--config", "ducksnap.toml", "list", "--json"])
        .output()
        .unwrap();
    std::fs::rename(&dest, ws.path()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A damaged record is damage, with the way out.
    std::fs::write(&record, b"{ not json").unwrap();
    let out = ws.run(&["list"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("adopt"), "{}", stderr(&out));
    assert_eq!(ws.run(&["adopt"]).status.code(), Some(0));
    assert_eq!(ws.run(&["list"]).status.code(), Some(0));
}
