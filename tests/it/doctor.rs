//! `ducksnap doctor` on real damage: a database made by PyPI's duckdb and
//! left with its WAL (the app exits without closing), then damaged the way
//! crashes and mistakes damage it. Every finding is held against DuckDB's
//! own answer to opening the same files (its message, the byte position it
//! names, the rows it opens with), never against ducksnap's view.

use crate::helpers::*;
use serde_json::Value;
use std::path::Path;

/// The app: a table, a checkpoint, then `commits` one-row commits left in
/// the WAL (it exits without closing, as a killed app does). Row k is k.
fn app(db: &Path, commits: u32) {
    run_python(
        r#"
import duckdb, os, sys
c = duckdb.connect(sys.argv[1])
c.execute("SET checkpoint_threshold = '10GB'")
c.execute("CREATE TABLE t (i BIGINT, v VARCHAR)")
c.execute("CHECKPOINT")
for k in range(int(sys.argv[2])):
    c.execute("INSERT INTO t VALUES (?, ?)", [k, 'v' * (k % 7)])
os._exit(0)
"#,
        &[db.to_str().unwrap(), &commits.to_string()],
    );
}

/// What DuckDB says when it opens `db` read-only: `Ok(rows of t)` or
/// `Err(its message)`.
fn duckdb_opens(db: &Path) -> Result<i64, String> {
    let out = run_python(
        r#"
import duckdb, json, sys
try:
    c = duckdb.connect(sys.argv[1], read_only=True)
    print(json.dumps({"rows": c.execute("SELECT count(*) FROM t").fetchone()[0]}))
except Exception as e:
    print(json.dumps({"error": str(e)}))
"#,
        &[db.to_str().unwrap()],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    match v["rows"].as_i64() {
        Some(n) => Ok(n),
        None => Err(v["error"].as_str().unwrap().to_string()),
    }
}

/// `ducksnap doctor --json`: its exit code and report.
fn doctor(ws: &Workspace) -> (i32, Value) {
    let out = ws.run(&["doctor", "--json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code().unwrap(), v)
}

fn finding<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["finding"] == name)
        .unwrap_or_else(|| panic!("no {name} finding: {v:#}"))
}

fn wal_of(db: &Path) -> std::path::PathBuf {
    Path::new(&format!("{}.wal", db.display())).to_path_buf()
}

#[test]
fn a_healthy_database_with_its_wal_opens_and_nothing_is_found() {
    let ws = Workspace::new();
    app(&ws.db(), 10);
    let before = std::fs::read(wal_of(&ws.db())).unwrap();
    let (code, v) = doctor(&ws);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["opens"], true);
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{v:#}");
    assert_eq!(v["wal_commits"], 10);
    assert_eq!(duckdb_opens(&ws.db()), Ok(10));
    // Read only: the WAL is as it was (DuckDB's read-only open keeps it).
    assert_eq!(std::fs::read(wal_of(&ws.db())).unwrap(), before);
}

/// A bit flipped in each entry in turn (a fresh copy each time), and a
/// zeroed tail: DuckDB refuses each; doctor names the byte
/// position DuckDB names, and the commits it calls intact are exactly the
/// rows DuckDB opens once the WAL is cut where the damaged entry begins.
#[test]
fn a_wal_entry_that_fails_its_checksum_is_named_where_duckdb_names_it() {
    let ws = Workspace::new();
    app(&ws.db(), 8);
    let db = ws.db();
    let clean_db = std::fs::read(&db).unwrap();
    let clean_wal = std::fs::read(wal_of(&db)).unwrap();
    let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
    // A bit flipped in the middle of every entry's body in turn.
    for (start, end) in bodies(&clean_wal) {
        if start == end {
            continue;
        }
        let at = (start + end) / 2;
        let mut w = clean_wal.clone();
        w[at] ^= 0x10;
        damages.push((format!("bit flipped at {at}"), w));
    }
    assert!(damages.len() >= 16, "{} entries", damages.len());
    let mut z = clean_wal.clone();
    let n = z.len();
    z[n - 64..].fill(0);
    damages.push(("last 64 bytes zeroed".into(), z));
    for (what, wal) in &damages {
        std::fs::write(&db, &clean_db).unwrap();
        std::fs::write(wal_of(&db), wal).unwrap();
        let refused = duckdb_opens(&db).expect_err(what);
        let (code, v) = doctor(&ws);
        assert_eq!(code, 10, "{what}: {v:#}");
        assert_eq!(v["opens"], false, "{what}");
        let f = finding(&v, "wal_bad_checksum");
        let position = f["position"].as_u64().unwrap();
        assert!(
            refused.contains(&format!("entry at byte position {position} ")),
            "{what}: DuckDB says {refused:?}, doctor {f}"
        );
        // Cut where the damaged entry's frame begins: DuckDB opens the
        // commits doctor calls intact (the unfinished one is a torn tail).
        let mut cut = wal.clone();
        cut.truncate(position as usize - 16);
        std::fs::write(wal_of(&db), &cut).unwrap();
        let intact = f["intact_commits"].as_i64().unwrap();
        assert_eq!(duckdb_opens(&db), Ok(intact), "{what}: {f}");
        assert_eq!(f["commit"].as_i64().unwrap(), intact + 1);
        assert!(f["entry"].as_u64().unwrap() <= f["entries"].as_u64().unwrap());
    }
}

#[test]
fn a_wal_of_another_database_or_checkpoint_is_named() {
    let ws = Workspace::new();
    let db = ws.db();
    app(&db, 5);
    let other = ws.path().join("other.duckdb");
    app(&other, 5);
    let own = std::fs::read(wal_of(&db)).unwrap();
    std::fs::copy(wal_of(&other), wal_of(&db)).unwrap();
    let refused = duckdb_opens(&db).unwrap_err();
    assert!(
        refused.contains("WAL does not match database file"),
        "{refused}"
    );
    let (code, v) = doctor(&ws);
    assert_eq!(code, 10, "{v:#}");
    let f = finding(&v, "wal_other_database");
    assert_ne!(f["wal_identifier"], f["database_identifier"]);

    // The database moves on two checkpoints; its old WAL is put back.
    std::fs::write(wal_of(&db), &own).unwrap();
    run_python(
        r#"
import duckdb, sys
c = duckdb.connect(sys.argv[1])
c.execute("CHECKPOINT")
c.execute("INSERT INTO t VALUES (100, 'x')")
c.execute("CHECKPOINT")
c.close()
"#,
        &[db.to_str().unwrap()],
    );
    std::fs::write(wal_of(&db), &own).unwrap();
    let refused = duckdb_opens(&db).unwrap_err();
    assert!(
        refused.contains("checkpoint iteration does not match"),
        "{refused}"
    );
    let (code, v) = doctor(&ws);
    assert_eq!(code, 10, "{v:#}");
    let f = finding(&v, "wal_iteration");
    assert!(
        refused.contains(&format!("WAL checkpoint iteration: {}", f["wal"])),
        "DuckDB says {refused:?}, doctor {f}"
    );
    assert!(refused.contains(&format!("File checkpoint iteration: {}", f["database"])));
}

/// A WAL cut inside an entry (a crash mid-write) is what DuckDB ignores:
/// doctor says so, exits 0, and the commits it counts are DuckDB's rows.
#[test]
fn a_torn_tail_is_a_note_and_the_commits_before_it_open() {
    let ws = Workspace::new();
    app(&ws.db(), 6);
    let wal = std::fs::read(wal_of(&ws.db())).unwrap();
    std::fs::write(wal_of(&ws.db()), &wal[..wal.len() - 5]).unwrap();
    let (code, v) = doctor(&ws);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["opens"], true);
    let f = finding(&v, "wal_torn_tail");
    assert_eq!(f["severity"], "note");
    assert_eq!(
        duckdb_opens(&ws.db()),
        Ok(f["intact_commits"].as_i64().unwrap())
    );
    assert_eq!(f["intact_commits"], 5);
}

