//! ducksnap against what its users would otherwise use, on the same files in
//! the same run. Prints a Markdown table and writes JSON.
//!
//! ```sh
//! cargo bench --bench bench -- [--sizes 64,512] [--big] [--runs 3] [--rounds 10] [--json FILE] [--only a,b,c,d,e,f,g,h,i,j,k,l,m] [--continuous-secs 600]
//! ```
//!
//! Peers (each timed durably, fsync included where the tool does it): `cp` +
//! `sync FILE`, `restic` and `borg` (Debian packages `restic`, `borgbackup`;
//! borg with its default chunker and with `--chunker-params
//! fixed,262144,12288`), and Python `duckdb` `EXPORT DATABASE` (the
//! repository's `.venv`). A peer that is not installed is reported as
//! missing, not skipped silently. (h), offsite push against `rclone serve
//! s3`, is in `bench/offsite.rs`; (i), diff and export against doing it
//! by hand, in `bench/timetravel.rs`; (j), online snapshots with
//! `capture.incremental` on and off, in `bench/online.rs`; (k) and (l),
//! continuous archiving (markers and restoring a commit point; the cost
//! while the app commits), in `bench/continuous.rs`; (m), doctor and
//! rescue of a database whose WAL is damaged, in `bench/rescue.rs`. See
//! docs/BENCHMARKS.md.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "bench/continuous.rs"]
mod continuous;
#[path = "bench/offsite.rs"]
mod offsite;
#[path = "bench/online.rs"]
mod online;
#[path = "bench/rescue.rs"]
mod rescue;
#[path = "bench/timetravel.rs"]
mod timetravel;

const BIN: &str = env!("CARGO_BIN_EXE_ducksnap");

