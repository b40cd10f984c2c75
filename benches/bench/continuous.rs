//! (k) Continuous archiving, side by side in one run, the app (a Python
//! process on PyPI's duckdb) holding the database read-write:
//! (a) a `pre-delete` request answered by a marker against a snapshot
//! asked of the same daemon (the capture a pre-delete request makes
//! without archiving), alternately, each after one small commit — the
//! app's socket round trip; (c) `restore --to` of a commit restore point against the
//! snapshot it replays onto; and (l), [`load`]: the app committing 100 small
//! transactions a second for a while with a daemon archiving and with one
//! that does not — the app's commit latency, the daemon's CPU time, the
//! archive's bytes against the WAL's.

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
/// archive, then with one that does (each on a fresh copy of a 64 MB
/// database and its own store).
pub fn load(root: &Path, secs: u64, python: &Path) -> (Value, String) {
    let mut out = serde_json::Map::new();
    for (name, extra) in [("off", ""), ("on", "[continuous]\nenabled = true\n")] {
        let ws = Ws::new(root, &format!("load-{name}"));
        generate(&ws.db(), 64);
        let cfg = config(&ws, "d.toml", "backups", "d.sock", extra);
        let d = Daemon::start(&ws, &cfg, &ws.dir.join("d.sock"), "d.log");
        std::thread::sleep(Duration::from_secs(5));
        let (t0, _, _) = proc_stat(d.0.id());
        let o = Command::new(python)
            .args([
                "-c",
                PACED,
                ws.db().to_str().unwrap(),
                &secs.to_string(),
                "100",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // What the last commits left to archive.
        std::thread::sleep(Duration::from_secs(2));
        let (t1, _, _) = proc_stat(d.0.id());
        drop(d);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let lat: Vec<f64> = v["latencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let wal = v["wal_bytes"].as_u64().unwrap();
        let archive = ws.dir.join("data/backups/archive");
        let segments = du(&archive.join("segments"));
        let pages = du(&archive.join("pages"));
        let records = du(&archive.join("generations"));
        out.insert(
            name.into(),
            json!({
                "commits": lat.len(),
                "p50_ms": median(lat.clone()) * 1000.0,
                "p99_ms": percentile(lat.clone(), 0.99) * 1000.0,
                "daemon_cpu_s": (t1 - t0) as f64 / 100.0,
                "wal_bytes": wal,
                "archive_segment_bytes": segments,
                "archive_page_bytes": pages,
                "archive_record_bytes": records,
            }),
        );
    }
    let (off, on) = (&out["off"], &out["on"]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let md = format!(
        "| 64 MB | (l) the app committing 100 small transactions/s for {secs} s: commit latency p50 / p99, daemon CPU | archiving: {:.2} / {:.2} ms, CPU {:.1} s; archive {:.0} KB for {:.0} KB of WAL | not archiving: {:.2} / {:.2} ms, CPU {:.1} s | p99 {:.3}× |\n",
        f(on, "p50_ms"),
        f(on, "p99_ms"),
        f(on, "daemon_cpu_s"),
        f(on, "archive_segment_bytes") / 1e3,
        f(on, "wal_bytes") / 1e3,
        f(off, "p50_ms"),
        f(off, "p99_ms"),
        f(off, "daemon_cpu_s"),
        f(on, "p99_ms") / f(off, "p99_ms"),
    );
    (Value::Object(out), md)
}