#[test]
fn a_held_lock_names_the_process_and_nothing_is_opened() {
    let ws = Workspace::new();
    app(&ws.db(), 3);
    let mut holder = std::process::Command::new(python())
        .arg("-c")
        .arg("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(60)")
        .arg(ws.db())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let (code, v) = doctor(&ws);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 8, "{v:#}");
    assert!(v["opens"].is_null(), "not tried while held: {v:#}");
    let f = finding(&v, "locked");
    assert_eq!(f["pid"], holder.id());
    assert!(
        f["program"].as_str().unwrap_or("").contains("python"),
        "{f}"
    );
}

#[test]
fn no_database_or_not_a_duckdb_file_exits_3() {
    let ws = Workspace::new();
    let (code, v) = doctor(&ws);
    assert_eq!(code, 3, "{v:#}");
    finding(&v, "missing");
    std::fs::create_dir_all(ws.db().parent().unwrap()).unwrap();
    std::fs::write(ws.db(), vec![7u8; 100_000]).unwrap();
    let refused = duckdb_opens(&ws.db()).unwrap_err();
    assert!(
        refused.contains("not a valid DuckDB database file"),
        "{refused}"
    );
    let (code, v) = doctor(&ws);
    assert_eq!(code, 3, "{v:#}");
    finding(&v, "not_duck_db");
}

/// What a person reads: the verdict, the finding and the fix, in 80
/// columns.
#[test]
fn the_text_report_fits_80_columns_and_says_what_to_do() {
    let ws = Workspace::new();
    app(&ws.db(), 4);
    let mut w = std::fs::read(wal_of(&ws.db())).unwrap();
    let (start, end) = bodies(&w)[2];
    w[(start + end) / 2] ^= 1;
    std::fs::write(wal_of(&ws.db()), &w).unwrap();
    let out = ws.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(10));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("DuckDB will not open it."), "{text}");
    assert!(text.contains("error: the WAL fails its checksum"), "{text}");
    assert!(text.contains("fix: first copy the database"), "{text}");
    for l in text.lines() {
        assert!(
            l.chars().count() <= 80,
            "{} columns: {l}",
            l.chars().count()
        );
    }
}
