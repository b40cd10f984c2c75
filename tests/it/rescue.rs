//! `ducksnap rescue` on real damage, held against DuckDB's own verdicts and
//! the app's log of acknowledged commits: the torture app (PyPI's duckdb)
//! commits a seeded mix of transactions that all stay in the WAL, then its
//! files are damaged as crashes and mistakes damage them. For every case
//! the state rescue makes must equal the state DuckDB itself opens once the
//! WAL is cut where the first damaged entry begins, and that must be a
//! state the app logged; the files that were there must come back byte for
//! byte from the pre-rescue snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::daemon::{Daemon, set_config};
use crate::helpers::*;

fn wal_of(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.wal", db.display()))
}

/// Runs the torture app to completion with every commit left in the WAL
/// (`TORTURE_WAL_ONLY`); returns the log of acknowledged commits: seq ->
/// state.
fn workload(py: &Path, db: &Path, log: &Path, seed: u64, commits: u64) -> BTreeMap<u64, Value> {
    python_ok(
        Command::new(py)
            .arg(py_script("torture.py"))
            .arg(db)
            .arg(log)
            .arg(seed.to_string())
            .arg(commits.to_string())
            .env("TORTURE_WAL_ONLY", "1"),
    );
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["seq"].as_u64().unwrap(), v["state"].clone()))
        .collect()
}

/// One damaged case.
struct Case {
    kind: &'static str,
    ws: Workspace,
    db: Vec<u8>,
    wal: Vec<u8>,
    /// The WAL cut where the first damaged entry begins (`None`: no WAL):
    /// what DuckDB opens is the state rescue must make.
    cut: Option<Vec<u8>>,
    /// The doctor finding that names it.
    finding: &'static str,
    /// Where the damage is, as DuckDB's message names it.
    position: Option<u64>,
}

/// The frame (start of its size field) that holds byte `at`.
fn frame_of(wal: &[u8], at: usize) -> usize {
    bodies(wal)
        .into_iter()
        .map(|(s, _)| s - 16)
        .take_while(|f| *f <= at)
        .last()
        .unwrap()
}

