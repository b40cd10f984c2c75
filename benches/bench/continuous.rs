//! (k) Continuous archiving, side by side in one run, the app (a Python
//! process on PyPI's duckdb) holding the database read-write:
//! (a) a `pre-delete` request answered by a marker against a snapshot
//! asked of the same daemon (the capture a pre-delete request makes
//! without archiving), alternately, each after one small commit — the
//! app's socket round trip; (c) `restore --to` of a commit restore point against the
//! snapshot it replays onto; and (l), [`load`]: the app committing 100 small
//! transactions a second for a while with a daemon archiving and with one
//! that does not, in alternating blocks — the app's commit latency, the
//! daemon's CPU time, the archive's bytes against the WAL's.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::online::App;
use super::{Ws, du, generate, median, percentile, proc_stat, run_timed};

/// A daemon on `config`, logging at the default level (the figures in
/// docs/BENCHMARKS.md were taken so; `online::Served` logs at debug),
/// stopped on drop.
struct Daemon(Child);

impl Daemon {
    fn start(ws: &Ws, config: &str, sock: &Path, log: &str) -> Daemon {
        let _ = std::fs::remove_file(sock);
        let child = Command::new(super::BIN)
            .current_dir(&ws.dir)
            .args(["--config", config, "daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(ws.dir.join(log)).unwrap())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            assert!(t.elapsed().as_secs() < 60, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// A `pre-delete` request on `sock`: the round trip and the answer.
fn pre_delete(sock: &Path) -> (f64, Value) {
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let t = Instant::now();
    writeln!(w, "{}", json!({"op": "snapshot", "reason": "pre-delete"})).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let took = t.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"], true, "{line}");
    (took, v["result"].clone())
}

fn config(ws: &Ws, name: &str, store: &str, sock: &str, extra: &str) -> String {
    let p = ws.dir.join(name);
    std::fs::write(
        &p,
        format!(
            "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/{store}\"\n\
             [schedule]\nenabled = false\n[retention]\nkeep_last = 1000\n[socket]\npath = \"{sock}\"\n{extra}"
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

/// A snapshot asked for on `sock` with reason `manual` (the daemon answers
/// a `pre-delete` request with a marker): the round trip.
fn full_snapshot(sock: &Path) -> f64 {
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let t = Instant::now();
    writeln!(w, "{}", json!({"op": "snapshot", "reason": "manual"})).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let took = t.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(v["result"]["snapshot"].is_object(), "a snapshot: {line}");
    took
}

/// (a) and (c) at `mb` MB. One daemon, archiving the WAL, asked
/// alternately for a `pre-delete` restore point (answered by a marker) and
/// for a snapshot (reason `manual`: the same capture a pre-delete request
/// makes without archiving; a second store would need the disk for
/// another copy and mirror of the database).
pub fn markers(root: &Path, mb: u64, runs: usize, python: &Path) -> (Value, String) {
    let ws = Ws::new(root, "continuous");
    generate(&ws.db(), mb);
    let on = config(
        &ws,
        "on.toml",
        "backups",
        "on.sock",
        "[continuous]\nenabled = true\n",
    );
    let on_sock = ws.dir.join("on.sock");
    let mut app = App::start(python, &ws.db());
    // No automatic checkpoint during the run: one WAL generation.
    app.run("SET checkpoint_threshold = '100GB'");
    app.run("CREATE TABLE IF NOT EXISTS notes (i BIGINT, v VARCHAR)");
    // The first snapshot (the first base) is taken before the timings.
    let d_on = Daemon::start(&ws, &on, &on_sock, "on.log");
    let t = Instant::now();
    let mut k = 0;
    loop {
        k += 1;
        app.run(&format!("INSERT INTO notes VALUES ({k}, 'warm')"));
        if pre_delete(&on_sock).1["marker"].is_object() {
            break;
        }
        assert!(t.elapsed().as_secs() < 1800, "no marker after 30 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }
    full_snapshot(&on_sock);
    let (mut marker, mut snap) = (Vec::new(), Vec::new());
    for r in 0..runs {
        k += 1;
        app.run(&format!(
            "INSERT INTO notes VALUES ({k}, 'before a delete')"
        ));
        let m = || {
            let (s, v) = pre_delete(&on_sock);
            assert!(v["marker"].is_object(), "a marker: {v}");
            s
        };
        if r % 2 == 0 {
            marker.push(m());
            snap.push(full_snapshot(&on_sock));
        } else {
            snap.push(full_snapshot(&on_sock));
            marker.push(m());
        }
    }
    // (c): the newest commit point, and the snapshot it replays onto.
    let mut c = Command::new(super::BIN);
    c.current_dir(&ws.dir)
        .args(["--config", &on, "list", "--commits", "--json"]);
    let listing: Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    let point = listing["points"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p["kind"] == "commit")
        .expect("a commit point")
        .clone();
    let (id, base) = (
        point["id"].as_str().unwrap().to_string(),
        point["base"].as_str().unwrap().to_string(),
    );
    drop(d_on);
    drop(app);
    let out = ws.dir.join("restored.duckdb");
    let restore = |what: &str| {
        let mut c = Command::new(super::BIN);
        c.current_dir(&ws.dir).args([
            "--config",
            &on,
            "restore",
            what,
            "--to",
            out.to_str().unwrap(),
            "--yes",
            "--force",
        ]);
        let (s, o) = run_timed(&mut c);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for side in ["", ".wal"] {
            let _ = std::fs::remove_file(format!("{}{side}", out.display()));
        }
        s
    };
    let (mut r_point, mut r_snap) = (Vec::new(), Vec::new());
    for r in 0..runs.min(3) {
        if r % 2 == 0 {
            r_point.push(restore(&id));
            r_snap.push(restore(&base));
        } else {
            r_snap.push(restore(&base));
            r_point.push(restore(&id));
        }
    }
    let size = std::fs::metadata(ws.db()).unwrap().len();
    let wal = point_wal(&ws, &on, &id);
    let ms = |v: f64| v * 1000.0;
    let mut md = String::new();
    md.push_str(&format!(
        "| {mb} MB | (k) pre-delete with continuous archiving: a marker vs a snapshot, through the socket, p50 / p95 of {runs} | marker {:.1} / {:.1} ms | snapshot {:.1} / {:.1} ms | {:.3}× |\n",
        ms(median(marker.clone())), ms(percentile(marker.clone(), 0.95)),
        ms(median(snap.clone())), ms(percentile(snap.clone(), 0.95)),
        median(marker.clone()) / median(snap.clone()),
    ));
    md.push_str(&format!(
        "| {mb} MB | (k) `restore --to` of a commit point ({:.1} KB of WAL replayed) vs of the snapshot it replays onto, median of {} | point {:.2} s | snapshot {:.2} s | {:.2}× |\n",
        wal as f64 / 1e3,
        r_point.len(),
        median(r_point.clone()),
        median(r_snap.clone()),
        median(r_point.clone()) / median(r_snap.clone()),
    ));
    let v = json!({
        "size_bytes": size,
        "marker_p50_s": median(marker.clone()), "marker_p95_s": percentile(marker.clone(), 0.95),
        "snapshot_p50_s": median(snap.clone()), "snapshot_p95_s": percentile(snap.clone(), 0.95),
        "restore_point_s": median(r_point.clone()), "restore_snapshot_s": median(r_snap.clone()),
        "point": id, "point_wal_bytes": wal,
        "samples": {"marker": marker, "snapshot": snap, "restore_point": r_point, "restore_snapshot": r_snap},
    });
    (v, md)
}

/// The archived WAL bytes point `id` replays (from `show --json`).
fn point_wal(ws: &Ws, config: &str, id: &str) -> u64 {
    let mut c = Command::new(super::BIN);
    c.current_dir(&ws.dir)
        .args(["--config", config, "show", id, "--json"]);
    let v: Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    v["point"]["wal_bytes"].as_u64().unwrap_or(0)
}

/// The app of (l): commits one small transaction every 1/rate s for `secs`
/// s, then prints its commit latencies.
const PACED: &str = r#"
import duckdb, os, sys, time, json
db, secs, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
c = duckdb.connect(db)
c.execute("SET checkpoint_threshold = '100GB'")
c.execute("CREATE TABLE IF NOT EXISTS paced (i BIGINT, v VARCHAR, ts DOUBLE)")
lat = []
t_end = time.time() + secs
i = 0
nxt = time.time()
while time.time() < t_end:
    t0 = time.perf_counter()
    c.execute("INSERT INTO paced VALUES (?, ?, ?)", [i, 'row %d' % i, time.time()])
    lat.append(time.perf_counter() - t0)
    i += 1
    nxt += 1.0 / rate
    d = nxt - time.time()
    if d > 0:
        time.sleep(d)
# The WAL before the close checkpoints it away: every byte the commits wrote.
print(json.dumps({"latencies": lat, "wal_bytes": os.path.getsize(db + ".wal")}))
"#;

/// (l): `secs` seconds of 100 commits/s with a daemon that does not
/// archive and `secs` with one that does, each on its own copy of a 64 MB
/// database and store, both daemons running throughout. The app runs in
/// blocks of at most 60 s, alternating `off`, `on`, `off`, … so that
/// whatever drifts on the machine over the run falls on both alike (one
/// 10-minute run after the other measured the drift as much as the
/// archiving); a few seconds of quiet after each block let the close's
/// checkpoint and the base snapshot it causes end before the next.
pub fn load(root: &Path, secs: u64, python: &Path) -> (Value, String) {
    let sides = [
        ("off", "[continuous]\nenabled = false\n"),
        ("on", "[continuous]\nenabled = true\n"),
    ];
    let mut ws = Vec::new();
    let mut daemons = Vec::new();
    for (name, extra) in sides {
        let w = Ws::new(root, &format!("load-{name}"));
        generate(&w.db(), 64);
        let cfg = config(&w, "d.toml", "backups", "d.sock", extra);
        daemons.push(Daemon::start(&w, &cfg, &w.dir.join("d.sock"), "d.log"));
        ws.push(w);
    }
    std::thread::sleep(Duration::from_secs(5));
    let cpu0: Vec<u64> = daemons.iter().map(|d| proc_stat(d.0.id()).0).collect();
    let block = secs.clamp(1, 60);
    let blocks = secs.div_ceil(block);
    let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut block_p99: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut wal = [0u64; 2];
    for _ in 0..blocks {
        for (i, w) in ws.iter().enumerate() {
            let o = Command::new(python)
                .args([
                    "-c",
                    PACED,
                    w.db().to_str().unwrap(),
                    &block.to_string(),
                    "100",
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            let l: Vec<f64> = v["latencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            block_p99[i].push(percentile(l.clone(), 0.99) * 1000.0);
            lat[i].extend(l);
            wal[i] += v["wal_bytes"].as_u64().unwrap();
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    let cpu1: Vec<u64> = daemons.iter().map(|d| proc_stat(d.0.id()).0).collect();
    drop(daemons);
    let mut out = serde_json::Map::new();
    for (i, (name, _)) in sides.iter().enumerate() {
        let archive = ws[i].dir.join("data/backups/archive");
        out.insert(
            (*name).into(),
            json!({
                "commits": lat[i].len(),
                "blocks": blocks,
                "block_secs": block,
                "p50_ms": median(lat[i].clone()) * 1000.0,
                "p99_ms": percentile(lat[i].clone(), 0.99) * 1000.0,
                "block_p99_ms": block_p99[i],
                "median_block_p99_ms": median(block_p99[i].clone()),
                "daemon_cpu_s": (cpu1[i] - cpu0[i]) as f64 / 100.0,
                "wal_bytes": wal[i],
                "archive_segment_bytes": du(&archive.join("segments")),
                "archive_page_bytes": du(&archive.join("pages")),
                "archive_record_bytes": du(&archive.join("generations")),
            }),
        );
    }
    let (off, on) = (&out["off"], &out["on"]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let md = format!(
        "| 64 MB | (l) the app committing 100 small transactions/s, {blocks} blocks of {block} s each way, alternating: commit latency p50 / p99 (median of the blocks' p99), daemon CPU | archiving: {:.2} / {:.2} ms ({:.2}), CPU {:.1} s; archive {:.0} KB (+ {:.0} KB pages, {:.0} KB records) for {:.0} KB of WAL | not archiving: {:.2} / {:.2} ms ({:.2}), CPU {:.1} s | p99 {:.3}× (blocks {:.3}×) |\n",
        f(on, "p50_ms"),
        f(on, "p99_ms"),
        f(on, "median_block_p99_ms"),
        f(on, "daemon_cpu_s"),
        f(on, "archive_segment_bytes") / 1e3,
        f(on, "archive_page_bytes") / 1e3,
        f(on, "archive_record_bytes") / 1e3,
        f(on, "wal_bytes") / 1e3,
        f(off, "p50_ms"),
        f(off, "p99_ms"),
        f(off, "median_block_p99_ms"),
        f(off, "daemon_cpu_s"),
        f(on, "p99_ms") / f(off, "p99_ms"),
        f(on, "median_block_p99_ms") / f(off, "median_block_p99_ms"),
    );
    (Value::Object(out), md)
}