struct Args {
    sizes: Vec<u64>,
    runs: usize,
    rounds: usize,
    json: PathBuf,
    only: Option<Vec<String>>,
    /// (l): how long the app commits 100 transactions a second, each way.
    continuous_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![64, 512],
        runs: 3,
        rounds: 10,
        json: PathBuf::from("bench-results.json"),
        only: None,
        continuous_secs: 600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--sizes" => {
                a.sizes = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            "--big" => a.sizes.push(2048),
            "--runs" => a.runs = it.next().unwrap().parse().unwrap(),
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--json" => a.json = PathBuf::from(it.next().unwrap()),
            "--only" => a.only = Some(it.next().unwrap().split(',').map(String::from).collect()),
            "--continuous-secs" => a.continuous_secs = it.next().unwrap().parse().unwrap(),
            "--bench" => {} // passed by cargo bench
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn want(a: &Args, part: &str) -> bool {
    a.only.as_ref().is_none_or(|o| o.iter().any(|p| p == part))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    p.exists().then_some(p)
}

/// Runs a command, returns wall seconds; panics with its output on failure.
/// Writes every dirty page out first, so that no timed command pays for
/// another's writes (a freshly generated or updated database, a deleted
/// store): `sync FILE`, `syncfs` and fsync would otherwise charge them
/// unevenly.
fn settle() {
    nix::unistd::sync();
}

/// Runs `cmd` after [`settle`]; its wall time and output. Panics (with the
/// output) unless it succeeds.
fn run_timed(cmd: &mut Command) -> (f64, std::process::Output) {
    settle();
    let t = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    let s = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (s, out)
}

fn timed(cmd: &mut Command) -> f64 {
    run_timed(cmd).0
}

fn run_json(cmd: &mut Command) -> (f64, Value) {
    let (s, out) = run_timed(cmd);
    (s, serde_json::from_slice(&out.stdout).expect("json"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn du(p: &Path) -> u64 {
    let mut total = 0;
    if p.is_file() {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            total += du(&e.path());
        }
    }
    total
}

/// A workspace: database, ducksnap config and store, peer repositories.
struct Ws {
    dir: PathBuf,
}

/// Moves `path` into `<root>/trash` instead of deleting it: on a file system
/// without a journal (this machine's), ext4 skips every inode freed in the
/// last minute when it allocates a new one, so deleting a store of thousands
/// of chunk files right before a timed run would charge that run for it.
/// The trash is emptied when the bench ends.
fn discard(root: &Path, path: &Path) {
    if !path.exists() {
        return;
    }
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let trash = root.join("trash");
    std::fs::create_dir_all(&trash).unwrap();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::rename(path, trash.join(format!("{}-{n}", std::process::id()))).unwrap();
}

impl Ws {
    fn new(root: &Path, name: &str) -> Ws {
        let dir = root.join(name);
        discard(root, &dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let ws = Ws { dir };
        ws.config("[schedule]\nenabled = false\n");
        ws
    }
    fn db(&self) -> PathBuf {
        self.dir.join("data/app.duckdb")
    }
    /// The bench's config; continuous archiving (on by default) off, as
    /// the snapshot benchmarks were measured: (k) and (l) measure it.
    fn config(&self, extra: &str) {
        std::fs::write(
            self.dir.join("ducksnap.toml"),
            format!(
                "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups\"\n\
                 [socket]\npath = \"{}\"\n[retention]\nkeep_last = 1000\n[continuous]\nenabled = false\n{extra}",
                self.dir.join("ducksnap.sock").display()
            ),
        )
        .unwrap();
    }
    fn ducksnap(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .arg("--config")
            .arg(self.dir.join("ducksnap.toml"))
            .args(args);
        c
    }
    fn reset_store(&self) {
        discard(self.dir.parent().unwrap(), &self.dir.join("data/backups"));
    }
}

/// ducksnap / peer for each of `peers` that has a figure in `r` (time or
/// bytes, whichever `r` holds).
fn peer_ratios(r: &Value, peers: &[&str]) -> Value {
    let ours = r["ducksnap"].as_f64();
    let mut out = serde_json::Map::new();
    for &p in peers {
        if let (Some(x), Some(y)) = (ours, r[p].as_f64())
            && y > 0.0
        {
            out.insert(p.to_string(), json!(x / y));
        }
    }
    Value::Object(out)
}

fn rows_for(mb: u64) -> u64 {
    // ~ 23 bytes per row on disk for the events table (measured with DuckDB 2.0).
    mb * 1_000_000 / 23
}

fn generate(db: &Path, mb: u64) {
    let _ = std::fs::remove_file(db);
    let c = duckdb::Connection::open(db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE customers AS SELECT range AS id, 'customer ' || range AS name, range % 50 AS region FROM range(10000);
         CREATE TABLE events AS
         SELECT range AS id,
                TIMESTAMP '2024-01-01' + to_seconds(range) AS at,
                (hash(range) % 10000)::INTEGER AS customer,
                round(random() * 1000, 2) AS amount,
                md5(range::VARCHAR) AS token,
                CASE WHEN range % 7 = 0 THEN 'refund' ELSE 'sale' END AS kind
         FROM range({});
         CHECKPOINT;",
        rows_for(mb)
    ))
    .unwrap();
}

fn update(db: &Path, mb: u64, scattered: bool, round: u64) {
    let c = duckdb::Connection::open(db).unwrap();
    let n = rows_for(mb);
    let sql = if scattered {
        format!(
            "UPDATE events SET amount = amount + 1 WHERE id % 100 = {}",
            round % 100
        )
    } else {
        let start = (n / 100) * (round % 90);
        format!(
            "UPDATE events SET amount = amount + 1 WHERE id BETWEEN {start} AND {}",
            start + n / 100
        )
    };
    c.execute_batch(&format!("{sql}; CHECKPOINT;")).unwrap();
}

/// Runs `ours` and `cp` (a cp+sync) in the order `cp_first` says; callers
/// alternate it between runs, because on this virtual machine whoever
/// allocates fresh page-cache memory right after the other freed some can
/// pay for it. Returns (ours, cp).
fn side_by_side<T>(cp_first: bool, cp: impl FnOnce() -> f64, ours: impl FnOnce() -> T) -> (T, f64) {
    if cp_first {
        let c = cp();
        (ours(), c)
    } else {
        let o = ours();
        (o, cp())
    }
}

fn cp_sync(src: &Path, dst: &Path) -> f64 {
    let _ = std::fs::remove_file(dst);
    timed(Command::new("sh").arg("-c").arg(format!(
        "cp '{}' '{}' && sync '{}'",
        src.display(),
        dst.display(),
        dst.display()
    )))
}

fn restic(repo: &Path, db: &Path) -> f64 {
    if !repo.exists() {
        timed(
            Command::new("restic")
                .args(["init", "--repo"])
                .arg(repo)
                .env("RESTIC_PASSWORD", "bench"),
        );
    }
    timed(
        Command::new("restic")
            .args(["backup", "--quiet", "--repo"])
            .arg(repo)
            .arg(db)
            .env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_CACHE_DIR", repo.with_extension("cache")),
    )
}

fn borg(repo: &Path, db: &Path, fixed: bool, n: usize) -> f64 {
    if !repo.exists() {
        timed(
            Command::new("borg")
                .args(["init", "-e", "none"])
                .arg(repo)
                .env("BORG_BASE_DIR", repo.with_extension("base")),
        );
    }
    let mut c = Command::new("borg");
    c.arg("create")
        .env("BORG_BASE_DIR", repo.with_extension("base"));
    if fixed {
        c.args(["--chunker-params", "fixed,262144,12288"]);
    }
    c.arg(format!("{}::a{n}", repo.display())).arg(db);
    timed(&mut c)
}

fn export(db: &Path, out: &Path) -> Option<f64> {
    let py = python()?;
    let _ = std::fs::remove_dir_all(out);
    Some(timed(Command::new(py).arg("-c").arg(format!(
        "import duckdb,os; c=duckdb.connect('{}', read_only=True); c.execute(\"EXPORT DATABASE '{}' (FORMAT parquet)\"); os.sync()",
        db.display(),
        out.display()
    ))))
}

fn main() {
    let a = args();
    let root = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ducksnap-bench"));
    std::fs::create_dir_all(&root).unwrap();
    let (has_restic, has_borg) = (have("restic"), have("borg"));
    let mut results = BTreeMap::new();
    let mut md = String::new();
    md.push_str(&format!(
        "machine: {} cores, {}; restic: {has_restic}, borg: {has_borg}, python duckdb: {}\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c
                .lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[13..].trim().to_string()))
            .unwrap_or_default(),
        python().is_some()
    ));
    md.push_str("Peer cells: the peer's figure and, in parentheses, ducksnap / peer (time, or stored bytes for (c)).\n\n");
    md.push_str("| size | measure | ducksnap | cp+sync | restic | borg default | borg fixed | EXPORT DATABASE | ducksnap / cp |\n|---|---|---|---|---|---|---|---|---|\n");

    let main_table = ["a", "b", "c", "d"].iter().any(|p| want(&a, p));
    for &mb in a.sizes.iter().filter(|_| main_table) {
        let ws = Ws::new(&root, &format!("db{mb}"));
        generate(&ws.db(), mb);
        let size = std::fs::metadata(ws.db()).unwrap().len();
        eprintln!("== {mb} MB target: database {size} bytes");
        let mut r = json!({"database_bytes": size});

        if want(&a, "a") || want(&a, "b") || want(&a, "d") {
            let (mut snap, mut cp, mut rs, mut bd, mut bf, mut ex) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            let (mut inc, mut inc_cp, mut inc_new, mut inc_rs, mut inc_bd, mut inc_bf) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            let (mut rest, mut rest_cp) = (vec![], vec![]);
            for run in 0..a.runs {
                generate(&ws.db(), mb);
                ws.reset_store();
                let peers = ws.dir.join("peers");
                discard(ws.dir.parent().unwrap(), &peers);
                std::fs::create_dir_all(&peers).unwrap();
                let cp_first = run % 2 == 1;
                let ((t, _), c) = side_by_side(
                    cp_first,
                    || cp_sync(&ws.db(), &peers.join("copy.duckdb")),
                    || run_json(&mut ws.ducksnap(&["snapshot", "--json"])),
                );
                snap.push(t);
                cp.push(c);
                if has_restic {
                    rs.push(restic(&peers.join("restic"), &ws.db()));
                }
                if has_borg {
                    bd.push(borg(&peers.join("borg"), &ws.db(), false, 0));
                    bf.push(borg(&peers.join("borgf"), &ws.db(), true, 0));
                }
                if let Some(t) = export(&ws.db(), &peers.join("export")) {
                    ex.push(t);
                }
                // (b) incremental after ~1% of rows in one contiguous range.
                update(&ws.db(), mb, false, 7 + run as u64);
                let ((t, v), c) = side_by_side(
                    cp_first,
                    || cp_sync(&ws.db(), &peers.join("copy2.duckdb")),
                    || run_json(&mut ws.ducksnap(&["snapshot", "--json"])),
                );
                inc.push(t);
                inc_cp.push(c);
                inc_new.push(v["snapshot"]["bytes_new"].as_f64().unwrap());
                if has_restic {
                    inc_rs.push(restic(&peers.join("restic"), &ws.db()));
                }
                if has_borg {
                    inc_bd.push(borg(&peers.join("borg"), &ws.db(), false, 1));
                    inc_bf.push(borg(&peers.join("borgf"), &ws.db(), true, 1));
                }
                // (d) restore to a path.
                let id = v["snapshot"]["id"].as_str().unwrap().to_string();
                let to = peers.join("restored.duckdb");
                let _ = std::fs::remove_file(&to);
                let (t, c) = side_by_side(
                    cp_first,
                    || cp_sync(&peers.join("copy2.duckdb"), &peers.join("copy3.duckdb")),
                    || {
                        timed(&mut ws.ducksnap(&[
                            "restore",
                            &id,
                            "--to",
                            to.to_str().unwrap(),
                            "--yes",
                        ]))
                    },
                );
                rest.push(t);
                rest_cp.push(c);
            }
            let m = |v: &Vec<f64>| {
                if v.is_empty() {
                    Value::Null
                } else {
                    json!(median(v.clone()))
                }
            };
            r["first"] = json!({"ducksnap": m(&snap), "cp_sync": m(&cp), "restic": m(&rs), "borg_default": m(&bd), "borg_fixed": m(&bf), "export": m(&ex)});
            r["incremental"] = json!({"ducksnap": m(&inc), "bytes_new": m(&inc_new), "cp_sync": m(&inc_cp), "restic": m(&inc_rs), "borg_default": m(&inc_bd), "borg_fixed": m(&inc_bf)});
            r["restore"] = json!({"ducksnap": m(&rest), "cp": m(&rest_cp)});
            // Best of the runs (least disturbed) and every sample, for the
            // ratios against cp+sync.
            let best = |v: &Vec<f64>| {
                if v.is_empty() {
                    Value::Null
                } else {
                    json!(v.iter().cloned().fold(f64::INFINITY, f64::min))
                }
            };
            r["best"] = json!({
                "first": {"ducksnap": best(&snap), "cp_sync": best(&cp)},
                "incremental": {"ducksnap": best(&inc), "cp_sync": best(&inc_cp)},
                "restore": {"ducksnap": best(&rest), "cp": best(&rest_cp)},
            });
            r["samples"] = json!({
                "first": {"ducksnap": snap, "cp_sync": cp},
                "incremental": {"ducksnap": inc, "cp_sync": inc_cp},
                "restore": {"ducksnap": rest, "cp": rest_cp},
            });
            let f = |v: &Value| {
                v.as_f64()
                    .map(|x| format!("{x:.2} s"))
                    .unwrap_or_else(|| "n/a".into())
            };
            let ratio = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => format!("{:.2}×", x / y),
                _ => "n/a".into(),
            };
            // "median ratio (ratio of the best runs)".
            let both = |r: &Value, what: &str, peer: &str| {
                format!(
                    "{} (best {})",
                    ratio(&r[what]["ducksnap"], &r[what][peer]),
                    ratio(&r["best"][what]["ducksnap"], &r["best"][what][peer])
                )
            };
            // A peer's cell: its time and, in parentheses, ducksnap / peer.
            let vs = |r: &Value, peer: &str| {
                let x = &r[peer];
                if x.is_null() {
                    return "n/a".to_string();
                }
                format!("{} ({})", f(x), ratio(&r["ducksnap"], x))
            };
            r["ratios"] = json!({
                "first": peer_ratios(&r["first"], &["cp_sync", "restic", "borg_default", "borg_fixed", "export"]),
                "incremental": peer_ratios(&r["incremental"], &["cp_sync", "restic", "borg_default", "borg_fixed"]),
                "restore": peer_ratios(&r["restore"], &["cp"]),
            });
            let first = &r["first"];
            md.push_str(&format!(
                "| {mb} MB | (a) first snapshot | {} | {} | {} | {} | {} | {} | {} |\n",
                f(&first["ducksnap"]),
                f(&first["cp_sync"]),
                vs(first, "restic"),
                vs(first, "borg_default"),
                vs(first, "borg_fixed"),
                vs(first, "export"),
                both(&r, "first", "cp_sync")
            ));
            let inc = &r["incremental"];
            md.push_str(&format!(
                "| {mb} MB | (b) incremental, 1% contiguous (ducksnap stored {:.2}% of the db) | {} | {} | {} | {} | {} | | {} |\n",
                100.0 * inc["bytes_new"].as_f64().unwrap_or(0.0) / size as f64,
                f(&inc["ducksnap"]), f(&inc["cp_sync"]), vs(inc, "restic"), vs(inc, "borg_default"), vs(inc, "borg_fixed"), both(&r, "incremental", "cp_sync")
            ));
            let re = &r["restore"];
            md.push_str(&format!(
                "| {mb} MB | (d) restore to a path | {} | {} | | | | | {} |\n",
                f(&re["ducksnap"]),
                f(&re["cp"]),
                both(&r, "restore", "cp")
            ));
        }

        if want(&a, "c") {
            for scattered in [false, true] {
                let kind = if scattered { "scattered" } else { "local" };
                generate(&ws.db(), mb);
                ws.reset_store();
                let peers = ws.dir.join(format!("hist-{kind}"));
                discard(ws.dir.parent().unwrap(), &peers);
                std::fs::create_dir_all(&peers).unwrap();
                for round in 0..a.rounds {
                    update(&ws.db(), mb, scattered, round as u64);
                    run_json(&mut ws.ducksnap(&["snapshot", "--json"]));
                    if has_restic {
                        restic(&peers.join("restic"), &ws.db());
                    }
                    if has_borg {
                        borg(&peers.join("borg"), &ws.db(), false, round);
                        borg(&peers.join("borgf"), &ws.db(), true, round);
                    }
                }
                let store = du(&ws.dir.join("data/backups/chunks"))
                    + du(&ws.dir.join("data/backups/snapshots"));
                let full = size * a.rounds as u64;
                let mut h = json!({
                    "ducksnap": store, "ten_full_copies": full,
                    "restic": has_restic.then(|| du(&peers.join("restic"))),
                    "borg_default": has_borg.then(|| du(&peers.join("borg"))),
                    "borg_fixed": has_borg.then(|| du(&peers.join("borgf"))),
                });
                h["ratios"] = peer_ratios(
                    &h,
                    &["ten_full_copies", "restic", "borg_default", "borg_fixed"],
                );
                // A peer's cell: its size and, in parentheses, ducksnap / peer.
                let mbs = |peer: &str| match (h[peer].as_u64(), h["ratios"][peer].as_f64()) {
                    (Some(b), Some(q)) if peer != "ducksnap" => {
                        format!("{:.1} MB ({q:.2}×)", b as f64 / 1e6)
                    }
                    (Some(b), _) => format!("{:.1} MB", b as f64 / 1e6),
                    _ => "n/a".into(),
                };
                md.push_str(&format!(
                    "| {mb} MB | (c) {} rounds, {kind}: store size ({:.1}% of {} full copies) | {} | {} | {} | {} | {} | | |\n",
                    a.rounds, 100.0 * store as f64 / full as f64, a.rounds, mbs("ducksnap"), mbs("ten_full_copies"), mbs("restic"), mbs("borg_default"), mbs("borg_fixed")
                ));
                r[format!("history_{kind}")] = h;
            }
        }
        results.insert(format!("{mb}MB"), r);
    }

