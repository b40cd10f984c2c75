//! Incremental online captures (`capture::incremental`) tried against
//! ground truth the capture never sees: with an app holding the database
//! read-write (this process's DuckDB connection), every snapshot — full or
//! incremental — is restored with the real binary and must equal the live
//! database table by table (`EXCEPT ALL` both ways, run by the app's own
//! connection), and its bytes must equal the live file's in the header
//! region, in every block the live header uses, and in the WAL. The app is
//! a Python process on PyPI's duckdb (a DuckDB in this process would lose
//! its POSIX lock the first time the test reads the file: DESIGN §4.1).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ducksnap::database::blocks::BlockMap;
use ducksnap::database::duckfile::HEADER_REGION;

use crate::helpers::daemon::{Conn, Daemon, set_config};
use crate::helpers::*;

/// The app: a Python process with the workspace's database attached
/// read-write as `app` (created with `opts` when new), running the SQL it
/// is sent, one line at a time.
struct App {
    child: Child,
    tx: ChildStdin,
    rx: BufReader<ChildStdout>,
}

impl App {
    fn start(ws: &Workspace, opts: &str) -> App {
        App::start_at(&ws.db(), opts)
    }

    fn start_at(db: &Path, opts: &str) -> App {
        let code = "import duckdb, sys, json\n\
            c = duckdb.connect(':memory:'); c.execute('SET enable_progress_bar = false')\n\
            c.execute(sys.argv[1]); c.execute('USE app')\n\
            print('ready', flush=True)\n\
            for line in sys.stdin:\n\
            \x20   sql = line.rstrip('\\n')\n\
            \x20   try:\n\
            \x20       rows = c.execute(sql).fetchall() if sql.startswith('SELECT') else c.execute(sql) and []\n\
            \x20       print(json.dumps([list(r) for r in rows]), flush=True)\n\
            \x20   except Exception as e:\n\
            \x20       print('error ' + str(e).replace('\\n', ' '), flush=True)\n";
        let attach = format!("ATTACH '{}' AS app {opts}", db.display());
        let mut child = Command::new(python())
            .args(["-c", code, &attach])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let tx = child.stdin.take().unwrap();
        let mut rx = BufReader::new(child.stdout.take().unwrap());
        let mut l = String::new();
        rx.read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "ready");
        App { child, tx, rx }
    }

    /// Runs `sql`; its rows (JSON), or a panic naming the error.
    fn run(&mut self, sql: &str) -> serde_json::Value {
        writeln!(self.tx, "{sql}").unwrap();
        let mut l = String::new();
        self.rx.read_line(&mut l).unwrap();
        assert!(!l.starts_with("error"), "{sql}: {l}");
        serde_json::from_str(&l).unwrap()
    }

    fn count(&mut self, sql: &str) -> i64 {
        self.run(sql)[0][0].as_i64().unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Restores snapshot `id` to a new file and compares it with the live
/// database: every table's rows both ways, and the bytes of the header
/// region, of every block the live header uses, and of the WAL.
fn equals_live(ws: &Workspace, app: &mut App, id: &str, what: &str) {
    let to = ws.path().join(format!("restored-{id}.duckdb"));
    let out = ws.run(&["restore", id, "--to", to.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    let live = std::fs::read(ws.db()).unwrap();
    let restored = std::fs::read(&to).unwrap();
    let f = std::fs::File::open(ws.db()).unwrap();
    let map = BlockMap::read(&f, &ws.db()).unwrap();
    let h = HEADER_REGION as usize;
    assert_eq!(live[..h], restored[..h], "{what}: header region");
    assert_eq!(live.len(), restored.len(), "{what}: size");
    for b in (0..map.block_count).filter(|b| map.in_use(*b)) {
        let r = map.offset(b) as usize..(map.offset(b) + map.block_size) as usize;
        assert!(
            live[r.clone()] == restored[r],
            "{what}: block {b} (in use) differs"
        );
    }
    let wal = |p: &Path| std::fs::read(ducksnap::database::duckfile::side_path(p, ".wal")).ok();
    assert_eq!(wal(&ws.db()), wal(&to), "{what}: WAL");
    app.run(&format!("ATTACH '{}' AS snap (READ_ONLY)", to.display()));
    let tables: Vec<String> = app
        .run("SELECT table_name FROM duckdb_tables() WHERE database_name = 'app' ORDER BY 1")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for t in &tables {
        for (a, b) in [("app", "snap"), ("snap", "app")] {
            let n = app.count(&format!(
                "SELECT count(*) FROM (SELECT * FROM {a}.main.{t} EXCEPT ALL SELECT * FROM {b}.main.{t})"
            ));
            assert_eq!(n, 0, "{what}: {t}: rows in {a} and not in {b}");
        }
    }
    let snap_tables =
        app.count("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'snap'");
    assert_eq!(snap_tables as usize, tables.len(), "{what}: tables");
    app.run("DETACH snap");
    let _ = std::fs::remove_file(&to);
}

/// A snapshot with its capture: (id, base snapshot if incremental, bytes
/// read in the window).
fn snap(ws: &Workspace) -> (String, Option<String>, Option<u64>) {
    let (id, base, read, _) = snap_primed(ws);
    (id, base, read)
}

/// [`snap`], and the bytes a prime read outside the window (0: none).
fn snap_primed(ws: &Workspace) -> (String, Option<String>, Option<u64>, u64) {
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let m = ws.manifest(&id);
    assert_eq!(
        m.capture.method.to_string(),
        "online",
        "the app holds the database"
    );
    let inc = m.capture.incremental.as_ref();
    (
        id,
        inc.map(|i| i.base.to_string()),
        inc.map(|i| i.read_bytes),
        inc.map_or(0, |i| i.primed_bytes),
    )
}

/// How a snapshot of the workload must have been taken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    /// Every byte (the first snapshot).
    Whole,
    /// Only what can have changed, in the window.
    Changed,
    /// A one-shot process did not see the headers since the last snapshot:
    /// the whole file outside the window (the prime), then what can have
    /// changed since it, in the window.
    Primed,
}

/// The workload, step by step, each followed by a snapshot that must equal
/// the live database; which of them must read only what changed (no
/// checkpoint or one since the previous snapshot) and which must prime
/// (two checkpoints, which no one-shot process saw).
fn workload(block_size: u64, storage: Option<&str>) {
    let ws = Workspace::new();
    let opts = match storage {
        Some(v) => format!("(BLOCK_SIZE {block_size}, STORAGE_VERSION '{v}')"),
        None => format!("(BLOCK_SIZE {block_size})"),
    };
    let mut app = App::start(&ws, &opts);
    let what = format!("{block_size} {storage:?}");
    let steps: [(&str, &str, Read); 9] = [
        (
            "create",
            "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000); CHECKPOINT",
            Read::Whole,
        ),
        ("nothing", "", Read::Changed),
        (
            "WAL only",
            "INSERT INTO t SELECT range, 'w' FROM range(300000, 300100)",
            Read::Changed,
        ),
        ("one checkpoint", "CHECKPOINT", Read::Changed),
        (
            "two checkpoints",
            "DELETE FROM t WHERE i < 1000; CHECKPOINT; UPDATE t SET s = 'u' WHERE i % 100 = 0; CHECKPOINT",
            Read::Primed,
        ),
        (
            "delete + checkpoint",
            "DELETE FROM t WHERE i % 3 = 0; CHECKPOINT",
            Read::Changed,
        ),
        (
            "rolled back, then committed, bulk inserts (optimistic writes into free blocks, referenced by the WAL)",
            "BEGIN; INSERT INTO t SELECT range, 'r' FROM range(400000, 700000); ROLLBACK; \
             INSERT INTO t SELECT range, 'c' FROM range(800000, 1100000)",
            Read::Changed,
        ),
        (
            "drop + checkpoint (the file may shrink)",
            "CREATE TABLE u AS SELECT range AS k FROM range(10); DROP TABLE t; CHECKPOINT",
            Read::Changed,
        ),
        (
            "grows again",
            "CREATE TABLE t AS SELECT range AS i FROM range(500000); CHECKPOINT",
            Read::Changed,
        ),
    ];
    let mut prev: Option<String> = None;
    for (name, sql, how) in steps {
        if !sql.is_empty() {
            app.run(sql);
        }
        let (id, base, read, primed) = snap_primed(&ws);
        let size = std::fs::metadata(ws.db()).unwrap().len();
        println!("{what} {name}: {id} base {base:?} read {read:?} primed {primed} of {size}");
        match how {
            Read::Whole => assert_eq!(base, None, "{what} {name}: a full read"),
            Read::Changed | Read::Primed => assert_eq!(
                base, prev,
                "{what} {name}: incremental from the previous snapshot"
            ),
        }
        let want = if how == Read::Primed { size } else { 0 };
        assert_eq!(primed, want, "{what} {name}: bytes primed");
        equals_live(&ws, &mut app, &id, &format!("{what} {name}"));
        prev = Some(id);
    }
}

#[test]
fn incremental_captures_equal_the_live_database() {
    workload(262_144, None);
}

#[test]
fn incremental_captures_equal_the_live_database_16k_v64() {
    workload(16_384, Some("v1.0.0"));
}

/// The database deleted and created again at the same path, with as many
/// checkpoints (the same header iteration; the file system may even give
/// it the same inode): the next snapshot is not taken from the mirror of
/// the old one, and equals the new database.
#[test]
fn a_database_created_again_is_read_whole() {
    let ws = Workspace::new();
    let sql = "CREATE TABLE t AS SELECT range AS i, md5((range * 7)::VARCHAR) AS s FROM range(200000); CHECKPOINT";
    let mut app = App::start(&ws, "");
    app.run(sql);
    let (first, _, _) = snap(&ws);
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let old_ino = ino(&ws.db());
    drop(app);
    std::fs::remove_file(ws.db()).unwrap();
    let _ = std::fs::remove_file(ducksnap::database::duckfile::side_path(&ws.db(), ".wal"));
    let mut app = App::start(&ws, "");
    app.run(&sql.replace("* 7", "* 11"));
    let (id, base, _) = snap(&ws);
    println!(
        "created again: same inode {}; base {base:?}",
        old_ino == ino(&ws.db())
    );
    assert_ne!(
        base.as_deref(),
        Some(first.as_str()),
        "taken from the old database's mirror"
    );
    equals_live(&ws, &mut app, &id, "created again");
}

/// Another database's bytes written over the file in place (the same
/// inode, the same header iteration and block count): only the blocks' own
/// checksums can tell, and they must — the snapshot is read whole and
/// equals the new database.
#[test]
fn another_database_written_in_place_is_read_whole() {
    let ws = Workspace::new();
    let sql = |m: u32| {
        format!(
            "CREATE TABLE t AS SELECT range AS i, md5((range * {m})::VARCHAR) AS s FROM range(200000); CHECKPOINT"
        )
    };
    let mut app = App::start(&ws, "");
    app.run(&sql(7));
    snap(&ws);
    drop(app);
    let other = ws.path().join("other.duckdb");
    let mut b = App::start_at(&other, "");
    b.run(&sql(13));
    drop(b);
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&ws.db());
    std::fs::write(ws.db(), std::fs::read(&other).unwrap()).unwrap();
    assert_eq!(ino(&ws.db()), before, "written in place");
    let mut app = App::start(&ws, "");
    let (id, base, _) = snap(&ws);
    assert_eq!(
        base, None,
        "an incremental capture of another database's bytes"
    );
    equals_live(&ws, &mut app, &id, "overwritten in place");
}

/// `capture.incremental = false`: every snapshot reads the whole database,
/// and the first one gives the mirror's disk back.
#[test]
fn turned_off_reads_everything_and_removes_the_mirror() {
    let ws = Workspace::new();
    let mut app = App::start(&ws, "");
    app.run("CREATE TABLE t AS SELECT range AS i FROM range(100000); CHECKPOINT");
    snap(&ws);
    let mirror = ws.store_dir().join("mirror");
    assert!(
        mirror.join("db.duckdb").exists(),
        "a full online copy seeds the mirror"
    );
    assert!(snap(&ws).1.is_some(), "incremental while on");
    ws.write_config("[capture]\nincremental = false\n");
    let (id, base, _) = snap(&ws);
    assert_eq!(base, None);
    assert!(!mirror.exists(), "the mirror stayed");
    equals_live(&ws, &mut app, &id, "turned off");
}

/// A stale block in the mirror that the checksum tripwire cannot see (a
/// byte changed inside a block the snapshot shares with the database, its
/// stored checksum left as it was): the full read of
/// `capture.full_read_every` finds it, names the block in an error, and the
/// snapshot is read whole and equals the live database.
#[test]
fn the_full_read_finds_a_stale_block() {
    let ws = Workspace::new();
    let mut app = App::start(&ws, "");
    app.run("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(200000); CHECKPOINT");
    snap(&ws);
    let mirror = ws.store_dir().join("mirror/db.duckdb");
    let map = BlockMap::read(&std::fs::File::open(&mirror).unwrap(), &mirror).unwrap();
    let b = (0..map.block_count)
        .find(|b| map.in_use(*b) && !map.metadata.contains_key(b))
        .unwrap();
    let mut bytes = std::fs::read(&mirror).unwrap();
    bytes[map.offset(b) as usize + 100] ^= 0xff;
    std::fs::write(&mirror, &bytes).unwrap();
    ws.write_config("[capture]\nfull_read_every = \"0s\"\n");
    let out = ws.run(&["--log-format", "json", "snapshot", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|l| l.contains("capture.stale_block"))
        .unwrap_or_else(|| panic!("no stale_block error: {log}"));
    assert!(line.contains("ERROR") || line.contains("error"), "{line}");
    assert!(line.contains(&format!("blocks {b}")), "{line}");
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = id["snapshot"]["id"].as_str().unwrap().to_string();
    assert!(ws.manifest(&id).capture.incremental.is_none(), "read whole");
    equals_live(&ws, &mut app, &id, "after a stale block");
    // Compared and found equal, the next one says so.
    let (_, base, _) = snap(&ws);
    assert!(base.is_some());
}

/// A store on a small disk: the first online snapshot needs room for a
/// full copy; a pre-delete snapshot afterwards needs only what it reads
/// (it used to be refused for lack of room for a second full copy); so
/// does one after two checkpoints nobody saw (the prime patches the mirror
/// in place); when the database file is replaced, the full copy it then
/// needs is refused before anything is written, naming the space, and
/// nothing stored is lost.
#[test]
fn a_small_disk_takes_incremental_snapshots() {
    let ws = Workspace::new();
    let mut app = App::start(&ws, "");
    app.run("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(250000); CHECKPOINT");
    let size = std::fs::metadata(ws.db()).unwrap().len();
    // Room for one full online copy (the staged copy and its chunks), not
    // for two.
    let small = ws.path().join("small");
    let Some(disk) = SmallDisk::mount(&small, size * 5 / 2) else {
        return;
    };
    disk.hold_store(&ws);
    let first = ws.run(&["snapshot", "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let free = nix::sys::statvfs::statvfs(&small).unwrap();
    let free = free.blocks_available() * free.fragment_size();
    assert!(
        free < 2 * size,
        "the disk is not small enough: {free} free for {size}"
    );
    // A snapshot and its manifest, read where the store is.
    let snapshot = |args: &[&str]| {
        let out = ws.run(&[&["snapshot", "--json"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = v["snapshot"]["id"].as_str().unwrap().to_string();
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(small.join(format!("store/snapshots/{id}.json"))).unwrap(),
        )
        .unwrap();
        (id, m)
    };
    let (id, m) = snapshot(&["--reason", "pre-delete"]);
    assert!(m["capture"]["incremental"].is_object(), "{m}");
    equals_live(&ws, &mut app, &id, "on a small disk");
    app.run("UPDATE t SET s = 'x' WHERE i % 2 = 0; CHECKPOINT; UPDATE t SET s = 'y' WHERE i % 3 = 0; CHECKPOINT");
    let (id, m) = snapshot(&[]);
    let primed = m["capture"]["incremental"]["primed_bytes"].as_u64();
    assert!(primed.is_some_and(|p| p > 0), "{m}");
    equals_live(&ws, &mut app, &id, "primed on a small disk");
    drop(app);
    // Another file at the path (a copy renamed over it): a full copy.
    let copy = ws.path().join("copy.duckdb");
    std::fs::copy(ws.db(), &copy).unwrap();
    std::fs::rename(&copy, ws.db()).unwrap();
    let _app = App::start(&ws, "");
    let before = ws.list_ids();
    let out = ws.run(&["snapshot", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough free space"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.list_ids(), before, "a listed snapshot changed");
    assert_eq!(ws.run(&["verify"]).status.code(), Some(0));
}

/// The app holding a database of 300,000 rows, and a daemon without a
/// schedule on it.
fn app_and_daemon(ws: &Workspace) -> (App, Daemon) {
    set_config(ws, "[schedule]\nenabled = false\n");
    std::fs::create_dir_all(ws.db().parent().unwrap()).unwrap();
    let mut app = App::start(ws, "");
    app.run("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000); CHECKPOINT");
    (app, Daemon::start(ws, &[]))
}

/// Through a daemon, which keeps the chain running: snapshots several
/// checkpoints apart — tables dropped and created again, deletes that free
/// row groups, `VACUUM`, a file that shrinks and grows again, bulk inserts
/// rolled back and committed, checkpoints back to back — read only what
/// can have changed, with no prime unless the chain logged a header it
/// missed, and each equals the live database (rows, and the bytes of every
/// block in use). The workload is one where the marks of the two headers
/// alone would miss changed blocks (counted here from the files' bytes).
#[test]
fn a_daemon_follows_every_checkpoint() {
    use ducksnap::capture::chain::{Changed, Marks};
    let ws = Workspace::new();
    let (mut app, mut d) = app_and_daemon(&ws);
    let mut c = d.connect();
    let snap = |c: &mut Conn| {
        let r = c.call(serde_json::json!({"op": "snapshot"}));
        assert_eq!(r["ok"], true, "{r}");
        let id = r["result"]["snapshot"]["id"].as_str().unwrap().to_string();
        let inc = ws.manifest(&id).capture.incremental;
        let base = inc.as_ref().map(|i| i.base.to_string());
        (id, base, inc.map_or(0, |i| i.primed_bytes))
    };
    // The live file and its header's marks, read while the app is idle.
    let state = || {
        let bytes = std::fs::read(ws.db()).unwrap();
        let map = BlockMap::read(&std::fs::File::open(ws.db()).unwrap(), &ws.db()).unwrap();
        (bytes, Marks::of(&map))
    };
    let (mut prev, _, _) = snap(&mut c);
    let mut before = state();
    let steps = [
        "UPDATE t SET i = i + 1; CHECKPOINT; UPDATE t SET i = i + 1; CHECKPOINT; UPDATE t SET i = i + 1; CHECKPOINT; \
         DELETE FROM t WHERE i < 1000; CHECKPOINT; UPDATE t SET s = 'u' WHERE i % 100 = 0; CHECKPOINT; \
         DROP TABLE t; CHECKPOINT; CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(200000); CHECKPOINT",
        "DELETE FROM t WHERE i % 2 = 0; CHECKPOINT; VACUUM t; CHECKPOINT",
        "BEGIN; INSERT INTO t SELECT range, 'r' FROM range(300000, 600000); ROLLBACK; CHECKPOINT; \
         INSERT INTO t SELECT range, 'c' FROM range(700000, 1000000); CHECKPOINT; CHECKPOINT",
        "CREATE TABLE u AS SELECT range AS k FROM range(10); DROP TABLE t; CHECKPOINT; CHECKPOINT; \
         CREATE TABLE t AS SELECT range AS i FROM range(400000); CHECKPOINT",
        "UPDATE t SET i = i + 1; CHECKPOINT; UPDATE t SET i = i + 1; CHECKPOINT; UPDATE t SET i = i + 1; CHECKPOINT",
    ];
    let (mut primed_runs, mut ends_only_missed) = (0, 0);
    for (n, sql) in steps.iter().enumerate() {
        app.run(sql);
        let (id, base, primed) = snap(&mut c);
        let after = state();
        let mut ends = Changed::new();
        ends.add(&before.1);
        ends.add(&after.1);
        let bs = after.1.block_size;
        let blocks = (before.0.len().min(after.0.len()) as u64).saturating_sub(HEADER_REGION) / bs;
        let at =
            |b: u64| (HEADER_REGION + b * bs) as usize..(HEADER_REGION + (b + 1) * bs) as usize;
        let missed = (0..blocks)
            .filter(|&b| !ends.contains(b) && before.0[at(b)] != after.0[at(b)])
            .count();
        println!(
            "step {n}: {id} base {base:?} primed {primed}; the ends' marks alone miss {missed} changed block(s)"
        );
        assert_eq!(
            base.as_ref(),
            Some(&prev),
            "step {n}: from the previous snapshot"
        );
        primed_runs += usize::from(primed > 0);
        ends_only_missed += missed;
        equals_live(&ws, &mut app, &id, &format!("daemon step {n}"));
        (prev, before) = (id, after);
    }
    drop(c);
    // Its whole log: a gap logged just before a reply is counted too.
    assert_eq!(d.stop(), Some(0));
    assert_eq!(
        d.count("snapshot.created"),
        steps.len() + 1,
        "the daemon's log was read"
    );
    let gaps = d.count("capture.chain_gap");
    println!(
        "{primed_runs} of {} snapshots primed; {gaps} headers missed",
        steps.len()
    );
    assert!(
        primed_runs <= gaps,
        "{primed_runs} primes but only {gaps} missed headers: the chain was not used"
    );
    assert!(
        ends_only_missed > 0,
        "the workload never needed a header between two snapshots"
    );
}

/// A database no process holds (the app opens it per request, or is
/// stopped): once an online snapshot has left a mirror, a snapshot under
/// ducksnap's read lock reads only what can have changed too, and when the
/// file has not changed since a capture taken while it was quiet, only the
/// header region. Tried against it: a free block overwritten with its mtime
/// set back, and a rolled-back bulk insert (free blocks written, no new
/// header). Each snapshot restores to exactly the live file's bytes.
#[test]
fn a_closed_database_is_read_where_it_changed() {
    let ws = Workspace::new();
    let mut app = App::start(&ws, "");
    app.run("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000); CHECKPOINT");
    snap(&ws);
    app.run("UPDATE t SET s = 'x' WHERE i % 1000 = 0; CHECKPOINT; DELETE FROM t WHERE i < 500");
    drop(app);
    // Quiet for longer than capture's QUIET (1 s) before the next capture.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let size = || std::fs::metadata(ws.db()).unwrap().len();
    let exact = |id: &str, step: &str| {
        let to = ws.path().join("exact.duckdb");
        let out = ws.run(&[
            "restore",
            id,
            "--to",
            to.to_str().unwrap(),
            "--force",
            "--yes",
        ]);
        assert!(out.status.success(), "{step}: {}", stderr(&out));
        assert!(
            std::fs::read(&to).unwrap() == std::fs::read(ws.db()).unwrap(),
            "{step}: the restored file is not the live file's bytes"
        );
        let mut reader = App::start(&ws, "(READ_ONLY)");
        equals_live(&ws, &mut reader, id, step);
    };
    let quiescent = |step: &str| {
        let id = ws.snapshot()["id"].as_str().unwrap().to_string();
        let m = ws.manifest(&id);
        assert_eq!(m.capture.method.to_string(), "quiescent", "{step}");
        let inc = m
            .capture
            .incremental
            .unwrap_or_else(|| panic!("{step}: read whole"));
        println!(
            "{step}: read {} primed {} of {}",
            inc.read_bytes,
            inc.primed_bytes,
            size()
        );
        (id, inc.read_bytes)
    };
    let (id, _) = quiescent("after the app closed");
    exact(&id, "after the app closed");
    let (id, read) = quiescent("unchanged");
    let wal = std::fs::metadata(ducksnap::database::duckfile::side_path(&ws.db(), ".wal"))
        .map_or(0, |m| m.len());
    assert!(read <= HEADER_REGION + wal, "unchanged: read {read}");
    exact(&id, "unchanged");
    // A free block overwritten, and the mtime set back: ctime still moves.
    let f = std::fs::File::open(ws.db()).unwrap();
    let map = BlockMap::read(&f, &ws.db()).unwrap();
    let free = *map.free.iter().next().expect("a free block");
    let before = std::fs::metadata(ws.db()).unwrap();
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(ws.db())
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&w, &[0xab; 4096], map.offset(free) + 4096).unwrap();
    drop(w);
    let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    use std::os::unix::fs::MetadataExt;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &ws.db(),
        &t(before.atime(), before.atime_nsec()),
        &t(before.mtime(), before.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(ws.db()).unwrap().mtime(), before.mtime());
    let (id, read) = quiescent("a free block written, mtime set back");
    assert!(read > HEADER_REGION + wal, "the written block was not read");
    exact(&id, "a free block written, mtime set back");
    // A rolled-back bulk insert: optimistic writes into free blocks.
    let mut app = App::start(&ws, "");
    app.run("BEGIN; INSERT INTO t SELECT range, 'r' FROM range(400000, 900000); ROLLBACK");
    drop(app);
    let (id, _) = quiescent("after a rolled-back bulk insert");
    exact(&id, "after a rolled-back bulk insert");
}

#[test]
fn a_daemon_reads_a_base_manifest_again_once_it_changes() {
    // The daemon keeps the base manifest it last found (no reading and
    // parsing ~40,000 chunk names per snapshot at 10 GB), but only while
    // the file is the one it read: a manifest damaged in place since is
    // read again, fails its check, and is not used as a base.
    let ws = Workspace::new();
    let (app, d) = app_and_daemon(&ws);
    let mut c = d.connect();
    let mut snap = || {
        let r = c.call(serde_json::json!({"op": "snapshot", "reason": "pre-delete"}));
        assert_eq!(r["ok"], true, "{r}");
        let id = r["result"]["snapshot"]["id"].as_str().unwrap().to_string();
        let base = ws
            .manifest(&id)
            .capture
            .incremental
            .map(|i| i.base.to_string());
        (id, base)
    };
    let (s1, _) = snap();
    let (s2, base) = snap();
    assert_eq!(base.as_deref(), Some(s1.as_str()));
    let (s3, base) = snap();
    assert_eq!(
        base.as_deref(),
        Some(s2.as_str()),
        "the newest snapshot is the base"
    );
    // s3's manifest, damaged in place (one chunk name changed): the same
    // inode, a new ctime.
    let path = ws.store_dir().join(format!("snapshots/{s3}.json"));
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let name = v["files"][0]["chunks"][1]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = format!(
        "{}{}",
        if name.starts_with('0') { "1" } else { "0" },
        &name[1..]
    );
    std::fs::write(&path, text.replace(&name, &flipped)).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
        ino
    );
    let (_, base) = snap();
    assert_eq!(
        base.as_deref(),
        Some(s2.as_str()),
        "a damaged base was taken from memory"
    );
    drop(app);
}