/// Makes the cases of one app (`py`): bit flips in entry bodies and in
/// checksum fields, zeroed tails, truncation inside an entry, another
/// database's WAL, and the WAL of an earlier checkpoint iteration.
fn cases(py: &Path, per_kind: usize, seed: u64, kinds: &[&'static str]) -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.duckdb");
    let log = dir.path().join("a.jsonl");
    workload(py, &db, &log, seed, 40);
    let clean_db = std::fs::read(&db).unwrap();
    let clean_wal = std::fs::read(wal_of(&db)).unwrap();
    let frames = bodies(&clean_wal);
    // Another database's WAL, from the same app.
    let other = dir.path().join("b.duckdb");
    workload(py, &other, &dir.path().join("b.jsonl"), seed + 1, 30);
    let other_wal = std::fs::read(wal_of(&other)).unwrap();
    // An earlier iteration's WAL: the first WAL is kept aside, the app
    // checkpoints and closes, opens again and commits more (a new WAL, at
    // the next iteration); then the first WAL is put back.
    let older = dir.path().join("c.duckdb");
    let clog = dir.path().join("c.jsonl");
    workload(py, &older, &clog, seed + 2, 20);
    let first_wal = std::fs::read(wal_of(&older)).unwrap();
    python_ok(
        Command::new(py)
            .arg("-c")
            .arg("import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('CHECKPOINT'); c.close()")
            .arg(&older),
    );
    assert!(!wal_of(&older).exists(), "the checkpoint took the WAL in");
    workload(py, &older, &clog, seed + 3, 15);
    let older_db = std::fs::read(&older).unwrap();
    let older_wal = std::fs::read(wal_of(&older)).unwrap();

    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..per_kind * kinds.len() {
        let kind = kinds[i % kinds.len()];
        let ws = Workspace::new();
        let (mut d, mut w) = (clean_db.clone(), clean_wal.clone());
        let (cut, finding, position) = match kind {
            "bit flipped in an entry" => {
                let (s, e) = frames[1 + rng.below(frames.len() as u64 - 1) as usize];
                let at = s + rng.below((e - s) as u64) as usize;
                w[at] ^= 1 << rng.below(8);
                let f = s - 16;
                (Some(w[..f].to_vec()), "wal_bad_checksum", Some(s as u64))
            }
            "bit flipped in a checksum" => {
                let (s, _) = frames[1 + rng.below(frames.len() as u64 - 1) as usize];
                let at = s - 8 + rng.below(8) as usize;
                w[at] ^= 1 << rng.below(8);
                let f = s - 16;
                (Some(w[..f].to_vec()), "wal_bad_checksum", Some(s as u64))
            }
            "zeroed tail" => {
                let first = frames[1].0 - 16;
                let at = first + rng.below((w.len() - first) as u64) as usize;
                let n = w.len();
                w[at..n].fill(0);
                let f = frame_of(&clean_wal, at);
                (
                    Some(w[..f].to_vec()),
                    "wal_bad_checksum",
                    Some(f as u64 + 16),
                )
            }
            "truncated inside an entry" => {
                let (s, e) = frames[1 + rng.below(frames.len() as u64 - 1) as usize];
                let at = s - 15 + rng.below((e - s + 15) as u64) as usize;
                w.truncate(at);
                (Some(w[..s - 16].to_vec()), "wal_torn_tail", None)
            }
            "another database's WAL" => {
                w = other_wal.clone();
                (None, "wal_other_database", None)
            }
            "an earlier iteration's WAL" => {
                d = older_db.clone();
                w = first_wal.clone();
                let _ = &older_wal;
                (None, "wal_iteration", None)
            }
            other => panic!("no such kind {other}"),
        };
        std::fs::write(ws.db(), &d).unwrap();
        std::fs::write(wal_of(&ws.db()), &w).unwrap();
        out.push(Case {
            kind,
            ws,
            db: d,
            wal: w,
            cut,
            finding,
            position,
        });
    }
    out
}

/// Every case: doctor names it; rescue in place makes exactly the state
/// DuckDB opens with the WAL cut at the damage, which the app logged; the
/// pre-rescue snapshot gives the damaged files back byte for byte. Prints
/// the table of cases.
fn run_cases(py: &Path, cases: Vec<Case>) {
    let truth_dir = tempfile::tempdir().unwrap();
    // DuckDB's verdicts: on the damaged files, and on the cut copies.
    let mut truth_files = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let t = truth_dir.path().join(format!("t{i}.duckdb"));
        std::fs::write(&t, &c.db).unwrap();
        if let Some(w) = &c.cut {
            std::fs::write(wal_of(&t), w).unwrap();
        }
        truth_files.push(t);
    }
    let originals: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let o = truth_dir.path().join(format!("o{i}.duckdb"));
            std::fs::write(&o, &c.db).unwrap();
            std::fs::write(wal_of(&o), &c.wal).unwrap();
            o
        })
        .collect();
    let truth = digests(py, &truth_files);
    let verdicts = digests(py, &originals);
    // Each case on its own workspace, three at a time.
    let one = |i: usize, c: &Case| -> (bool, bool) {
        let what = format!("case {i} ({})", c.kind);
        let refused = verdicts[originals[i].to_str().unwrap()]["error"]
            .as_str()
            .map(String::from);
        // doctor names the cause, and the position DuckDB names.
        let out = c.ws.run(&["doctor", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", stderr(&out)));
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["finding"] == c.finding)
            .unwrap_or_else(|| panic!("{what}: no {} finding: {v:#}", c.finding));
        if let Some(p) = c.position {
            assert_eq!(f["position"], p, "{what}: {f}");
            let msg = refused.as_deref().unwrap_or_default();
            assert!(
                msg.contains(&format!("entry at byte position {p} ")),
                "{what}: DuckDB says {msg:?}, doctor {f}"
            );
        }
        // rescue, in place.
        let r = c.ws.run(&["rescue", "--yes", "--json"]);
        assert!(r.status.success(), "{what}: {}", stderr(&r));
        let got: Value = serde_json::from_slice(&r.stdout).unwrap();
        let healthy = got["source"] == "healthy";
        assert_eq!(
            healthy,
            refused.is_none(),
            "{what}: rescue says {got}, DuckDB {refused:?}"
        );
        if healthy {
            assert_eq!(
                std::fs::read(c.ws.db()).unwrap(),
                c.db,
                "{what}: db changed"
            );
            assert_eq!(
                std::fs::read(wal_of(&c.ws.db())).unwrap(),
                c.wal,
                "{what}: WAL changed"
            );
            assert!(
                c.ws.list_ids().is_empty(),
                "{what}: no snapshot for nothing"
            );
        } else {
            // The files that were there, byte for byte.
            let kept = got["pre_rescue"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {got}"));
            let back = c.ws.path().join("kept.duckdb");
            let r =
                c.ws.run(&["restore", kept, "--to", back.to_str().unwrap(), "--yes"]);
            assert!(r.status.success(), "{what}: {}", stderr(&r));
            assert_eq!(std::fs::read(&back).unwrap(), c.db, "{what}: kept db");
            assert_eq!(
                std::fs::read(wal_of(&back)).unwrap(),
                c.wal,
                "{what}: kept WAL"
            );
        }
        (refused.is_some(), healthy)
    };
    let outcomes: Vec<(bool, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|w| {
                let one = &one;
                let cases = &cases;
                s.spawn(move || {
                    (w..cases.len())
                        .step_by(3)
                        .map(|i| (i, one(i, &cases[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, (bool, bool))> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, o)| o).collect()
    });
    let mut table: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    let mut rescued_files = Vec::new();
    for (c, (refused, healthy)) in cases.iter().zip(&outcomes) {
        rescued_files.push(c.ws.db());
        let row = table.entry(c.kind).or_default();
        row[0] += 1;
        row[1] += u64::from(*refused);
        row[2] += u64::from(*healthy);
    }
    let rescued = digests(py, &rescued_files);
    for (i, c) in cases.iter().enumerate() {
        let what = format!("case {i} ({})", c.kind);
        let want = &truth[truth_files[i].to_str().unwrap()];
        assert!(
            want.get("error").is_none(),
            "{what}: DuckDB refuses the cut copy: {want}"
        );
        let got = &rescued[rescued_files[i].to_str().unwrap()];
        assert!(
            got.get("error").is_none(),
            "{what}: the rescued database does not open: {got}"
        );
        assert_eq!(
            got, want,
            "{what}: rescued state differs from DuckDB's cut copy"
        );
        let row = table.get_mut(c.kind).unwrap();
        row[3] += 1;
        row[4] += want["seq"].as_u64().unwrap_or(0);
    }
    println!(
        "{:<30} {:>5} {:>8} {:>8} {:>6} {:>12}",
        "damage", "cases", "refused", "healthy", "exact", "mean commits"
    );
    for (kind, [n, refused, healthy, exact, seqs]) in &table {
        println!(
            "{kind:<30} {n:>5} {refused:>8} {healthy:>8} {exact:>6} {:>12.1}",
            *seqs as f64 / *n as f64
        );
    }
    let total: u64 = table.values().map(|r| r[0]).sum();
    println!("{total} cases, every one exact");
}

const KINDS: [&str; 6] = [
    "bit flipped in an entry",
    "bit flipped in a checksum",
    "zeroed tail",
    "truncated inside an entry",
    "another database's WAL",
    "an earlier iteration's WAL",
];

#[test]
fn every_injected_damage_is_rescued_to_exactly_the_commits_before_it() {
    let py = python();
    run_cases(&py, cases(&py, 6, 5, &KINDS));
}

/// The acceptance run, which `.ci/run` runs with the other long tests:
/// 35 cases of each kind, 210 in all.
#[test]
#[ignore = "stress: 210 damage cases, about 3 minutes; run with --ignored"]
fn stress_two_hundred_injected_damages_are_rescued_exactly() {
    let py = python();
    run_cases(&py, cases(&py, 35, 13, &KINDS));
}

/// The same with an app on duckdb 1.4.4 — without the WAL-binding kinds:
/// its storage version's WAL header names no database and no iteration.
#[test]
fn every_injected_damage_is_rescued_on_duckdb_1_4() {
    let py = python14();
    run_cases(&py, cases(&py, 4, 9, &KINDS[..4]));
}

/// The daemon archived every commit; then a bit of an early WAL entry
/// flips. DuckDB refuses the WAL, whose intact commits end before the
/// damage; rescue (through the daemon) gives back every acknowledged
/// commit — the archive's copy past the damage, then the live entries
/// after it — and says which came from the archive.
#[test]
fn the_archive_gives_back_the_commits_past_the_damage() {
    let py = python();
    let ws = Workspace::new();
    set_config(
        &ws,
        "[continuous]\nenabled = true\n[schedule]\nenabled = false\n",
    );
    let log = ws.path().join("acked.jsonl");
    workload(&py, &ws.db(), &log, 21, 3);
    let mut d = Daemon::start(&ws, &[]);
    d.wait_event("archive.started", std::time::Duration::from_secs(30));
    let acked = workload(&py, &ws.db(), &log, 22, 60);
    // Archived up to the app's last commit: the listing's newest point
    // holds it.
    let (last, want) = acked.iter().last().map(|(s, v)| (*s, v.clone())).unwrap();
    let mut newest = None;
    for _ in 0..300 {
        let l = ws.json(&["list", "--commits", "--json"]);
        let p = l["points"].as_array().unwrap().last().cloned();
        if let Some(p) = p.filter(|p| p["kind"] == "commit") {
            let f = ws.path().join("newest.duckdb");
            let r = ws.run(&[
                "restore",
                p["id"].as_str().unwrap(),
                "--to",
                f.to_str().unwrap(),
                "--yes",
                "--force",
            ]);
            assert!(r.status.success(), "{}", stderr(&r));
            if digests(&py, std::slice::from_ref(&f))[f.to_str().unwrap()]["seq"] == last {
                newest = Some(p);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let newest = newest.expect("the archive reaches the app's last commit");
    // A bit flipped in an entry a quarter of the way in.
    let wal = std::fs::read(wal_of(&ws.db())).unwrap();
    let frames = bodies(&wal);
    let (s, e) = frames[frames.len() / 4];
    let mut damaged = wal.clone();
    damaged[(s + e) / 2] ^= 0x04;
    let db_before = std::fs::read(ws.db()).unwrap();
    std::fs::write(wal_of(&ws.db()), &damaged).unwrap();
    let cut = ws.path().join("cut.duckdb");
    std::fs::write(&cut, &db_before).unwrap();
    std::fs::write(wal_of(&cut), &damaged[..s - 16]).unwrap();
    let duckdb_alone = digests(&py, &[cut.clone(), ws.db()]);
    assert!(
        duckdb_alone[ws.db().to_str().unwrap()]
            .get("error")
            .is_some(),
        "DuckDB refuses it"
    );
    let before_damage = duckdb_alone[cut.to_str().unwrap()]["seq"].as_u64().unwrap();
    assert!(before_damage < last);

    let r = ws.run(&["rescue", "--yes", "--json"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let got: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(got["source"], "archive_and_live_wal", "{got:#}");
    assert!(got["from_archive"].as_u64().unwrap() > 0, "{got:#}");
    assert_eq!(got["first_bad"], s as u64, "{got:#}");
    assert!(
        got["last_commit_at"].is_string(),
        "the archive knows when: {got:#}"
    );
    let d2 = digests(&py, &[ws.db()]);
    let rescued = &d2[ws.db().to_str().unwrap()];
    assert_eq!(rescued["seq"], last, "every acknowledged commit: {rescued}");
    assert_eq!(rescued["state"], want);
    println!(
        "DuckDB alone opens nothing; its WAL cut at the damage holds commit {before_damage}; rescue holds {last} ({} from the archive; newest point {})",
        got["from_archive"], newest["id"]
    );
    // The damaged files are kept byte for byte.
    let kept = got["pre_rescue"].as_str().unwrap();
    let back = ws.path().join("kept.duckdb");
    let r = ws.run(&["restore", kept, "--to", back.to_str().unwrap(), "--yes"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read(wal_of(&back)).unwrap(), damaged);
    assert_eq!(std::fs::read(&back).unwrap(), db_before);
}

/// A database DuckDB opens: rescue says so and changes nothing, `--to`
/// included (nothing is written there).
#[test]
fn rescue_of_a_healthy_database_changes_nothing() {
    let py = python();
    let ws = Workspace::new();
    workload(&py, &ws.db(), &ws.path().join("l.jsonl"), 3, 20);
    let before = tree_digest(&ws.path().join("data"));
    let to = ws.path().join("elsewhere.duckdb");
    for args in [
        vec!["rescue", "--yes"],
        vec!["rescue", "--yes", "--to", to.to_str().unwrap()],
    ] {
        let r = ws.run(&args);
        assert!(r.status.success(), "{}", stderr(&r));
        assert!(
            stdout(&r).contains("nothing to rescue"),
            "{args:?}: {}",
            stdout(&r)
        );
    }
    assert!(!to.exists());
    let after: Vec<_> = tree_digest(&ws.path().join("data"))
        .into_iter()
        .filter(|(p, _)| !p.starts_with("backups"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with("backups"))
        .collect();
    assert_eq!(after, before, "the database's files are as they were");
    assert!(ws.list_ids().is_empty());
}

/// The database file itself unusable: something else at its path (rescue
/// in place refuses, exit 10, and writes nothing; `--to` gets the newest
/// snapshot), or no file at all (rescue in place restores the newest
/// snapshot). Each result is read by DuckDB and equals the snapshot's
/// state, which the app logged.
#[test]
fn a_database_file_that_cannot_be_used_is_rescued_from_the_newest_snapshot() {
    let py = python();
    let ws = Workspace::new();
    let acked = workload(&py, &ws.db(), &ws.path().join("l.jsonl"), 4, 12);
    let snap = ws.snapshot();
    let (last, want) = acked.iter().last().map(|(s, v)| (*s, v.clone())).unwrap();
    // Another file at the path.
    std::fs::write(ws.db(), b"not a database at all, just some bytes").unwrap();
    let r = ws.run(&["rescue", "--yes"]);
    assert_eq!(r.status.code(), Some(10), "{}", stderr(&r));
    assert!(stderr(&r).contains("move it away first"), "{}", stderr(&r));
    assert_eq!(
        std::fs::read(ws.db()).unwrap(),
        b"not a database at all, just some bytes"
    );
    let to = ws.path().join("copy.duckdb");
    let r = ws.run(&["rescue", "--yes", "--json", "--to", to.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    let got: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(got["source"], "restore_point", "{got}");
    assert_eq!(got["snapshot"], snap["id"], "{got}");
    // No file at all.
    std::fs::remove_file(ws.db()).unwrap();
    let _ = std::fs::remove_file(wal_of(&ws.db()));
    let r = ws.run(&["rescue", "--yes"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let d = digests(&py, &[to.clone(), ws.db()]);
    for f in [&to, &ws.db()] {
        let got = &d[f.to_str().unwrap()];
        assert_eq!(got["seq"], last, "{}: {got}", f.display());
        assert_eq!(got["state"], want);
    }
}

/// A real crash in the middle of a checkpoint (the app SIGKILLs itself 0 to
/// 400 ms after DuckDB began writing commits to `.wal.checkpoint`, three
/// times): doctor says DuckDB replays the `.wal.checkpoint` (the `.wal`
/// ends in its marker — measured: DuckDB writes the marker before it
/// creates the file), DuckDB opens a copy with every acknowledged commit,
/// and rescue leaves the files alone.
#[test]
fn a_crash_in_the_middle_of_a_checkpoint_loses_nothing_and_rescue_leaves_it() {
    let py = python();
    for delay in [0u32, 150, 400] {
        let ws = Workspace::new();
        let log = ws.path().join("acked.jsonl");
        let out = Command::new(&py)
            .arg(py_script("checkpoint_crash.py"))
            .arg(ws.db())
            .arg(&log)
            .arg(delay.to_string())
            .output()
            .unwrap();
        if out.status.code() == Some(3) {
            println!("delay {delay} ms: the checkpoint ended first; no crash inside it");
            continue;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ckpt = PathBuf::from(format!("{}.wal.checkpoint", ws.db().display()));
        assert!(ckpt.exists(), "delay {delay}: no .wal.checkpoint left");
        let acked = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
        let before = tree_digest(&ws.path().join("data"));
        let v = ws.json(&["doctor", "--json"]);
        let kinds: Vec<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["finding"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["checkpoint_wal_replayed"], "{v:#}");
        // DuckDB's own verdict, on a copy.
        let copy = ws.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for suffix in ["", ".wal", ".wal.checkpoint"] {
            std::fs::copy(
                format!("{}{suffix}", ws.db().display()),
                format!("{}/app.duckdb{suffix}", copy.display()),
            )
            .unwrap();
        }
        let got = run_python(
            "import duckdb, sys\nc = duckdb.connect(sys.argv[1], read_only=True)\nprint(*c.execute('SELECT count(*), max(k) FROM small').fetchone())",
            &[copy.join("app.duckdb").to_str().unwrap()],
        );
        let n: Vec<u64> = got.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(n[0], n[1], "one row per commit: {got}");
        // Every acknowledged commit, and at most the one that returned
        // but was not logged before the kill.
        assert!(
            n[0] == acked || n[0] == acked + 1,
            "DuckDB holds {got}, {acked} acknowledged"
        );
        let r = ws.run(&["rescue", "--yes"]);
        assert!(r.status.success(), "{}", stderr(&r));
        assert!(stdout(&r).contains("nothing to rescue"), "{}", stdout(&r));
        let after: Vec<_> = tree_digest(&ws.path().join("data"))
            .into_iter()
            .filter(|(p, _)| !p.starts_with("backups"))
            .collect();
        assert_eq!(after, before, "delay {delay}: the files are as they were");
        println!(
            "delay {delay} ms: {acked} acknowledged, DuckDB replays {}",
            n[0]
        );
    }
}
