//! Time travel: `--as-of` (choosing the snapshot of a time), `diff` and
//! `export`, on real DuckDB files and the real binary.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use ducksnap::id::SnapshotId;
use ducksnap::ops::select::Selector;
use ducksnap::store::{CaptureMethod, Summary};

use crate::helpers::*;

fn summary(id: &str, at: DateTime<Utc>) -> Summary {
    Summary {
        id: SnapshotId::parse(id).unwrap(),
        created_at: at,
        reason: "scheduled".into(),
        label: None,
        pinned: false,
        pinned_until: None,
        db_size: 1,
        wal_size: 0,
        bytes_new: 1,
        verified: true,
        method: CaptureMethod::Quiescent,
        db_iteration: Some(1),
    }
}

fn pick(given: &str, catalog: &[Summary], now: DateTime<Utc>) -> Result<String, String> {
    let sel = Selector::parse_at(&format!("as-of:{given}"), now).map_err(|e| e.to_string())?;
    sel.pick(given, catalog)
        .map(|id| id.to_string())
        .map_err(|e| format!("{e:?}"))
}

/// The choice, with time passed in: hourly snapshots across the night the
/// clocks in Berlin went back (2026-10-25, 03:00 CEST → 02:00 CET).
#[test]
fn as_of_chooses_the_newest_snapshot_at_or_before_the_time() {
    let at = |h: u32, m: u32| {
        Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap()
            + chrono::TimeDelta::minutes((h * 60 + m) as i64)
    };
    // 22:00 UTC on the 24th to 03:00 UTC on the 25th, every hour.
    let catalog: Vec<Summary> = (22..28)
        .map(|h| {
            let t = at(h, 0);
            summary(&format!("{}-{:04x}", t.format("%Y%m%dT%H%M%SZ"), h), t)
        })
        .collect();
    let id_at = |h: u32| catalog[(h - 22) as usize].id.to_string();
    let now = at(30, 0);
    // Between two snapshots, exactly at one, in another zone.
    assert_eq!(pick("2026-10-24T23:30:00Z", &catalog, now), Ok(id_at(23)));
    assert_eq!(pick("2026-10-24T23:00:00Z", &catalog, now), Ok(id_at(23)));
    assert_eq!(
        pick("2026-10-25T05:30:00+05:30", &catalog, now),
        Ok(id_at(24))
    );
    assert_eq!(
        pick("2026-10-25 01:59:59 Europe/Berlin", &catalog, now),
        Ok(id_at(23))
    );
    // 02:30 in Berlin happens twice that night; the earlier (CEST, 00:30
    // UTC) is meant. 02:30 CET would be 01:30 UTC.
    assert_eq!(
        pick("2026-10-25 02:30 Europe/Berlin", &catalog, now),
        Ok(id_at(24))
    );
    assert_eq!(
        pick("2026-10-25 03:30 Europe/Berlin", &catalog, now),
        Ok(id_at(26))
    );
    // Relative to now (06:00 UTC): 3h ago is 03:00 UTC, the newest.
    assert_eq!(pick("3h ago", &catalog, now), Ok(id_at(27)));
    assert_eq!(pick("4h", &catalog, now), Ok(id_at(26)));
    // Before the oldest: nothing; in the future: refused when parsed.
    assert_eq!(
        pick("2026-10-24T21:59:59Z", &catalog, now),
        Err("None".into())
    );
    let future = pick("2026-10-25T07:00:00Z", &catalog, now).unwrap_err();
    assert!(future.contains("in the future"), "{future}");
    // A spring-forward gap is no time at all.
    let gap = pick("2026-03-29 02:30 Europe/Berlin", &catalog, now).unwrap_err();
    assert!(gap.contains("does not exist"), "{gap}");
}

