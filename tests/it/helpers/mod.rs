//! Shared test helpers: a temporary workspace with a config file, the real
//! `ducksnap` binary run in it with a clean environment, DuckDB files made by
//! the bundled DuckDB or by Python's `duckdb` package, and a store reader.

pub mod daemon;
pub mod remote;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use duckdb::{AccessMode, Config, Connection};
use ducksnap::store::{Manifest, Store};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ducksnap");

/// A temporary directory holding `ducksnap.toml`, `data/app.duckdb` (once
/// created) and the store `data/backups`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let ws = Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(ws.path().join("data")).unwrap();
        ws.write_config("");
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("ducksnap.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("data/app.duckdb")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.path().join("data/backups")
    }

    /// Writes the config: `[database]` pointing at data/app.duckdb, forced
    /// local mode, plus `extra` TOML appended. Continuous archiving (on by
    /// default) is off unless `extra` has a `[continuous]` section: the
    /// tests of other subsystems count the snapshots they take, and the
    /// archiver adds `base` snapshots whenever the app checkpoints.
    pub fn write_config(&self, extra: &str) {
        let off = if extra.contains("[continuous]") {
            ""
        } else {
            "[continuous]\nenabled = false\n"
        };
        let text = format!(
            "[database]\npath = \"data/app.duckdb\"\nmode = \"local\"\n[store]\ndir = \"data/backups\"\nmin_free_space = \"1MiB\"\n{off}{extra}"
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// The binary with a clean environment, cwd in the workspace, and the
    /// workspace config.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.bare_cmd();
        c.arg("--config").arg(self.config_path()).args(args);
        c
    }

    /// The binary with a clean environment and cwd in the workspace, no arguments.
    pub fn bare_cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .current_dir(self.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ducksnap")
    }

    /// Runs and expects success; returns stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ducksnap {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout of {args:?} is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn snapshot(&self) -> Value {
        let v = self.json(&["snapshot", "--json"]);
        assert!(v["snapshot"].is_object(), "no snapshot in {v}");
        v["snapshot"].clone()
    }

    pub fn store(&self) -> Store {
        Store::open(&self.store_dir(), false, 3).expect("open store")
    }

    pub fn manifest(&self, id: &str) -> Manifest {
        let id = ducksnap::id::SnapshotId::parse(id).unwrap();
        self.store().load_manifest(&id).expect("manifest")
    }

    /// Ids from `list --json`, newest first.
    pub fn list_ids(&self) -> Vec<String> {
        self.json(&["list", "--json"])
            .as_array()
            .expect("list is an array")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Reassembles snapshot `id` into a fresh directory; returns the db path.
    pub fn reassemble(&self, id: &str, into: &Path) -> PathBuf {
        std::fs::create_dir_all(into).unwrap();
        let m = self.manifest(id);
        self.store()
            .reassemble(&m, into, "copy.duckdb")
            .expect("reassemble")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Opens a DuckDB file read-only with the bundled DuckDB.
pub fn open_ro(path: &Path) -> Connection {
    let cfg = Config::default().access_mode(AccessMode::ReadOnly).unwrap();
    Connection::open_with_flags(path, cfg)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

pub fn query_i64(c: &Connection, q: &str) -> i64 {
    c.query_row(q, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Creates a database with the bundled DuckDB by running `sql`, then closes it.
pub fn make_db(path: &Path, sql: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
    c.execute_batch("CHECKPOINT").unwrap();
}

/// Python with the pinned `duckdb` package: `$DUCKSNAP_TEST_PYTHON`, else
/// the repository's `.venv` (made by `.ci/run`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DUCKSNAP_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `bash .ci/run` once (it creates .venv with the pinned duckdb package) \
         or set DUCKSNAP_TEST_PYTHON",
        p.display()
    );
    p
}

/// Python with PyPI's duckdb 1.4.4 (`.venv-duckdb14`, made by `.ci/run`):
/// an app on the older line.
pub fn python14() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-duckdb14/bin/python");
    assert!(
        p.exists(),
        ".venv-duckdb14 missing: run `bash .ci/run` once (it creates it)"
    );
    p
}

/// Runs a Python helper to completion; panics with its stderr when it
/// fails.
pub fn python_ok(c: &mut std::process::Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Runs a Python snippet with the pinned duckdb; panics on failure.
pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Hash of every file under `dir` (relative path → blake3), to prove a store
/// was left unchanged. A store's health record (`health.json`, `health.lock`:
/// the last success and failure of each job, written by every run, failed
/// ones included) is not its data and is left out.
pub fn tree_digest(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let h = blake3::hash(&std::fs::read(&p).unwrap())
                    .to_hex()
                    .to_string();
                out.push((p.strip_prefix(base).unwrap().display().to_string(), h));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.retain(|(p, _)| p != "health.json" && p != "health.lock");
    out.sort();
    out
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Creates data/app.duckdb with the Python app's realistic tables
/// (tests/py/make_big.py); returns its size.
pub fn make_big(ws: &Workspace, rows: u64) -> u64 {
    run_python(
        &std::fs::read_to_string(py_script("make_big.py")).unwrap(),
        &[ws.db().to_str().unwrap(), &rows.to_string()],
    );
    std::fs::metadata(ws.db()).unwrap().len()
}

/// The invariants of tests/py/live_writer.py's app in a copy of its
/// database: no money created or lost, a counter equal to its log, bulk
/// batches whole.
pub fn assert_invariants(db: &Path, what: &str) {
    let c = open_ro(db);
    assert_eq!(
        query_i64(&c, "SELECT sum(balance)::BIGINT FROM accounts"),
        0,
        "{what}: money created or lost"
    );
    let n = query_i64(&c, "SELECT n FROM counter");
    assert_eq!(
        query_i64(&c, "SELECT count(*) FROM log"),
        n,
        "{what}: counter and log disagree"
    );
    assert_eq!(
        query_i64(&c, "SELECT coalesce(max(seq), 0) FROM log"),
        n,
        "{what}"
    );
    assert_eq!(
        query_i64(
            &c,
            "SELECT count(*) - 150000 * count(DISTINCT batch) FROM bulk"
        ),
        0,
        "{what}: a bulk insert is partially present"
    );
}

/// A small tmpfs, unmounted when dropped. Mounting needs root: elsewhere
/// [`SmallDisk::mount`] says so and gives `None`.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    pub fn mount(dir: &Path, bytes: u64) -> Option<SmallDisk> {
        if !nix::unistd::getuid().is_root() {
            println!("not root: cannot mount a small tmpfs here; exercised only as root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Some(SmallDisk(dir.to_path_buf()))
    }

    /// Moves `ws`'s store to `<disk>/store` and drops its free-space
    /// reserve (the config's other settings kept).
    pub fn hold_store(&self, ws: &Workspace) {
        let cfg = std::fs::read_to_string(ws.config_path())
            .unwrap()
            .replace(
                "dir = \"data/backups\"",
                &format!("dir = \"{}\"", self.0.join("store").display()),
            )
            .replace("min_free_space = \"1MiB\"", "min_free_space = \"0B\"");
        std::fs::write(ws.config_path(), cfg).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The byte ranges of the WAL's entry bodies, found by the framing alone:
/// the header ends with the serializer's `0xffff` (a varint byte ≥ 0x80 is
/// followed by its continuation, so two 0xff never meet before it), then
/// each entry is its size (u64), its checksum (u64) and its body.
pub fn bodies(wal: &[u8]) -> Vec<(usize, usize)> {
    let mut at = wal.windows(2).position(|w| w == [0xff, 0xff]).unwrap() + 2;
    let mut out = Vec::new();
    while at + 16 <= wal.len() {
        let size = u64::from_le_bytes(wal[at..at + 8].try_into().unwrap()) as usize;
        out.push((at + 16, at + 16 + size));
        at += 16 + size;
    }
    assert_eq!(at, wal.len(), "the WAL is whole entries");
    out
}

/// DuckDB's digest of each file (tests/py/digest.py: `{"seq", "state"}`,
/// or `{"error"}` for a file DuckDB will not open), one Python process per
/// hundred files.
pub fn digests(
    py: &Path,
    files: &[PathBuf],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    for batch in files.chunks(100) {
        let o = python_ok(
            std::process::Command::new(py)
                .arg(py_script("digest.py"))
                .args(batch),
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for (k, d) in v.as_object().unwrap() {
            out.insert(k.clone(), d.clone());
        }
    }
    out
}
