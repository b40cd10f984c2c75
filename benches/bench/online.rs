//! (j) Online snapshots while the app holds the database (a Python process
//! on PyPI's duckdb, as the Streamlit app does): the first snapshot, the
//! pre-delete snapshot of an unchanged database, and the snapshot after a
//! 1 % change and a checkpoint — with `capture.incremental` on and off (two
//! stores of the one database, taken alternately), and `cp`+`sync` of the
//! file, side by side in one run; then the same two snapshots served by two
//! running daemons (one per store), timed as the app's socket round trip.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{Ws, cp_sync, generate, median, rows_for, run_json, side_by_side};

/// The app: runs each line it is sent as SQL, answers `ok`.
pub(super) struct App(Child);

impl App {
    pub(super) fn start(python: &Path, db: &Path) -> App {
        let code = "import duckdb, sys\n\
            c = duckdb.connect(sys.argv[1])\n\
            print('ok', flush=True)\n\
            for line in sys.stdin:\n\
            \x20   c.execute(line)\n\
            \x20   print('ok', flush=True)\n";
        let mut child = Command::new(python)
            .args(["-c", code, db.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ok");
        App(child)
    }

    pub(super) fn run(&mut self, sql: &str) {
        writeln!(self.0.stdin.as_mut().unwrap(), "{sql}").unwrap();
        let mut line = String::new();
        let mut r = BufReader::new(self.0.stdout.as_mut().unwrap());
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "{sql}");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `snapshot --reason pre-delete` with `config`: seconds, and the bytes
/// it read when it was incremental (from its manifest).
fn snapshot(ws: &Ws, config: &str, store: &str) -> (f64, Option<u64>) {
    let mut c = Command::new(super::BIN);
    c.current_dir(&ws.dir).args([
        "--config",
        config,
        "snapshot",
        "--reason",
        "pre-delete",
        "--json",
    ]);
    let (s, v) = run_json(&mut c);
    (s, read_bytes(ws, store, &v["snapshot"]))
}

/// A `ducksnap daemon` on a config, answering on its socket; stopped on
/// drop.
struct Served(Child, PathBuf);

impl Served {
    fn start(ws: &Ws, config: &str, sock: PathBuf) -> Served {
        let _ = std::fs::remove_file(&sock);
        // Its log, with each snapshot's `snapshot.timing` (debug), is kept
        // beside the config for inspection.
        let log = std::fs::File::create(ws.dir.join(format!(
            "{}.log",
            sock.file_stem().unwrap().to_string_lossy()
        )))
        .unwrap();
        let child = Command::new(super::BIN)
            .current_dir(&ws.dir)
            .args(["--config", config, "daemon"])
            .env("DUCKSNAP_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(t.elapsed().as_secs() < 60, "daemon did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Served(child, sock)
    }

    /// One pre-delete snapshot asked for on the socket: the round trip in
    /// seconds, and the bytes read when it was incremental.
    fn snapshot(&self, ws: &Ws, store: &str) -> (f64, Option<u64>) {
        let s = std::os::unix::net::UnixStream::connect(&self.1).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let t = std::time::Instant::now();
        writeln!(w, "{}", json!({"op": "snapshot", "reason": "pre-delete"})).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let took = t.elapsed().as_secs_f64();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "{line}");
        (took, read_bytes(ws, store, &v["result"]["snapshot"]))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// The bytes a snapshot's capture read when it was incremental (from its
/// manifest, which also says it was an online capture).
fn read_bytes(ws: &Ws, store: &str, snapshot: &Value) -> Option<u64> {
    let id = snapshot["id"].as_str().unwrap();
    let m: Value = serde_json::from_slice(
        &std::fs::read(ws.dir.join(format!("data/{store}/snapshots/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["capture"]["method"], "online",
        "the app holds the database"
    );
    m["capture"]["incremental"]["read_bytes"].as_u64()
}

/// `runs` samples of one measure: the incremental snapshot (alternating
/// with cp+sync), then the full one; before each, with `change`, 1 % of
/// the rows updated and checkpointed.
fn measure(
    runs: usize,
    change: bool,
    app: &mut App,
    n: u64,
    copy_now: &dyn Fn() -> f64,
    inc: &dyn Fn() -> (f64, Option<u64>),
    full: &dyn Fn() -> f64,
) -> Value {
    let (mut on, mut off, mut cp, mut read) = (vec![], vec![], vec![], vec![]);
    for r in 0..runs {
        if change {
            let start = (n / 100) * (r as u64 % 90);
            app.run(&format!(
                "UPDATE events SET amount = amount + 1 WHERE id BETWEEN {start} AND {}; CHECKPOINT",
                start + n / 100
            ));
        }
        let ((a, bytes), c) = side_by_side(r % 2 == 0, copy_now, inc);
        let b = full();
        on.push(a);
        off.push(b);
        cp.push(c);
        read.push(bytes.expect("incremental") as f64);
    }
    json!({
        "incremental": median(on.clone()), "full": median(off.clone()), "cp_sync": median(cp.clone()),
        "read_bytes": median(read.clone()),
        "samples": {"incremental": on, "full": off, "cp_sync": cp, "read_bytes": read},
    })
}

pub fn run(root: &Path, mb: u64, runs: usize, python: &Path) -> (Value, String) {
    let ws = Ws::new(root, "online");
    generate(&ws.db(), mb);
    let full_toml = ws.dir.join("full.toml");
    std::fs::write(
        &full_toml,
        "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups-full\"\n\
         [schedule]\nenabled = false\n[retention]\nkeep_last = 1000\n[capture]\nincremental = false\n\
         [socket]\npath = \"full.sock\"\n",
    )
    .unwrap();
    let inc_toml = ws.dir.join("ducksnap.toml");
    let (inc, full) = (inc_toml.to_str().unwrap(), full_toml.to_str().unwrap());
    let mut app = App::start(python, &ws.db());
    let copy = ws.dir.join("copy.duckdb");
    // The copy is removed after each timing: at 10 GB the disk must also
    // hold the database, two stores and the mirror.
    let copy_now = || {
        let s = cp_sync(&ws.db(), &copy);
        let _ = std::fs::remove_file(&copy);
        s
    };
    let size = std::fs::metadata(ws.db()).unwrap().len();
    let first_inc = snapshot(&ws, inc, "backups").0;
    let first_full = snapshot(&ws, full, "backups-full").0;
    let first_cp = copy_now();
    let mut rows = Vec::new();
    let n = rows_for(mb);
    for (key, change) in [("unchanged", false), ("changed", true)] {
        let x = measure(
            runs,
            change,
            &mut app,
            n,
            &copy_now,
            &|| snapshot(&ws, inc, "backups"),
            &|| snapshot(&ws, full, "backups-full").0,
        );
        rows.push((key, x));
    }
    // The same through two running daemons, one per store.
    let served_inc = Served::start(&ws, inc, ws.dir.join("ducksnap.sock"));
    let served_full = Served::start(&ws, full, ws.dir.join("full.sock"));
    for (key, change) in [("daemon_unchanged", false), ("daemon_changed", true)] {
        let x = measure(
            runs,
            change,
            &mut app,
            n,
            &copy_now,
            &|| served_inc.snapshot(&ws, "backups"),
            &|| served_full.snapshot(&ws, "backups-full").0,
        );
        rows.push((key, x));
    }
    drop((served_inc, served_full));
    drop(app);
    let mut md = String::new();
    md.push_str(&format!(
        "| {mb} MB | (j) first online snapshot (the app holds the database) | incremental on: {first_inc:.2} s (seeds the mirror) | off: {first_full:.2} s | cp+sync {first_cp:.2} s |\n"
    ));
    for (key, x) in &rows {
        let what = match *key {
            "unchanged" => "(j) pre-delete snapshot, database unchanged",
            "changed" => "(j) snapshot after a 1 % change and a checkpoint",
            "daemon_unchanged" => "(j) through the daemon: pre-delete snapshot, database unchanged",
            _ => "(j) through the daemon: snapshot after a 1 % change and a checkpoint",
        };
        md.push_str(&format!(
            "| {mb} MB | {what} | incremental on: {:.3} s, read {:.1} MB of {:.0} MB | off: {:.3} s | cp+sync {:.3} s |\n",
            x["incremental"].as_f64().unwrap(),
            x["read_bytes"].as_f64().unwrap() / 1e6,
            size as f64 / 1e6,
            x["full"].as_f64().unwrap(),
            x["cp_sync"].as_f64().unwrap(),
        ));
    }
    let out = json!({
        "size_bytes": size,
        "first": {"incremental": first_inc, "full": first_full, "cp_sync": first_cp},
        "unchanged": rows[0].1, "changed": rows[1].1,
        "daemon_unchanged": rows[2].1, "daemon_changed": rows[3].1,
    });
    (out, md)
}
