//! (j) Online snapshots while the app holds the database (a Python process
//! on PyPI's duckdb, as the Streamlit app does): the first snapshot, the
//! pre-delete snapshot of an unchanged database, and the snapshot after a
//! 1 % change and a checkpoint — with `capture.incremental` on and off (two
//! stores of the one database, taken alternately), and `cp`+`sync` of the
//! file, side by side in one run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{Ws, cp_sync, generate, median, rows_for, run_json, side_by_side};

/// The app: runs each line it is sent as SQL, answers `ok`.
struct App(Child);

impl App {
    fn start(python: &Path, db: &Path) -> App {
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

    fn run(&mut self, sql: &str) {
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
    let id = v["snapshot"]["id"].as_str().unwrap();
    let m: Value = serde_json::from_slice(
        &std::fs::read(ws.dir.join(format!("data/{store}/snapshots/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["capture"]["method"], "online",
        "the app holds the database"
    );
    (s, m["capture"]["incremental"]["read_bytes"].as_u64())
}

pub fn run(root: &Path, mb: u64, runs: usize, python: &Path) -> (Value, String) {
    let ws = Ws::new(root, "online");
    generate(&ws.db(), mb);
    let full_toml = ws.dir.join("full.toml");
    std::fs::write(
        &full_toml,
        "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups-full\"\n\
         [schedule]\nenabled = false\n[retention]\nkeep_last = 1000\n[capture]\nincremental = false\n",
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
        let (mut on, mut off, mut cp, mut read) = (vec![], vec![], vec![], vec![]);
        for r in 0..runs {
            if change {
                let start = (n / 100) * (r as u64 % 90);
                app.run(&format!(
                    "UPDATE events SET amount = amount + 1 WHERE id BETWEEN {start} AND {}; CHECKPOINT",
                    start + n / 100
                ));
            }
            let ((a, bytes), c) =
                side_by_side(r % 2 == 0, copy_now, || snapshot(&ws, inc, "backups"));
            let b = snapshot(&ws, full, "backups-full").0;
            on.push(a);
            off.push(b);
            cp.push(c);
            read.push(bytes.expect("incremental") as f64);
        }
        let x = json!({
            "incremental": median(on.clone()), "full": median(off.clone()), "cp_sync": median(cp.clone()),
            "read_bytes": median(read.clone()),
            "samples": {"incremental": on, "full": off, "cp_sync": cp, "read_bytes": read},
        });
        rows.push((key, x));
    }
    drop(app);
    let mut md = String::new();
    md.push_str(&format!(
        "| {mb} MB | (j) first online snapshot (the app holds the database) | incremental on: {first_inc:.2} s (seeds the mirror) | off: {first_full:.2} s | cp+sync {first_cp:.2} s |\n"
    ));
    for (key, x) in &rows {
        let what = match *key {
            "unchanged" => "(j) pre-delete snapshot, database unchanged",
            _ => "(j) snapshot after a 1 % change and a checkpoint",
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
    });
    (out, md)
}