    if want(&a, "e") {
        let e = socket_vs_in_process(&root);
        md.push_str(&format!(
            "| 35 MB | (e) pre-delete snapshot, p50 / p95 of 100 | socket {:.1} / {:.1} ms | in-process {:.1} / {:.1} ms | | | | | {:.2}× |\n",
            e["socket_p50_ms"].as_f64().unwrap(), e["socket_p95_ms"].as_f64().unwrap(),
            e["inproc_p50_ms"].as_f64().unwrap(), e["inproc_p95_ms"].as_f64().unwrap(),
            e["socket_p50_ms"].as_f64().unwrap() / e["inproc_p50_ms"].as_f64().unwrap()
        ));
        results.insert("socket".into(), e);
    }
    if want(&a, "g") {
        for &mb in &a.sizes {
            let g = via_daemon(&root, mb, a.runs);
            for (key, what) in [
                ("first", "(a) first snapshot"),
                ("incremental", "(b) incremental"),
            ] {
                let x = &g[key];
                let v = |k: &str| x[k].as_f64().unwrap();
                let b = |k: &str| x["best"][k].as_f64().unwrap();
                md.push_str(&format!(
                    "| {mb} MB | (g) {what}, `ducksnap snapshot` served by a running daemon | {:.2} s | {:.2} s | | | | | {:.2}× (best {:.2}×) |\n",
                    v("ducksnap"),
                    v("cp_sync"),
                    v("ducksnap") / v("cp_sync"),
                    b("ducksnap") / b("cp_sync"),
                ));
            }
            results.insert(format!("{mb}MB_daemon"), g);
        }
    }
    if want(&a, "h") {
        let (h, rows) = offsite::run(&root, &a.sizes, a.runs, has_restic);
        md.push_str(&rows);
        if let Value::Object(h) = h {
            results.extend(h);
        }
    }
    if want(&a, "i") {
        for &mb in &a.sizes {
            let (i, rows) = timetravel::run(&root, mb, a.runs);
            md.push_str(&rows);
            results.insert(format!("{mb}MB_timetravel"), i);
        }
    }
    if want(&a, "j") {
        let py = python().expect(".venv/bin/python with duckdb (bash .ci/run creates it)");
        for &mb in &a.sizes {
            let (j, rows) = online::run(&root, mb, a.runs, &py);
            md.push_str(&rows);
            results.insert(format!("{mb}MB_online"), j);
        }
    }
    if want(&a, "k") {
        let py = python().expect(".venv/bin/python with duckdb (bash .ci/run creates it)");
        for &mb in &a.sizes {
            let (k, rows) = continuous::markers(&root, mb, a.runs, &py);
            md.push_str(&rows);
            results.insert(format!("{mb}MB_continuous"), k);
        }
    }
    if want(&a, "l") {
        let py = python().expect(".venv/bin/python with duckdb (bash .ci/run creates it)");
        let (k, rows) = continuous::load(&root, a.continuous_secs, &py);
        md.push_str(&rows);
        results.insert("continuous_load".into(), k);
    }
    if want(&a, "m") {
        let py = python().expect(".venv/bin/python with duckdb (bash .ci/run creates it)");
        for &mb in &a.sizes {
            let (m, rows) = rescue::run(&root, mb, (mb / 10).max(1), a.runs, &py);
            md.push_str(&rows);
            results.insert(format!("{mb}MB_rescue"), m);
        }
    }
    if want(&a, "f") {
        let f = idle_daemon(&root);
        md.push_str(&format!(
            "| - | (f) idle daemon, 60 s | CPU {} ms, peak RSS {} KiB, {} context switches | | | | | | |\n",
            f["cpu_ms"], f["peak_rss_kib"], f["context_switches"]
        ));
        results.insert("idle".into(), f);
    }