fn created_at(ws: &Workspace, id: &str) -> DateTime<Utc> {
    ws.manifest(id).created_at
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// The real binary: `restore --as-of`, `show --as-of`, `list --as-of`,
/// and the refusals with their exit code (9) and messages.
#[test]
fn restore_as_of_names_the_snapshot_it_chose() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS v");
    let mut ids = Vec::new();
    for v in 1..=3 {
        if v > 1 {
            let c = duckdb::Connection::open(ws.db()).unwrap();
            c.execute_batch(&format!("UPDATE t SET v = {v}")).unwrap();
        }
        ids.push(ws.snapshot()["id"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let t: Vec<DateTime<Utc>> = ids.iter().map(|i| created_at(&ws, i)).collect();
    let between = t[1] + (t[2] - t[1]) / 2;
    let rfc = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);

    let shown = ws.json(&["show", "--as-of", &rfc(between), "--json"]);
    assert_eq!(shown["manifest"]["id"], ids[1].as_str());
    let exact = ws.json(&["show", "--as-of", &rfc(t[2]), "--json"]);
    assert_eq!(exact["manifest"]["id"], ids[2].as_str());
    let listed = ws.json(&["list", "--as-of", &rfc(between), "--json"]);
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[1].as_str(), ids[0].as_str()]);

    let to = ws.path().join("asof.duckdb");
    let out = ws.run(&[
        "restore",
        "--as-of",
        &rfc(between),
        "--to",
        to.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["id"], ids[1].as_str());
    let note = r["as_of"].as_str().unwrap();
    assert!(note.contains(&ids[1]) && note.contains("before"), "{note}");
    assert!(stderr(&out).contains(&ids[1]), "{}", stderr(&out));
    assert_eq!(query_i64(&open_ro(&to), "SELECT v FROM t"), 2);

    // Before the oldest, in the future: exit 9, clear words, nothing written.
    let before = rfc(t[0] - chrono::TimeDelta::seconds(5));
    let to2 = ws.path().join("none.duckdb");
    let out = ws.run(&[
        "restore",
        "--as-of",
        &before,
        "--to",
        to2.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(code(&out), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no snapshot was taken at or before"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&ids[0]),
        "names the oldest: {}",
        stderr(&out)
    );
    let future = rfc(Utc::now() + chrono::TimeDelta::hours(2));
    let out = ws.run(&[
        "restore",
        "--as-of",
        &future,
        "--to",
        to2.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(code(&out), Some(9), "{}", stderr(&out));
    assert!(stderr(&out).contains("in the future"), "{}", stderr(&out));
    assert!(!to2.exists());
    // An id and --as-of together, or a time nobody can read: usage (2).
    let out = ws.run(&["show", &ids[0], "--as-of", "2h"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let out = ws.run(&["show", "--as-of", "yesterday-ish"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("accepted"), "{}", stderr(&out));
    // Through the wire too: an as-of selector.
    let listed = ws.json(&["list", "--as-of", "1h", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 0);
}

/// The newest snapshot at the time is damaged: refused (6), naming the
/// older one that is whole; nothing restored.
#[test]
fn restore_as_of_a_damaged_snapshot_names_an_older_whole_one() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS v FROM range(1000)",
    );
    let old = ws.snapshot()["id"].as_str().unwrap().to_string();
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch("INSERT INTO t SELECT range FROM range(5000, 90000); CHECKPOINT")
        .unwrap();
    drop(c);
    let new = ws.snapshot()["id"].as_str().unwrap().to_string();
    // Remove a chunk only the newer snapshot names.
    let m_old = ws.manifest(&old);
    let m_new = ws.manifest(&new);
    let old_chunks: std::collections::HashSet<&str> = m_old.chunk_hashes().collect();
    let only_new = m_new
        .chunk_hashes()
        .find(|h| !old_chunks.contains(h))
        .unwrap();
    let path = ws.store().chunk_path(only_new);
    std::fs::remove_file(path).unwrap();
    let to = ws.path().join("x.duckdb");
    let out = ws.run(&[
        "restore",
        "--as-of",
        "now",
        "--to",
        to.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(code(&out), Some(6), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&new) && e.contains(&old) && e.contains("is whole"),
        "{e}"
    );
    assert!(!to.exists());
}

fn sql(ws: &Workspace, q: &str) {
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch(q).unwrap();
}

fn snap(ws: &Workspace) -> String {
    ws.snapshot()["id"].as_str().unwrap().to_string()
}

fn table<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no {name} in {d}"))
}

/// Schema changes, multisets without a key (duplicates counted), the
/// identical fast path, and a hostile table name that is only "no such
/// table".
#[test]
fn diff_reports_schema_changes_and_rows_without_a_key() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(
        &ws.db(),
        "CREATE TABLE dup(k INTEGER, v VARCHAR);
         INSERT INTO dup VALUES (1, 'a'), (1, 'a'), (1, 'a'), (2, 'b');
         CREATE TABLE gone AS SELECT 1 AS x;
         CREATE TABLE retyped(c INTEGER); INSERT INTO retyped VALUES (7);
         CREATE TABLE grows(c INTEGER); INSERT INTO grows VALUES (1);
         CREATE TABLE same AS SELECT range AS i FROM range(100);",
    );
    let a = snap(&ws);
    sql(
        &ws,
        "DELETE FROM dup WHERE rowid = (SELECT min(rowid) FROM dup WHERE k = 1);
         INSERT INTO dup VALUES (3, 'c'), (3, 'c');
         DROP TABLE gone;
         ALTER TABLE retyped ALTER c TYPE BIGINT;
         ALTER TABLE grows ADD COLUMN note VARCHAR;
         CREATE VIEW v AS SELECT * FROM same;",
    );
    let b = snap(&ws);
    let d = ws.json(&["diff", &a, &b, "--json"]);
    assert_eq!(d["identical"], false);
    assert_eq!(table(&d, "gone")["status"], "removed");
    assert_eq!(table(&d, "v")["status"], "added");
    assert_eq!(table(&d, "v")["view"], true);
    assert_eq!(table(&d, "same")["status"], "unchanged");
    let r = &table(&d, "retyped")["columns_retyped"][0];
    assert_eq!(
        (
            r["name"].as_str(),
            r["before"].as_str(),
            r["after"].as_str()
        ),
        (Some("c"), Some("INTEGER"), Some("BIGINT"))
    );
    assert_eq!(table(&d, "grows")["columns_added"][0]["name"], "note");
    let dup = table(&d, "dup");
    assert_eq!(
        (dup["rows_before"].as_u64(), dup["rows_after"].as_u64()),
        (Some(4), Some(5))
    );

    let d = ws.json(&["diff", &a, &b, "--table", "dup", "--json"]);
    let rows = &d["rows"];
    assert_eq!(rows["key"], serde_json::json!([]));
    assert_eq!(
        (rows["removed"].as_u64(), rows["added"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(rows["changed"].is_null());
    assert_eq!(rows["removed_rows"], serde_json::json!([["1", "a"]]));
    assert_eq!(
        rows["added_rows"],
        serde_json::json!([["3", "c"], ["3", "c"]])
    );
    // Retyped columns are compared as text: 7 is still 7.
    let d = ws.json(&["diff", &a, &b, "--table", "retyped", "--json"]);
    assert_eq!(
        (d["rows"]["removed"].as_u64(), d["rows"]["added"].as_u64()),
        (Some(0), Some(0))
    );

    // The same state twice: "no changes" from the manifests alone.
    let d = ws.json(&["diff", &b, "live", "--json"]);
    assert_eq!(d["identical"], true, "{d}");
    assert_eq!(
        d["b"]["id"],
        b.as_str(),
        "live equals the newest snapshot: reused"
    );
    let out = ws.run(&["diff", &b, &b]);
    assert!(stdout(&out).contains("no changes"), "{}", stdout(&out));

    // Hostile names reach no SQL; the tables are untouched.
    for bad in [
        "x\"; DROP TABLE same; --",
        "same; DROP TABLE dup",
        "main.nope",
    ] {
        let out = ws.run(&["diff", &a, &b, "--table", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("no such table"), "{}", stderr(&out));
        let out = ws.run(&["diff", &a, &b, "--table", "dup", "--key", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("no such column"), "{}", stderr(&out));
    }
    assert_eq!(
        query_i64(&open_ro(&ws.db()), "SELECT count(*) FROM same"),
        100
    );
    // A key that is not unique is refused, not joined into nonsense.
    let out = ws.run(&["diff", &a, &b, "--table", "dup", "--key", "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not unique"), "{}", stderr(&out));
    let scratch = ws.store_dir().join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch left behind"
    );
}

/// A snapshot taken while the app holds the database with rows only in its
/// WAL: the diff sees them (replayed in memory), and the store's files are
/// not touched. A file written in storage version 64 (DuckDB 1.x format)
/// against the same data written by 2.0: no content change.
#[test]
fn diff_reads_a_wal_and_an_older_storage_version() {
    let ws = Workspace::new();
    ws.write_config("");
    // Storage version 64, as DuckDB 1.0–1.1 write it.
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "ATTACH '{}' AS v (STORAGE_VERSION 'v1.0.0');
         CREATE TABLE v.t AS SELECT range AS id, 'row ' || range AS s FROM range(5000);
         DETACH v;",
        ws.db().display()
    ))
    .unwrap();
    drop(c);
    let old = snap(&ws);
    assert_eq!(ws.manifest(&old).database.storage_version, 64);
    // The same rows in a file 2.0 writes in its own version.
    let fresh = ws.path().join("fresh.duckdb");
    make_db(
        &fresh,
        &format!(
            "ATTACH '{}' AS o (READ_ONLY); CREATE TABLE t AS SELECT * FROM o.t ORDER BY id DESC; DETACH o;",
            ws.db().display()
        ),
    );
    std::fs::rename(&fresh, ws.db()).unwrap();
    let new = snap(&ws);
    let d = ws.json(&["diff", &old, &new, "--json"]);
    assert_eq!(d["identical"], false);
    assert_eq!(table(&d, "t")["status"], "unchanged", "{d}");

    // The app holds the database; its last rows are only in the WAL.
    let app = duckdb::Connection::open(ws.db()).unwrap();
    app.execute_batch("SET wal_autocheckpoint = '1GB'; INSERT INTO t VALUES (-1, 'in the wal'); UPDATE t SET s = 'changed' WHERE id = 7;").unwrap();
    let with_wal = snap(&ws);
    assert!(
        ws.manifest(&with_wal).files.iter().any(|f| f.role == "wal"),
        "the capture holds a WAL"
    );
    let before = tree_digest(&ws.store_dir().join("chunks"));
    let d = ws.json(&[
        "diff", &new, &with_wal, "--table", "t", "--key", "id", "--json",
    ]);
    let rows = &d["rows"];
    assert_eq!(
        (
            rows["added"].as_u64(),
            rows["removed"].as_u64(),
            rows["changed"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{d}"
    );
    assert_eq!(
        rows["added_rows"],
        serde_json::json!([["-1", "in the wal"]])
    );
    assert_eq!(
        rows["changed_rows"][0]["after"],
        serde_json::json!(["7", "changed"])
    );
    assert_eq!(
        before,
        tree_digest(&ws.store_dir().join("chunks")),
        "chunks untouched"
    );
    drop(app);
}

/// A million rows, ~1% changed: exact counts, `--limit` respected, and the
/// diff's peak memory (printed; bounded by DuckDB's memory limit).
#[test]
fn diff_of_a_million_rows_is_exact_and_bounded() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(
        &ws.db(),
        "CREATE TABLE big(id BIGINT PRIMARY KEY, s VARCHAR, x DOUBLE);
         INSERT INTO big SELECT range, md5(range::VARCHAR), range * 0.5 FROM range(1000000);
         CREATE TABLE plain AS FROM big;",
    );
    let a = snap(&ws);
    sql(
        &ws,
        "UPDATE big SET x = x + 1 WHERE id BETWEEN 100000 AND 104999;
         DELETE FROM big WHERE id BETWEEN 500000 AND 502999;
         INSERT INTO big SELECT range, 'new', 0 FROM range(2000000, 2002000);
         UPDATE plain SET x = x + 1 WHERE id BETWEEN 100000 AND 104999;
         DELETE FROM plain WHERE id BETWEEN 500000 AND 502999;
         INSERT INTO plain SELECT range, 'new', 0 FROM range(2000000, 2002000);",
    );
    let b = snap(&ws);
    let bin = env!("CARGO_BIN_EXE_ducksnap");
    let code = "import json, resource, subprocess, sys\n\
        out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n\
        assert out.returncode == 0, out.stderr\n\
        print(json.dumps({'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'report': json.loads(out.stdout)}))";
    let cfg = ws.config_path();
    let args = [
        bin,
        "--config",
        cfg.to_str().unwrap(),
        "diff",
        &a,
        &b,
        "--table",
        "big",
        "--limit",
        "7",
        "--json",
    ];
    let v: Value = serde_json::from_str(&run_python(code, &args)).unwrap();
    let rows = &v["report"]["rows"];
    assert_eq!(
        rows["key"],
        serde_json::json!(["id"]),
        "the primary key is used"
    );
    assert_eq!(
        (
            rows["changed"].as_u64(),
            rows["removed"].as_u64(),
            rows["added"].as_u64()
        ),
        (Some(5000), Some(3000), Some(2000))
    );
    for k in ["changed_rows", "removed_rows", "added_rows"] {
        assert_eq!(rows[k].as_array().unwrap().len(), 7, "{k}");
    }
    assert_eq!(rows["removed_rows"][0][0], "500000", "ordered");
    let peak = v["peak_kib"].as_u64().unwrap();
    println!(
        "diff of 1,000,000 rows (1% changed): peak RSS {} MiB",
        peak / 1024
    );
    // DuckDB's memory limit is 2 GB (compare::MEMORY_LIMIT); a million
    // rows need a fraction of it: the whole process stays under 900 MiB.
    assert!(peak < 900 * 1024, "peak RSS {peak} KiB");
    // Only the changed ranges were compared (the key and the rows agree).
    let n = &rows["narrowing"];
    assert!(n["ranges"].as_u64().unwrap() >= 488, "{n}");
    assert!(n["ranges_differing"].as_u64().unwrap() <= 8, "{n}");

    // The same changes without a key: multisets, an updated row being one
    // removed and one added.
    let d = ws.json(&["diff", &a, &b, "--table", "plain", "--json"]);
    let rows = &d["rows"];
    assert_eq!(rows["key"], serde_json::json!([]));
    assert_eq!(
        (rows["removed"].as_u64(), rows["added"].as_u64()),
        (Some(5000 + 3000), Some(5000 + 2000)),
        "{}",
        rows["narrowing"]
    );
    assert!(rows["narrowing"]["ranges_differing"].as_u64().unwrap() <= 8);
}

/// Tries to make the narrowing to differing ranges hide a change: values
/// swapped between rows of one range, a row deleted and re-inserted
/// unchanged (it moves to a new range), one of three duplicates deleted and
/// re-added elsewhere, NULL against '' and -0.0 against 0.0, the first and
/// last rows of ranges, changes scattered over many ranges or over all of
/// them, a table rebuilt
/// in another order (every range differs: compared whole), and a column
/// named `rowid` (not narrowed). Every count must be the multiset truth,
/// which the test computes with DuckDB's own EXCEPT ALL on the two files.
#[test]
fn diff_narrowing_never_hides_a_change() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS id, 'v' || (range % 1000) AS s, NULL::VARCHAR AS n, 0.0::DOUBLE AS z FROM range(50000);
         CREATE TABLE moved AS FROM t;
         CREATE TABLE sc AS SELECT range AS id, range AS v FROM range(400000);
         CREATE TABLE every AS SELECT range AS id, range AS v FROM range(100000);
         CREATE TABLE r(rowid INTEGER, v VARCHAR);
         INSERT INTO r SELECT range, 'x' FROM range(10000);",
    );
    let a = snap(&ws);
    let before = ws.path().join("before.duckdb");
    std::fs::copy(ws.db(), &before).unwrap();
    sql(
        &ws,
        "UPDATE t SET s = CASE id WHEN 10 THEN 'v11' WHEN 11 THEN 'v10' END WHERE id IN (10, 11);
         DELETE FROM t WHERE id = 3000; INSERT INTO t VALUES (3000, 'v0', NULL, 0.0);
         DELETE FROM t WHERE id = 7001; INSERT INTO t VALUES (1, 'v1', NULL, 0.0);
         UPDATE t SET n = '' WHERE id = 20000;
         UPDATE t SET z = -0.0 WHERE id = 30000;
         UPDATE t SET s = 'last of a range' WHERE id = 12287;
         UPDATE t SET s = 'first of a range' WHERE id = 6144;
         CREATE OR REPLACE TABLE moved AS SELECT * FROM moved WHERE id <> 5 ORDER BY hash(id);
         UPDATE r SET v = 'y' WHERE rowid = 5;
         UPDATE sc SET v = -v WHERE id % 4096 = 100 AND id < 140 * 2048;
         UPDATE every SET v = -v WHERE id % 1000 = 999;
         DELETE FROM every WHERE id % 1000 = 500;",
    );
    let b = snap(&ws);
    let truth = |table: &str| except_all(&before, &ws.db(), table);
    // sc: one row in every other range, 70 runs: more than are given to
    // DuckDB as row-id filters, so read by a join with the ranges.
    // every: one row in 1000 changed and one deleted — every range
    // differs, the rows are paired by row id.
    for (table, narrowed) in [
        ("t", true),
        ("moved", true),
        ("r", false),
        ("sc", true),
        ("every", true),
    ] {
        let d = ws.json(&["diff", &a, &b, "--table", table, "--json"]);
        let rows = &d["rows"];
        let got = (
            rows["removed"].as_i64().unwrap(),
            rows["added"].as_i64().unwrap(),
        );
        assert_eq!(got, truth(table), "{table}: {rows}");
        assert_eq!(!rows["narrowing"].is_null(), narrowed, "{table}: {rows}");
    }
    // t: the swap is 2 removed + 2 added, the re-inserted 3000 nothing,
    // 7001 removed and a second copy of row 1 added, NULL → '' one each
    // way; -0.0 equals 0.0 in DuckDB (and so in EXCEPT ALL): nothing; the
    // rows at the edges of ranges (12287, 6144) one each way.
    assert_eq!(truth("t"), (6, 6));
    assert_eq!(truth("sc"), (70, 70));
    assert_eq!(truth("every"), (200, 100));
    let d = ws.json(&["diff", &a, &b, "--table", "every", "--json"]);
    let n = &d["rows"]["narrowing"];
    assert_eq!(n["ranges_differing"], n["ranges"], "{n}");
    assert_eq!(n["rows_compared"], 300, "{n}");
    let d = ws.json(&["diff", &a, &b, "--table", "moved", "--json"]);
    let n = &d["rows"]["narrowing"];
    assert!(
        n["ranges_differing"].as_u64().unwrap() * 2 > n["ranges"].as_u64().unwrap(),
        "rebuilt in another order: every range differs ({n})"
    );
    assert_eq!(n["rows_compared"], 2 * 50000 - 1, "compared whole: {n}");
    assert_eq!(d["rows"]["removed_rows"][0][0], "5");
}

/// `export`: a .duckdb file with the table's rows; refusals that leave
/// nothing behind (unknown id, existing file, the database itself, a
/// missing chunk); a crash's scratch leftovers removed at the next open.
#[test]
fn export_writes_a_table_and_refuses_bad_input() {
    let ws = Workspace::new();
    ws.write_config("");
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i FROM range(3000); CREATE SCHEMA s; CREATE TABLE s.t AS SELECT 1 AS one;",
    );
    let id = snap(&ws);
    let out = ws.path().join("t.duckdb");
    let r = ws.json(&["export", &id, "--table", "t", "--to", "t.duckdb", "--json"]);
    assert_eq!(
        (r["rows"].as_u64(), r["format"].as_str()),
        (Some(3000), Some("duckdb"))
    );
    assert_eq!(
        query_i64(&open_ro(&out), "SELECT sum(i) FROM t"),
        3000 * 2999 / 2
    );
    // `t` is in two schemas: unqualified, it is main's (as in DuckDB).
    let o = ws.run(&["export", &id, "--table", "s.t", "--to", "s.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("s.csv")).unwrap(),
        "one\n1\n"
    );
    for (args, code, words) in [
        (
            vec![
                "export",
                "20200101T000000Z-0000",
                "--table",
                "t",
                "--to",
                "a.csv",
            ],
            5,
            "no snapshot",
        ),
        (
            vec!["export", &id, "--table", "t", "--to", "t.duckdb"],
            2,
            "exists",
        ),
        (
            vec![
                "export",
                &id,
                "--table",
                "t",
                "--to",
                "data/app.duckdb",
                "--force",
            ],
            2,
            "configured database",
        ),
        (
            vec!["export", &id, "--table", "t", "--to", "t.parquet"],
            2,
            ".csv or .duckdb",
        ),
    ] {
        let o = ws.run(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(words), "{args:?}: {}", stderr(&o));
    }
    // A chunk gone: damaged (6), no file written, no scratch left.
    let m = ws.manifest(&id);
    let h = m.chunk_hashes().next().unwrap().to_string();
    std::fs::remove_file(ws.store().chunk_path(&h)).unwrap();
    let o = ws.run(&["export", &id, "--table", "t", "--to", "gone.csv"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(!ws.path().join("gone.csv").exists());
    let scratch = ws.store_dir().join("scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    // A crash's leftover (nobody holds its lock) goes at the next open; one
    // in use stays.
    let dead = scratch.join("diff-999999-0");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("a.duckdb"), b"partial").unwrap();
    let busy = ws.store().scratch("diff").unwrap();
    ws.json(&["list", "--json"]);
    assert!(!dead.exists(), "leftover removed");
    assert!(busy.dir().exists(), "a directory in use is left alone");

    // A link planted where scratch should be: the next open removes
    // nothing behind it, and an export refuses to write through it.
    drop(busy);
    std::fs::remove_dir_all(&scratch).unwrap();
    let elsewhere = ws.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("dir")).unwrap();
    std::fs::write(elsewhere.join("precious.txt"), b"keep").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &scratch).unwrap();
    let fresh = snap(&ws);
    assert!(
        elsewhere.join("precious.txt").exists(),
        "file behind the link kept"
    );
    assert!(
        elsewhere.join("dir").exists(),
        "directory behind the link kept"
    );
    let o = ws.run(&["export", &fresh, "--table", "t", "--to", "l.csv"]);
    assert_eq!(o.status.code(), Some(6), "store damaged: {}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert!(!ws.path().join("l.csv").exists());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 2);
}

/// DuckDB's own answer: rows of `table` in `x` that `y` lacks and the
/// reverse, by `EXCEPT ALL` on the two files.
fn except_all(before: &std::path::Path, after: &std::path::Path, table: &str) -> (i64, i64) {
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "ATTACH '{}' AS a (READ_ONLY); ATTACH '{}' AS b (READ_ONLY);",
        before.display(),
        after.display()
    ))
    .unwrap();
    let n = |x: &str, y: &str| {
        query_i64(
            &c,
            &format!("SELECT count(*) FROM (FROM {x}.{table} EXCEPT ALL FROM {y}.{table})"),
        )
    };
    (n("a", "b"), n("b", "a"))
}

/// DuckDB's integer hash (`MurmurHash64` in its `hash()`), and its inverse:
/// what lets anyone build rows whose hashes cancel.
fn murmur(mut x: u64) -> u64 {
    const C: u64 = 0xd6e8_feb8_6659_fd93;
    x ^= x >> 32;
    x = x.wrapping_mul(C);
    x ^= x >> 32;
    x = x.wrapping_mul(C);
    x ^ (x >> 32)
}

fn unmurmur(mut h: u64) -> u64 {
    const C: u64 = 0xd6e8_feb8_6659_fd93;
    // The inverse of C modulo 2^64, by Newton's iteration.
    let mut inv: u64 = C;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(C.wrapping_mul(inv)));
    }
    h ^= h >> 32;
    h = h.wrapping_mul(inv);
    h ^= h >> 32;
    h = h.wrapping_mul(inv);
    h ^ (h >> 32)
}

/// Changes that DuckDB's `hash()` cannot see — nested NULLs and empties,
/// lists regrouped, a crafted pair of integers whose hashes cancel in a
/// count, sum and XOR, a UNION value moved to another member — a view
/// redefined with the same row count, and
/// columns named like every word of ducksnap's SQL: every table's verdict
/// and rows equal DuckDB's own `EXCEPT ALL` on the two files, keyed and
/// keyless, at the table and the schema level.
#[test]
fn diff_is_exact_where_hashes_collide() {
    let (lo, hi) = (unmurmur(1 << 5), unmurmur(1 << 9));
    let (both, zero) = (unmurmur((1 << 5) | (1 << 9)), unmurmur(0));
    assert_eq!(murmur(lo), 1 << 5, "the inverse is right");
    let ws = Workspace::new();
    let hostile = "g, n, s, e, r, ra, rb, x, y, h, \"hash\", \"count\", \"sum\", \"list\", ducksnap_g, \"select\"";
    make_db(
        &ws.db(),
        &format!(
            "CREATE TABLE tags(labels VARCHAR[], id INT PRIMARY KEY);
             INSERT INTO tags VALUES ([], 1), (['a'], 2), ([NULL], 3), ([['x']]::VARCHAR[], 4);
             CREATE TABLE nest(v VARCHAR[][], st STRUCT(a INT, b VARCHAR), m MAP(VARCHAR, INT), id INT);
             INSERT INTO nest VALUES ([['a'], ['b']], {{'a': NULL, 'b': NULL}}, MAP {{}}, 1), ([[]], NULL, NULL, 2);
             CREATE TABLE uni(v UNION(a INT, b INT));
             INSERT INTO uni VALUES (union_value(a := 1)), (union_value(b := 2));
             CREATE TABLE crafted(v BIGINT);
             INSERT INTO crafted VALUES ({lo}), ({hi});
             CREATE TABLE base(id INT);
             INSERT INTO base VALUES (1), (2), (3);
             CREATE VIEW firsts AS SELECT id FROM base WHERE id < 3;
             CREATE TABLE words({});
             INSERT INTO words SELECT {} FROM range(5000);",
            hostile
                .split(", ")
                .map(|c| format!("{c} INT"))
                .collect::<Vec<_>>()
                .join(", "),
            hostile
                .split(", ")
                .map(|_| "range::INT")
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    let a = snap(&ws);
    let before = ws.path().join("before.duckdb");
    std::fs::copy(ws.db(), &before).unwrap();
    // The old fingerprint (count, sum and XOR of hash()) of `crafted` is
    // the same before and after: the attack is real.
    let fp = |c: &duckdb::Connection| -> String {
        c.query_row(
            "SELECT count(*)::VARCHAR || sum(hash(v)::HUGEINT)::VARCHAR || bit_xor(hash(v))::VARCHAR FROM crafted",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let old_fp = fp(&open_ro(&before));
    sql(
        &ws,
        &format!(
            "UPDATE tags SET labels = NULL WHERE id = 1;
             UPDATE tags SET labels = [] WHERE id = 3;
             UPDATE nest SET v = [['a', 'b']], st = NULL, m = NULL WHERE id = 1;
             UPDATE nest SET v = [NULL] WHERE id = 2;
             UPDATE crafted SET v = CASE v WHEN {lo} THEN {both} ELSE {zero} END;
             UPDATE uni SET v = union_value(b := 1) WHERE v.a = 1;
             CREATE OR REPLACE VIEW firsts AS SELECT id FROM base WHERE id > 1;
             UPDATE words SET g = -1 WHERE g = 4000;",
            lo = lo as i64,
            both = both as i64,
            zero = zero as i64,
        ),
    );
    assert_eq!(fp(&open_ro(&ws.db())), old_fp, "hashes cancel");
    let b = snap(&ws);
    let after = ws.db();
    let d = ws.json(&["diff", &a, &b, "--json"]);
    for name in ["tags", "nest", "crafted", "uni", "words", "firsts"] {
        let (removed, added) = except_all(&before, &after, name);
        assert!(removed + added > 0, "{name}: the change is real");
        assert_eq!(table(&d, name)["status"], "changed", "{name}: {d}");
    }
    assert_eq!(table(&d, "base")["status"], "unchanged", "{d}");
    for name in ["tags", "nest", "crafted", "uni", "words"] {
        let d = ws.json(&["diff", &a, &b, "--table", name, "--json"]);
        let rows = &d["rows"];
        let got = (
            rows["removed"].as_i64().unwrap(),
            rows["added"].as_i64().unwrap(),
        );
        if name == "tags" {
            // Keyed by its primary key: two rows changed, none added or removed.
            assert_eq!(got, (0, 0), "{rows}");
            assert_eq!(rows["changed"], 2, "{rows}");
        } else {
            assert_eq!(got, except_all(&before, &after, name), "{name}: {rows}");
        }
        assert_eq!(table(&d, name)["status"], "changed", "{name}: {d}");
    }
    // By a given key: every changed row found, none added or removed.
    for (name, key, changed) in [("nest", "id", 2), ("words", "select", 1)] {
        let d = ws.json(&["diff", &a, &b, "--table", name, "--key", key, "--json"]);
        let rows = &d["rows"];
        assert_eq!(
            (&rows["removed"], &rows["added"]),
            (&0.into(), &0.into()),
            "{rows}"
        );
        assert_eq!(rows["changed"], changed, "{name}: {rows}");
    }
    // The view: compared by definition and by rows, whole.
    let d = ws.json(&["diff", &a, &b, "--table", "firsts", "--json"]);
    let rows = &d["rows"];
    assert_eq!(
        (
            rows["removed"].as_i64().unwrap(),
            rows["added"].as_i64().unwrap()
        ),
        except_all(&before, &after, "firsts"),
        "{rows}"
    );
}
