//! (m) When DuckDB will not open the database: `ducksnap doctor` and
//! `ducksnap rescue` (to a copy, and in place) on a database of `mb` MB
//! whose WAL of `wal_mb` MB has one flipped bit in its middle, beside what
//! the user would otherwise do — copy the files aside and delete the WAL,
//! which loses every commit in it — and beside DuckDB's own refusal to
//! open it. Each timed run starts from the same damaged files; the store
//! holds a snapshot taken before the damage (as the daemon's would).

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{Ws, median, run_json, timed};

/// The app: a table of about `mb` MB (the bench reports the file's real
/// size), a checkpoint, then commits of about
/// 1 MB each left in the WAL until it holds `wal_mb` MB; it exits without
/// closing, as a killed app does.
const APP: &str = r#"
import duckdb, os, sys
db, mb, wal_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = duckdb.connect(db)
c.execute("SET enable_progress_bar = false")
# Hex digests compress to about 55 bytes a row in DuckDB's storage.
rows = mb * 1024 * 1024 // 55
c.execute("CREATE TABLE big AS SELECT range AS i, md5(range::VARCHAR) || md5((range * 7)::VARCHAR) || md5((range * 13)::VARCHAR) AS v FROM range(?)", [rows])
c.execute("CHECKPOINT")
c.execute("SET checkpoint_threshold = '100GB'")
c.execute("CREATE TABLE notes (k BIGINT, v VARCHAR)")
k = 0
while os.path.getsize(db + ".wal") < wal_mb * 1024 * 1024:
    c.execute("INSERT INTO notes SELECT ? * 10000 + range, repeat(md5(range::VARCHAR), 16) FROM range(2000)", [k])
    k += 1
print(k)
os._exit(0)
"#;

fn wal(db: &Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.wal", db.display()))
}

/// Puts the damaged files back where the database is.
fn put_back(aside: &Path, db: &Path) {
    for suffix in ["", ".wal"] {
        let from = format!("{}{suffix}", aside.display());
        let to = format!("{}{suffix}", db.display());
        let _ = std::fs::remove_file(&to);
        std::fs::copy(&from, &to).unwrap();
    }
    for suffix in [".wal.checkpoint", ".wal.recovery"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

pub fn run(root: &Path, mb: u64, wal_mb: u64, runs: usize, python: &Path) -> (Value, String) {
    let ws = Ws::new(root, "rescue");
    let db = ws.db();
    let out = Command::new(python)
        .args([
            "-c",
            APP,
            db.to_str().unwrap(),
            &mb.to_string(),
            &wal_mb.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commits: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the app prints its commit count last");
    // The store's snapshot of the database before the damage.
    timed(
        ws.ducksnap(&["snapshot", "--json"])
            .stdout(std::process::Stdio::null()),
    );
    let mut w = std::fs::read(wal(&db)).unwrap();
    let mid = w.len() / 2;
    w[mid] ^= 0x08;
    std::fs::write(wal(&db), &w).unwrap();
    let aside = ws.dir.join("aside.duckdb");
    for suffix in ["", ".wal"] {
        std::fs::copy(
            format!("{}{suffix}", db.display()),
            format!("{}{suffix}", aside.display()),
        )
        .unwrap();
    }
    let (db_bytes, wal_bytes) = (
        std::fs::metadata(&db).unwrap().len(),
        std::fs::metadata(wal(&db)).unwrap().len(),
    );
    let copy = ws.dir.join("rescued.duckdb");
    let (mut refused, mut doctor, mut to, mut in_place, mut by_hand) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last = Value::Null;
    for _ in 0..runs {
        put_back(&aside, &db);
        refused.push(timed(Command::new(python).args([
            "-c",
            "import duckdb, sys\ntry:\n    duckdb.connect(sys.argv[1], read_only=True)\nexcept duckdb.Error:\n    pass",
            db.to_str().unwrap(),
        ])));
        let (t, d) = {
            let mut c = ws.ducksnap(&["doctor", "--json"]);
            super::settle();
            let s = std::time::Instant::now();
            let o = c.output().unwrap();
            (
                s.elapsed().as_secs_f64(),
                serde_json::from_slice::<Value>(&o.stdout).unwrap(),
            )
        };
        assert_eq!(d["exit_code"], 10, "{d}");
        doctor.push(t);
        let (t, r) = run_json(&mut ws.ducksnap(&[
            "rescue",
            "--to",
            copy.to_str().unwrap(),
            "--force",
            "--yes",
            "--json",
        ]));
        to.push(t);
        assert_eq!(r["source"], "live_wal", "{r}");
        let (t, r) = run_json(&mut ws.ducksnap(&["rescue", "--yes", "--json"]));
        in_place.push(t);
        last = r;
        // By hand: the files aside (cp -p), then the WAL deleted.
        put_back(&aside, &db);
        let keep = ws.dir.join("kept-by-hand");
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep).unwrap();
        by_hand.push(timed(Command::new("sh").args([
            "-c",
            &format!(
                "cp -p {db} {db}.wal {keep}/ && sync {keep}/* && rm {db}.wal",
                db = db.display(),
                keep = keep.display()
            ),
        ])));
    }
    let v = json!({
        "db_bytes": db_bytes,
        "wal_bytes": wal_bytes,
        "wal_commits": commits,
        "commits_recovered": last["commits"],
        "duckdb_refuses_s": median(refused.clone()),
        "doctor_s": median(doctor.clone()),
        "rescue_to_s": median(to.clone()),
        "rescue_in_place_s": median(in_place.clone()),
        "copy_aside_and_delete_wal_s": median(by_hand.clone()),
        "runs": {"refused": refused, "doctor": doctor, "rescue_to": to, "rescue_in_place": in_place, "by_hand": by_hand},
    });
    let rows = format!(
        "| {mb} MB + {} MB WAL | (m) doctor / rescue --to / rescue in place (median of {runs}) | {:.2} s / {:.2} s / {:.2} s ({} of {commits} commits back) | copy aside + delete the WAL: {:.2} s (0 of {commits} back) | | | | DuckDB refuses in {:.2} s | |\n",
        wal_bytes >> 20,
        median(doctor),
        median(to),
        median(in_place),
        last["commits"],
        median(by_hand),
        median(refused),
    );
    (v, rows)
}