    println!("{md}");
    std::fs::write(&a.json, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
    eprintln!("wrote {}", a.json.display());
    let _ = std::fs::remove_dir_all(root.join("trash"));
}

fn start_daemon(ws: &Ws) -> std::process::Child {
    let sock = ws.dir.join("ducksnap.sock");
    let _ = std::fs::remove_file(&sock);
    let child = ws
        .ducksnap(&["daemon"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop(mut c: std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let _ = c.wait();
}

fn socket_vs_in_process(root: &Path) -> Value {
    let ws = Ws::new(root, "socket");
    generate(&ws.db(), 35);
    let daemon = start_daemon(&ws);
    let s = UnixStream::connect(ws.dir.join("ducksnap.sock")).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let env = ducksnap::config::HostEnv {
        vars: Default::default(),
        cwd: ws.dir.clone(),
    };
    let config = ducksnap::config::load(Some(&ws.dir.join("ducksnap.toml")), &env).unwrap();
    let detection =
        ducksnap::environment::detect(&env, &config.database.path, config.database.mode);
    let ctx = ducksnap::ops::Ctx { config, detection };
    // The same work as the daemon does: one kept DuckDB instance for checks.
    ducksnap::database::check::keep_instance();
    // Interleaved, so both see the same store and the same machine state.
    let (mut sock, mut inproc) = (vec![], vec![]);
    for i in 0..100 {
        let t = Instant::now();
        writeln!(
            w,
            "{}",
            json!({"op": "snapshot", "reason": "pre-delete", "label": format!("bench {i}")})
        )
        .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        sock.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(line.contains("\"ok\":true"), "{line}");

        let req = ducksnap::ops::SnapshotRequest {
            reason: "pre-delete".into(),
            label: Some(format!("bench {i} in-process")),
            pin: false,
            skip_unchanged: false,
            never_lock: false,
        };
        let t = Instant::now();
        ducksnap::ops::snapshot(&ctx, &req).unwrap();
        inproc.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop(daemon);
    json!({
        "socket_p50_ms": percentile(sock.clone(), 0.5), "socket_p95_ms": percentile(sock, 0.95),
        "inproc_p50_ms": percentile(inproc.clone(), 0.5), "inproc_p95_ms": percentile(inproc, 0.95),
    })
}

/// (a) and (b) again with the daemon running: the CLI's `snapshot` is then
/// served by the daemon (which keeps a DuckDB instance), as on a machine
/// where ducksnap runs as a service. A fresh workspace, store and daemon per
/// run, on a copy of one generated database.
fn via_daemon(root: &Path, mb: u64, runs: usize) -> Value {
    let base = Ws::new(root, &format!("daemon{mb}"));
    generate(&base.db(), mb);
    let (mut first, mut first_cp, mut inc, mut inc_cp) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let ws = Ws::new(root, &format!("daemon{mb}-{run}"));
        std::fs::copy(base.db(), ws.db()).unwrap();
        let peers = ws.dir.join("peers");
        std::fs::create_dir_all(&peers).unwrap();
        let daemon = start_daemon(&ws);
        let cp_first = run % 2 == 1;
        let pair = |snaps: &mut Vec<f64>, cps: &mut Vec<f64>, copy: &str| {
            let ((t, v), c) = side_by_side(
                cp_first,
                || cp_sync(&ws.db(), &peers.join(copy)),
                || run_json(&mut ws.ducksnap(&["snapshot", "--json"])),
            );
            assert!(v["snapshot"]["bytes_new"].as_u64().unwrap() > 0, "{v}");
            snaps.push(t);
            cps.push(c);
        };
        pair(&mut first, &mut first_cp, "copy.duckdb");
        update(&ws.db(), mb, false, 7 + run as u64);
        pair(&mut inc, &mut inc_cp, "copy2.duckdb");
        stop(daemon);
        discard(root, &ws.dir);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let part = |s: Vec<f64>, c: Vec<f64>| {
        json!({
            "ducksnap": median(s.clone()), "cp_sync": median(c.clone()),
            "best": {"ducksnap": best(&s), "cp_sync": best(&c)},
            "samples": {"ducksnap": s, "cp_sync": c},
        })
    };
    json!({"first": part(first, first_cp), "incremental": part(inc, inc_cp)})
}

fn proc_stat(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let task_switches: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
                .map(|s| {
                    s.lines()
                        .filter(|l| l.contains("ctxt_switches"))
                        .filter_map(|l| {
                            l.split_whitespace()
                                .nth(1)
                                .and_then(|v| v.parse::<u64>().ok())
                        })
                        .sum::<u64>()
                })
                .sum()
        })
        .unwrap_or(0);
    (ticks, get("VmHWM:"), task_switches)
}

fn idle_daemon(root: &Path) -> Value {
    let ws = Ws::new(root, "idle");
    ws.config("[schedule]\ncron = \"@hourly\"\n[watch]\nenabled = true\n");
    generate(&ws.db(), 8);
    let d = start_daemon(&ws);
    std::thread::sleep(Duration::from_secs(2));
    let (t0, _, c0) = proc_stat(d.id());
    std::thread::sleep(Duration::from_secs(60));
    let (t1, hwm, c1) = proc_stat(d.id());
    stop(d);
    let tick_ms = 1000 / 100; // USER_HZ
    json!({"cpu_ms": (t1 - t0) * tick_ms, "peak_rss_kib": hwm, "context_switches": c1 - c0, "seconds": 60})
}
