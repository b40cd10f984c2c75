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
