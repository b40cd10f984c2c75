//! `list` for people: the table laid out to the terminal, checked against
//! golden files (`tests/it/testdata/list-*.txt`, rewritten by running the
//! test with `DUCKSNAP_UPDATE_GOLDEN=1` in its environment), and the real
//! binary at 80 columns.

use chrono::{TimeZone, Utc};
use ducksnap::cli::list::{GIVE_WAY, render};
use ducksnap::ops::ListEntry;
use serde_json::json;

use crate::helpers::*;

/// Five snapshots with every kind of cell: a pin until a date, a damaged
/// one, one not yet offsite, labels long and empty.
fn entries() -> Vec<ListEntry> {
    let t = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 12, 6, h, m, 5).unwrap();
    let e = |id: &str,
             at,
             reason: &str,
             label: Option<&str>,
             pin: Option<&str>,
             missing: usize,
             offsite: bool| {
        serde_json::from_value::<ListEntry>(json!({
            "id": id, "created_at": at, "reason": reason, "label": label,
            "pinned": pin.is_some(), "pinned_until": pin,
            "db_size": 3_221_225_472u64, "wal_size": 187_000, "bytes_new": 185,
            "verified": reason != "scheduled", "method": "online",
            "missing_chunks": missing, "offsite": offsite,
        }))
        .unwrap()
    };
    vec![
        e(
            "20261206T123222Z-a5b9",
            t(12, 32),
            "pre-restore",
            Some("before restoring 20261206T120501Z-77c0"),
            Some("2027-01-05T12:32:05Z"),
            0,
            false,
        ),
        e(
            "20261206T120501Z-77c0",
            t(12, 5),
            "pre-delete",
            Some("before deleting customer 42 and their 21 orders from the shop"),
            None,
            0,
            true,
        ),
        e(
            "20261206T110000Z-0c1d",
            t(11, 0),
            "scheduled",
            None,
            None,
            0,
            true,
        ),
        e(
            "20261206T100000Z-9e2f",
            t(10, 0),
            "manual",
            Some("nightly import"),
            None,
            3,
            true,
        ),
        e(
            "20261205T235959Z-1a2b",
            Utc.with_ymd_and_hms(2026, 12, 5, 23, 59, 59).unwrap(),
            "manual",
            Some("first"),
            Some("2099-12-31T00:00:00Z"),
            0,
            true,
        ),
    ]
}

/// At 80, 100, 120 columns and unlimited: the golden output; every line
/// fits; every id whole at the start of its line; the columns that are
/// there are a prefix-closed set of the give-way order (a column is gone
/// only if every column before it in that order is gone).
#[test]
fn list_fits_80_100_and_120_columns() {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 34, 0).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/testdata");
    let update = std::env::var_os("DUCKSNAP_UPDATE_GOLDEN").is_some();
    for width in [Some(80), Some(100), Some(120), None] {
        let lines = render(&entries(), true, now, width);
        let name = match width {
            Some(w) => format!("list-{w}.txt"),
            None => "list-pipe.txt".into(),
        };
        let text = lines.join("\n") + "\n";
        let golden = dir.join(&name);
        if update {
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(text, want, "{name} differs from the golden file");
        for line in &lines {
            let cols = line.chars().count();
            assert!(
                width.is_none_or(|w| cols <= w),
                "{name}: {cols} columns: {line}"
            );
        }
        for (line, e) in lines[1..].iter().zip(entries()) {
            assert!(
                line.starts_with(&format!("{}  ", e.summary.id)),
                "{name}: {line}"
            );
        }
        assert!(
            lines[1..].iter().filter(|l| l.contains("DAMAGED")).count() == 1,
            "{name}"
        );
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        for must in ["id", "age", "reason", "label"] {
            assert!(header.contains(&must), "{name}: {header:?}");
        }
        let gone: Vec<bool> = GIVE_WAY.iter().map(|c| !header.contains(c)).collect();
        for i in 1..gone.len() {
            assert!(
                !gone[i] || gone[i - 1],
                "{name}: {} gone before {}: {header:?}",
                GIVE_WAY[i],
                GIVE_WAY[i - 1]
            );
        }
    }
}

/// The real binary, told the width by `COLUMNS` as a terminal would: at 80
/// columns every line fits and every id `list --json` gives is whole on one
/// line.
#[test]
fn list_on_an_80_column_terminal() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(1000)",
    );
    ws.run(&[
        "snapshot",
        "--reason",
        "pre-delete",
        "--label",
        &"a long label ".repeat(8),
    ]);
    ws.run(&["snapshot", "--pin"]);
    let ids: Vec<String> = ws
        .json(&["list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let out = ws.cmd(&["list"]).env("COLUMNS", "80").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    for id in &ids {
        assert!(
            text.lines().any(|l| l.starts_with(id.as_str())),
            "{id} not whole on a line:\n{text}"
        );
    }
    // A pipe without COLUMNS gets every cell whole.
    let wide = stdout(&ws.cmd(&["list"]).output().unwrap());
    assert!(
        wide.contains(&"a long label ".repeat(3)) && wide.contains("verified"),
        "{wide}"
    );
}
