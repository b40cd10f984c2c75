//! What people read, pinned: the human output of `show`, `status`,
//! `prune --dry-run`, `diff` and `--help` from the real binary, compared
//! with `tests/it/testdata/golden/*.txt` after filtering what differs from
//! run to run (ids, times, ages, sizes, hashes, paths, pids). Run with
//! `DUCKSNAP_UPDATE_GOLDEN=1` in the environment to rewrite the files after
//! an intended change, and review the diff.

use std::collections::BTreeMap;
use std::path::Path;

use crate::helpers::*;

/// `text` with what varies between runs replaced by stable tokens: each
/// distinct snapshot id by `<ID1>`, `<ID2>`… in order of appearance.
fn filtered(text: &str, ws: &Workspace) -> String {
    let mut out = text.replace(&ws.path().display().to_string(), "<WS>");
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let id = regex::Regex::new(r"\d{8}T\d{6}Z-[0-9a-f]{4}").unwrap();
    for m in id.find_iter(&out.clone()) {
        let n = ids.len() + 1;
        ids.entry(m.as_str().to_string())
            .or_insert_with(|| format!("<ID{n}>"));
    }
    for (real, token) in &ids {
        out = out.replace(real.as_str(), token);
    }
    for (pattern, token) in [
        (
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( ?[+-]\d{2}:\d{2}| UTC|Z)?",
            "<TIME>",
        ),
        (
            r"(in )?\d+ (second|minute|hour|day|week)s?( ago)?|just now",
            "<AGE>",
        ),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)", "<SIZE>"),
        (r"\b[0-9a-f]{64}\b", "<HASH>"),
        (r"pid \d+|process \d+", "pid <PID>"),
        (r"\b\d+(\.\d+)?s\b", "<SECS>"),
        (r"\b\d+ ms\b", "<MS>"),
        (r"v\d+\.\d+\.\d+(-[a-z0-9.]+)?", "<VERSION>"),
    ] {
        out = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&out, token)
            .into_owned();
    }
    out
}

fn check_golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/testdata/golden")
        .join(name);
    if std::env::var_os("DUCKSNAP_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (DUCKSNAP_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        text,
        want,
        "{name} differs from {} (DUCKSNAP_UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// Runs `args` at 100 columns in UTC and checks the filtered stdout.
fn golden(ws: &Workspace, name: &str, args: &[&str]) {
    let out = ws
        .cmd(args)
        .env("COLUMNS", "100")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {}",
        stderr(&out)
    );
    check_golden(name, &filtered(&stdout(&out), ws));
}

#[test]
fn human_output_is_pinned() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR);
         INSERT INTO customers SELECT range, 'customer ' || range FROM range(100);
         CREATE TABLE orders AS SELECT range AS id, range % 100 AS customer_id FROM range(2000);",
    );
    let first = ws.run(&[
        "snapshot",
        "--reason",
        "pre-delete",
        "--label",
        "before deleting customer 7",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let c = duckdb::Connection::open(ws.db()).unwrap();
    c.execute_batch(
        "DELETE FROM orders WHERE customer_id = 7; DELETE FROM customers WHERE id = 7;
         ALTER TABLE customers ADD COLUMN city VARCHAR; CHECKPOINT;",
    )
    .unwrap();
    drop(c);
    ws.run(&["snapshot", "--label", "after"]);
    ws.run(&["pin", "latest"]);
    // `list` is pinned in `list.rs` from fixed entries: its column widths
    // follow the ages, which a slow run changes.
    golden(&ws, "show.txt", &["show", "latest:pre-delete", "--utc"]);
    golden(&ws, "status.txt", &["status", "--utc"]);
    golden(&ws, "prune-dry-run.txt", &["prune", "--dry-run"]);
    golden(&ws, "diff.txt", &["diff", "latest:pre-delete", "latest"]);
    golden(
        &ws,
        "diff-table.txt",
        &[
            "diff",
            "latest:pre-delete",
            "latest",
            "--table",
            "customers",
            "--limit",
            "3",
        ],
    );
    golden(&ws, "help.txt", &["--help"]);
}

/// The filter itself: what it hides and what it keeps.
#[test]
fn the_golden_filter_hides_only_what_varies() {
    let ws = Workspace::new();
    let text = format!(
        "20261206T123222Z-a5b9 2026-12-06 12:32:05 +01:00 (5 minutes ago) 3.0 GiB in {}/data pid 42\n\
         20261206T120501Z-77c0 then 20261206T123222Z-a5b9 again; verified yes; 14 columns\n",
        ws.path().display()
    );
    assert_eq!(
        filtered(&text, &ws),
        "<ID1> <TIME> (<AGE>) <SIZE> in <WS>/data pid <PID>\n<ID2> then <ID1> again; verified yes; 14 columns\n"
    );
}
