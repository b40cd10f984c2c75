//! (i) Time travel: `ducksnap diff` of two snapshots of one database with
//! ~1% of the `events` table changed in one contiguous range, and `ducksnap
//! export` of that table to CSV, against doing the same by hand — `restore
//! --to` both snapshots, then DuckDB's own `EXCEPT ALL` both ways (or
//! `COPY … TO`) in Python duckdb from the repository's `.venv`, fetching 20
//! rows of each kind as `diff` shows them. The by-hand export ends with
//! `os.sync()`, as ducksnap's export makes its file durable (the other
//! peers here are timed durably too).
//!
//! Two diffs are timed: `--table events` (rows compared whole, exactly the
//! by-hand `EXCEPT ALL`s) and `--table events --key id` (added, removed and
//! changed by key, which the by-hand script does not do). A third snapshot
//! C then changes 1% of the rows scattered (every 100th): every range of
//! row ids differs, so `diff B C --table events` compares the table whole —
//! the case the narrowing cannot help.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{Ws, median, python, timed, update};

/// The by-hand diff: restore both, EXCEPT ALL both ways, counts and 20 rows.
fn by_hand_diff(ws: &Ws, a: &str, b: &str, py: &Path) -> f64 {
    let dir = ws.dir.join("byhand");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (pa, pb) = (dir.join("a.duckdb"), dir.join("b.duckdb"));
    let restore = |id: &str, to: &Path| {
        timed(&mut ws.ducksnap(&["restore", id, "--to", to.to_str().unwrap(), "--yes"]))
    };
    let t = restore(a, &pa) + restore(b, &pb);
    t + timed(Command::new(py).arg("-c").arg(format!(
        "import duckdb\n\
         c = duckdb.connect()\n\
         c.execute(\"ATTACH '{}' AS a (READ_ONLY)\"); c.execute(\"ATTACH '{}' AS b (READ_ONLY)\")\n\
         for x, y in (('b', 'a'), ('a', 'b')):\n\
         \x20   c.execute(f'CREATE TEMP TABLE d_{{x}} AS SELECT * FROM {{x}}.events EXCEPT ALL SELECT * FROM {{y}}.events')\n\
         \x20   c.execute(f'SELECT count(*) FROM d_{{x}}').fetchall()\n\
         \x20   c.execute(f'SELECT * FROM d_{{x}} ORDER BY ALL LIMIT 20').fetchall()\n",
        pa.display(),
        pb.display()
    )))
}

/// The by-hand export: restore, then COPY the table to CSV.
fn by_hand_export(ws: &Ws, b: &str, py: &Path) -> f64 {
    let dir = ws.dir.join("byhand");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pb = dir.join("b.duckdb");
    let t = timed(&mut ws.ducksnap(&["restore", b, "--to", pb.to_str().unwrap(), "--yes"]));
    t + timed(Command::new(py).arg("-c").arg(format!(
        "import duckdb, os\n\
         c = duckdb.connect('{}', read_only=True)\n\
         c.execute(\"COPY events TO '{}' (FORMAT csv, HEADER)\")\n\
         os.sync()\n",
        pb.display(),
        dir.join("events.csv").display()
    )))
}

fn ours_export(ws: &Ws, b: &str) -> f64 {
    let out = ws.dir.join("ours-events.csv");
    let _ = std::fs::remove_file(&out);
    timed(&mut ws.ducksnap(&[
        "export",
        b,
        "--table",
        "events",
        "--to",
        out.to_str().unwrap(),
    ]))
}

/// Runs (i) at `mb`; the JSON results and the Markdown rows.
pub fn run(root: &Path, mb: u64, runs: usize) -> (Value, String) {
    let Some(py) = python() else {
        eprintln!("(i) skipped: no .venv/bin/python (bash .ci/run creates it)");
        return (Value::Null, String::new());
    };
    let ws = Ws::new(root, &format!("timetravel{mb}"));
    super::generate(&ws.db(), mb);
    let id = |ws: &Ws| {
        let (_, v) = super::run_json(&mut ws.ducksnap(&["snapshot", "--json"]));
        v["snapshot"]["id"].as_str().unwrap().to_string()
    };
    let a = id(&ws);
    update(&ws.db(), mb, false, 3);
    let b = id(&ws);
    update(&ws.db(), mb, true, 5);
    let c = id(&ws);
    let (mut whole, mut keyed, mut hand, mut exp, mut hand_exp) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut scattered, mut hand_scattered) = (vec![], vec![]);
    for _ in 0..runs {
        scattered.push(timed(
            &mut ws.ducksnap(&["diff", &b, &c, "--table", "events", "--json"]),
        ));
        hand_scattered.push(by_hand_diff(&ws, &b, &c, &py));
        whole.push(timed(
            &mut ws.ducksnap(&["diff", &a, &b, "--table", "events", "--json"]),
        ));
        keyed.push(timed(&mut ws.ducksnap(&[
            "diff", &a, &b, "--table", "events", "--key", "id", "--json",
        ])));
        hand.push(by_hand_diff(&ws, &a, &b, &py));
        exp.push(ours_export(&ws, &b));
        hand_exp.push(by_hand_export(&ws, &b, &py));
    }
    let r = json!({
        "database_bytes": std::fs::metadata(ws.db()).unwrap().len(),
        "diff_whole_rows": whole, "diff_by_key": keyed, "by_hand_diff": hand,
        "export_csv": exp, "by_hand_export": hand_exp,
        "diff_scattered_whole_rows": scattered, "by_hand_diff_scattered": hand_scattered,
    });
    let m = |k: &str| {
        median(
            r[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect(),
        )
    };
    let md = format!(
        "| {mb} MB | (i) `diff A B --table events` (1% of rows changed), rows compared whole | {:.2} s | | | | | by hand: {:.2} s | {:.2}× by hand |\n\
         | {mb} MB | (i) `diff A B --table events --key id` | {:.2} s | | | | | by hand (whole rows): {:.2} s | {:.2}× by hand |\n\
         | {mb} MB | (i) `export B --table events --to events.csv` | {:.2} s | | | | | by hand: {:.2} s | {:.2}× by hand |\n\
         | {mb} MB | (i) `diff B C --table events` (1% of rows changed, every 100th row), rows compared whole | {:.2} s | | | | | by hand: {:.2} s | {:.2}× by hand |\n",
        m("diff_whole_rows"),
        m("by_hand_diff"),
        m("diff_whole_rows") / m("by_hand_diff"),
        m("diff_by_key"),
        m("by_hand_diff"),
        m("diff_by_key") / m("by_hand_diff"),
        m("export_csv"),
        m("by_hand_export"),
        m("export_csv") / m("by_hand_export"),
        m("diff_scattered_whole_rows"),
        m("by_hand_diff_scattered"),
        m("diff_scattered_whole_rows") / m("by_hand_diff_scattered"),
    );
    (r, md)
}
