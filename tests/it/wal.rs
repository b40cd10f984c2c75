//! The WAL as a stream of commits (`ducksnap::database::wal`), proven on
//! files PyPI's duckdb (2.0.1 and 1.4.4) wrote: the header binds the WAL to
//! its database file, every entry's checksum is DuckDB's, a commit ends
//! where the WAL stood when the app's commit returned, a WAL cut just after
//! a commit replays exactly the commits before the cut (and a torn tail is
//! ignored), and a damaged entry is named where DuckDB names it. The ground
//! truth is the app's own record (tests/py/wal_commits.py): the WAL's size
//! and every table's rows after each commit returned.

use std::path::{Path, PathBuf};
use std::process::Command;

use ducksnap::database::duckfile::Header;
use ducksnap::database::wal::{self, End};
use serde_json::Value;

use crate::helpers::*;

/// A database the app committed `wal_commits.py`'s steps to, and its record.
struct Written {
    dir: PathBuf,
    py: PathBuf,
    record: Vec<Value>,
}

impl Written {
    fn new(ws: &Workspace, py: &Path, name: &str, storage: Option<&str>) -> Written {
        let dir = ws.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("record.json");
        let mut c = Command::new(py);
        c.arg(py_script("wal_commits.py"))
            .arg(dir.join("app.duckdb"))
            .arg(&out)
            .args(storage)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
        Written {
            dir,
            py: py.to_path_buf(),
            record: v["record"].as_array().unwrap().clone(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("app.duckdb")
    }

    fn wal(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("app.duckdb.wal")).unwrap()
    }

    /// The WAL's size after each step whose commit wrote to it, in order.
    fn commit_ends(&self) -> Vec<u64> {
        let mut ends: Vec<u64> = Vec::new();
        for r in &self.record[1..] {
            let w = r["wal"].as_u64().unwrap();
            if ends.last() != Some(&w) && w != self.record[0]["wal"].as_u64().unwrap() {
                ends.push(w);
            }
        }
        ends
    }

    /// The state the app saw after the step whose commit ended at `end`
    /// (the header's end: before any).
    fn state_at(&self, end: u64) -> Value {
        self.record
            .iter()
            .rev()
            .find(|r| r["wal"].as_u64().unwrap() <= end)
            .unwrap()["state"]
            .clone()
    }

    /// What DuckDB (this app's version, read-only) finds in a copy of the
    /// database with `wal` as its WAL: every table's rows, or its error.
    fn open_with(&self, wal: &[u8], name: &str) -> Result<Value, String> {
        self.open_image_with(&self.db(), wal, name)
    }

    /// [`Self::open_with`] on another image of the database file.
    fn open_image_with(&self, image: &Path, wal: &[u8], name: &str) -> Result<Value, String> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("copy.duckdb");
        std::fs::copy(image, &db).unwrap();
        std::fs::write(dir.join("copy.duckdb.wal"), wal).unwrap();
        // Opening and reading every row: a check that only counts rows
        // can be answered from metadata (docs/ARCHITECTURE.md).
        let code = "import duckdb, json, sys
try:
    c = duckdb.connect(sys.argv[1], read_only=True); c.execute('SET enable_progress_bar = false')
    out = {}
    for (name,) in c.execute('SELECT table_name FROM duckdb_tables() ORDER BY 1').fetchall():
        n, h = c.execute(f'SELECT count(*), coalesce(sum(hash(x)), 0)::VARCHAR FROM \"{name}\" AS x').fetchone()
        out[name] = [n, h]
except Exception as e:
    print(json.dumps({'error': str(e)})); sys.exit(0)
print(json.dumps({'state': out}))";
        let o = Command::new(&self.py)
            .args(["-c", code, db.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        match v.get("state") {
            Some(s) => Ok(s.clone()),
            None => Err(v["error"].as_str().unwrap().to_string()),
        }
    }
}

/// The apps: PyPI's duckdb 2.0.1 (storage 69, and 64 when asked for
/// v0.10 compatibility), and 1.4.4 (its default, storage 64).
fn apps(ws: &Workspace) -> Vec<(String, Written)> {
    vec![
        ("2.0.1".into(), Written::new(ws, &python(), "v20", None)),
        (
            "2.0.1, v0.10 storage".into(),
            Written::new(ws, &python(), "v20-old", Some("v0.10.0")),
        ),
        ("1.4.4".into(), Written::new(ws, &python14(), "v14", None)),
    ]
}

#[test]
fn a_wal_reads_as_the_commits_the_app_made() {
    let ws = Workspace::new();
    for (app, w) in apps(&ws) {
        let bytes = w.wal();
        let scan = wal::scan(&bytes).unwrap_or_else(|e| panic!("{app}: {e}"));
        assert_eq!(scan.walked.end, End::Clean, "{app}: every entry verifies");
        let ends: Vec<u64> = scan.walked.commits.iter().map(|c| c.end).collect();
        assert_eq!(
            ends,
            w.commit_ends(),
            "{app}: each commit ends where the WAL stood when the app's commit returned"
        );
        assert!(scan.walked.commits.iter().all(|c| !c.checkpoint), "{app}");
        // The binding to the database file: its identifier (main header,
        // bytes 124..140) and iteration, from storage 66 on.
        let file = std::fs::read(w.db()).unwrap();
        let h = Header::parse(&file[..12288], &w.db()).unwrap();
        if h.storage_version >= 66 {
            assert_eq!(
                scan.header.db_identifier.as_ref(),
                Some(&file[124..140].try_into().unwrap()),
                "{app}"
            );
            assert_eq!(scan.header.iteration, Some(h.iteration), "{app}");
        } else {
            assert_eq!(
                scan.header.db_identifier, None,
                "{app}: storage {}",
                h.storage_version
            );
            assert_eq!(scan.header.iteration, None, "{app}");
        }
        println!(
            "{app}: storage {}, WAL {} bytes, header {} bytes, {} entries, {} commits",
            h.storage_version,
            bytes.len(),
            scan.header.len,
            scan.walked.entries,
            scan.walked.commits.len()
        );
    }
}

#[test]
fn a_wal_cut_after_a_commit_replays_exactly_the_commits_before_it() {
    let ws = Workspace::new();
    for (app, w) in apps(&ws) {
        let bytes = w.wal();
        let scan = wal::scan(&bytes).unwrap();
        let mut cuts = vec![scan.header.len];
        cuts.extend(scan.walked.commits.iter().map(|c| c.end));
        let mut applied = Vec::new();
        for (k, &end) in cuts.iter().enumerate() {
            let want = w.state_at(end);
            let got = w.open_with(&bytes[..end as usize], &format!("cut-{k}"));
            assert_eq!(
                got.as_ref(),
                Ok(&want),
                "{app}: cut after commit {k} (byte {end})"
            );
            // A torn tail — part of the next commit — is read as torn
            // here, and ignored by DuckDB: but see below.
            let Some(&next) = cuts.get(k + 1) else {
                continue;
            };
            for torn in [end + 8, (end + next) / 2, next - 1] {
                let cut = &bytes[..torn as usize];
                let s = wal::scan(cut).unwrap();
                assert_eq!(s.walked.commits.len(), k, "{app}: torn at {torn}");
                assert!(
                    matches!(s.walked.end, End::Torn { .. } | End::Clean),
                    "{app}: torn at {torn}: {:?}",
                    s.walked.end
                );
                let got = w.open_with(cut, &format!("torn-{k}-{torn}"));
                if got.as_ref() != Ok(&want) {
                    assert_eq!(got, Ok(w.state_at(next)), "{app}: torn at {torn}: neither");
                    applied.push((k + 1, torn, scan.walked.commits[k].optimistic));
                }
            }
        }
        println!(
            "{app}: {} cuts at commits, each exactly the commits before it; \
             torn cuts replayed as the whole next commit: {applied:?} (commit, byte, optimistic)",
            cuts.len()
        );
        // DuckDB 2.0 drops a commit whose flush is torn. 1.4 replays the row
        // groups of a torn optimistic commit anyway: a WAL cut anywhere but
        // at a commit's end is not a state the app ever acknowledged.
        if app.starts_with("2.0") {
            assert_eq!(applied, vec![], "{app}");
        } else {
            assert!(applied.iter().all(|a| a.2), "{app}: {applied:?}");
        }
    }
}

#[test]
fn a_damaged_entry_is_named_where_duckdb_names_it() {
    let ws = Workspace::new();
    for (app, w) in apps(&ws) {
        let bytes = w.wal();
        let scan = wal::scan(&bytes).unwrap();
        // A byte flipped in the body of the first entry of commit k.
        for k in [
            0,
            scan.walked.commits.len() / 2,
            scan.walked.commits.len() - 1,
        ] {
            let start = if k == 0 {
                scan.header.len
            } else {
                scan.walked.commits[k - 1].end
            };
            let mut bad = bytes.clone();
            bad[start as usize + 16 + 3] ^= 0x20;
            let s = wal::scan(&bad).unwrap();
            let End::BadChecksum { offset, .. } = s.walked.end else {
                panic!("{app}: commit {k}: {:?}", s.walked.end);
            };
            assert_eq!(offset, start, "{app}");
            assert_eq!(
                s.walked.commits.len(),
                k,
                "{app}: the commits before it are intact"
            );
            let err = w
                .open_with(&bad, &format!("bad-{k}"))
                .expect_err("DuckDB opened a WAL with a damaged entry");
            assert!(
                err.contains(&format!("entry at byte position {}", offset + 16)),
                "{app}: DuckDB names another place: {err}"
            );
            // What ducksnap would keep — the WAL cut at the last good
            // commit — opens with exactly those commits.
            let keep = s.committed_to();
            let got = w.open_with(&bad[..keep as usize], &format!("kept-{k}"));
            assert_eq!(got, Ok(w.state_at(keep)), "{app}: commit {k}");
        }
    }
}

#[test]
fn a_wal_from_another_database_is_told_apart() {
    let ws = Workspace::new();
    let a = Written::new(&ws, &python(), "a", None);
    let b = Written::new(&ws, &python(), "b", None);
    let (wa, fb) = (wal::scan(&a.wal()).unwrap(), std::fs::read(b.db()).unwrap());
    assert_ne!(wa.header.db_identifier.unwrap(), fb[124..140]);
    let err = b
        .open_with(&a.wal(), "swapped")
        .expect_err("DuckDB replayed another database's WAL");
    println!("DuckDB on another database's WAL: {err}");
}

#[test]
fn an_optimistic_write_needs_an_image_taken_after_its_commit() {
    // A bulk insert writes its rows into free blocks of the database file
    // before it commits; the WAL holds only pointers to them. The final
    // image served every cut above; an image taken before the commit does
    // not give back the rows.
    let ws = Workspace::new();
    let w = Written::new(&ws, &python(), "v20", None);
    let bytes = w.wal();
    let scan = wal::scan(&bytes).unwrap();
    let bulk = w
        .record
        .iter()
        .position(|r| {
            r["step"]
                .as_str()
                .is_some_and(|s| s.contains("NULL FROM range(1000, 301000)"))
        })
        .unwrap();
    let end = w.record[bulk]["wal"].as_u64().unwrap();
    let before = w.record[bulk - 1]["wal"].as_u64().unwrap();
    assert!(scan.walked.commits.iter().any(|c| c.end == end));
    println!(
        "the bulk commit of 300,000 rows took {} bytes of WAL",
        end - before
    );
    assert!(
        end - before < 100_000,
        "the rows went to the WAL, not the file"
    );
    let want = w.state_at(end);
    let image = w.dir.join("before-bulk.duckdb");
    let got = w.open_image_with(&image, &bytes[..end as usize], "before-bulk");
    assert_ne!(
        got.as_ref(),
        Ok(&want),
        "an image from before the commit served it"
    );
    println!("an image from before the bulk commit, with the WAL through it: {got:?}");
    assert_eq!(w.open_with(&bytes[..end as usize], "after-bulk"), Ok(want));
}

#[test]
fn a_large_commit_can_skip_the_wal_into_a_checkpoint() {
    // DuckDB ≥ 1.5: a commit that triggers an automatic checkpoint and is
    // estimated at `auto_checkpoint_skip_wal_threshold` or more goes
    // straight into the checkpoint (duck_transaction_manager.cpp:320-332).
    // Only the next image of the file holds it: the WAL never does.
    let ws = Workspace::new();
    let db = ws.path().join("skip.duckdb");
    let out = run_python(
        "import duckdb, os, shutil, sys
db = sys.argv[1]
size = lambda: os.path.getsize(db + '.wal') if os.path.exists(db + '.wal') else 0
c = duckdb.connect(db); c.execute('SET enable_progress_bar = false')
c.execute(\"SET checkpoint_threshold = '1MB'\")
c.execute('CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS v FROM range(2000000)')
c.execute('CHECKPOINT')
shutil.copyfile(db, db + '.before')
c.execute(\"INSERT INTO t VALUES (-1, 'small')\")
small = size()
shutil.copyfile(db + '.wal', db + '.small-wal')
c.execute(\"UPDATE t SET v = v || 'x' WHERE i >= 0\")
print(small, size(), flush=True)
os._exit(0)",
        &[db.to_str().unwrap()],
    );
    let sizes: Vec<u64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let before = Header::read_path(&db.with_extension("duckdb.before")).unwrap();
    let after = Header::read_path(&db).unwrap();
    println!(
        "small commit: WAL {} bytes; after the large commit: WAL {} bytes, iteration {} -> {}",
        sizes[0], sizes[1], before.iteration, after.iteration
    );
    let small = wal::scan(&std::fs::read(db.with_extension("duckdb.small-wal")).unwrap()).unwrap();
    assert_eq!(small.walked.commits.len(), 1);
    assert_eq!(small.header.iteration, Some(before.iteration));
    assert!(after.iteration > before.iteration, "no checkpoint ran");
    // The WAL holds no commit of generation N+1: the large commit is only
    // in the file.
    if sizes[1] > 0 {
        let now = wal::scan(&std::fs::read(db.with_extension("duckdb.wal")).unwrap()).unwrap();
        assert_eq!(
            now.walked.commits,
            vec![],
            "the large commit went to the WAL"
        );
    }
    let c = open_ro(&db);
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t"), 2_000_001);
    assert_eq!(
        query_i64(&c, "SELECT count(*) FROM t WHERE v LIKE '%x'"),
        2_000_000,
        "the large commit is in the file"
    );
}

#[test]
fn a_checkpoint_hands_new_commits_to_the_checkpoint_wal() {
    // DuckDB ≥ 1.5: a checkpoint writes a CHECKPOINT entry and a flush into
    // `.wal`, and commits made while it runs go to `.wal.checkpoint`,
    // bound to the next iteration (storage_manager.cpp:251-334). A debug
    // abort before the checkpoint WAL is moved over the WAL leaves both.
    let ws = Workspace::new();
    let db = ws.path().join("ck.duckdb");
    let script = py_script("crash_checkpoint.py");
    let mut found = None;
    for attempt in 1..=60 {
        for s in ["", ".wal", ".wal.checkpoint"] {
            let _ = std::fs::remove_file(format!("{}{s}", db.display()));
        }
        let st = Command::new(python())
            .arg(&script)
            .arg(&db)
            .arg("abort")
            .arg("300000")
            .env_clear()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        if db.with_extension("duckdb.wal.checkpoint").exists() {
            found = Some(attempt);
            break;
        }
    }
    let attempt = found.expect("no checkpoint WAL in 60 debug aborts");
    let file = Header::read_path(&db).unwrap();
    let old = wal::scan(&std::fs::read(db.with_extension("duckdb.wal")).unwrap()).unwrap();
    let new =
        wal::scan(&std::fs::read(db.with_extension("duckdb.wal.checkpoint")).unwrap()).unwrap();
    println!(
        "after {attempt} aborts: file iteration {}, .wal iteration {:?} ({} commits, last a checkpoint: {:?}), \
         .wal.checkpoint iteration {:?} ({} commits)",
        file.iteration,
        old.header.iteration,
        old.walked.commits.len(),
        old.walked.commits.last().map(|c| c.checkpoint),
        new.header.iteration,
        new.walked.commits.len()
    );
    assert_eq!(old.walked.end, End::Clean);
    assert_eq!(new.walked.end, End::Clean);
    let last = old.walked.commits.last().expect("commits in .wal");
    assert!(
        last.checkpoint,
        "the old WAL ends with the checkpoint's marker"
    );
    assert_eq!(
        old.walked.commits.iter().filter(|c| c.checkpoint).count(),
        1
    );
    let n = old.header.iteration.unwrap();
    assert_eq!(
        new.header.iteration,
        Some(n + 1),
        "the checkpoint WAL is bound to N+1"
    );
    assert!(new.walked.commits.iter().all(|c| !c.checkpoint));
    assert!(
        [n, n + 1].contains(&file.iteration),
        "file iteration {} for WALs of {n} and {}",
        file.iteration,
        n + 1
    );
}

#[test]
fn an_optimistic_commits_blocks_stay_until_the_next_checkpoint() {
    // The blocks a committed bulk insert wrote before its commit are not
    // written again before the next checkpoint — not by a bulk insert
    // rolled back after it, another committed one, or a delete of its rows
    // (single_file_block_manager.cpp: a block marked checkpointed is not
    // handed out again until a header frees it). So the last image of the
    // file before a checkpoint serves every commit of its generation.
    let ws = Workspace::new();
    let db = ws.path().join("opt.duckdb");
    let out = run_python(
        "import duckdb, os, shutil, sys
db = sys.argv[1]
c = duckdb.connect(db); c.execute('SET enable_progress_bar = false')
c.execute(\"SET checkpoint_threshold = '10GB'\")
c.execute('CREATE TABLE t (i BIGINT, v VARCHAR)')
c.execute('CHECKPOINT')
shutil.copyfile(db, db + '.0')
c.execute(\"INSERT INTO t SELECT range, md5(range::VARCHAR) FROM range(400000)\")
a = os.path.getsize(db + '.wal')
shutil.copyfile(db, db + '.1')
c.execute(\"BEGIN; INSERT INTO t SELECT range, 'r' FROM range(400000); ROLLBACK\")
c.execute(\"INSERT INTO t SELECT range, 'b' || range FROM range(400000, 800000)\")
c.execute('DELETE FROM t WHERE i < 400000')
shutil.copyfile(db, db + '.2')
n, h = c.execute('SELECT count(*), sum(hash(x))::VARCHAR FROM t AS x').fetchone()
print(a, n, h, flush=True)
os._exit(0)",
        &[db.to_str().unwrap()],
    );
    let f: Vec<&str> = out.split_whitespace().collect();
    let a: u64 = f[0].parse().unwrap();
    let image = |n: u32| std::fs::read(format!("{}.{n}", db.display())).unwrap();
    let (i0, i1, i2) = (image(0), image(1), image(2));
    let bs = Header::parse(&i1[..12288], &db).unwrap().block_size as usize;
    let block = |img: &[u8], b: usize| {
        img.get(12288 + b * bs..12288 + (b + 1) * bs)
            .map(<[u8]>::to_vec)
    };
    // The blocks commit A wrote: those that differ between the images
    // before and after it.
    let blocks = (i1.len() - 12288) / bs;
    let written: Vec<usize> = (0..blocks)
        .filter(|&b| block(&i0, b) != block(&i1, b))
        .collect();
    assert!(written.len() >= 2, "the bulk insert wrote {written:?}");
    let rewritten: Vec<usize> = written
        .iter()
        .copied()
        .filter(|&b| block(&i1, b) != block(&i2, b))
        .collect();
    println!(
        "commit A wrote {} blocks before it committed; {} of them differ in the last image: {rewritten:?}",
        written.len(),
        rewritten.len()
    );
    assert_eq!(rewritten, Vec::<usize>::new());
    // And that last image, with the WAL cut after A, is the state after A.
    let wal = std::fs::read(db.with_extension("duckdb.wal")).unwrap();
    let scan = wal::scan(&wal).unwrap();
    let commit = scan
        .walked
        .commits
        .iter()
        .find(|c| c.end == a)
        .expect("A's end");
    assert!(commit.optimistic);
    let dir = ws.path().join("cut");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x.duckdb"), &i2).unwrap();
    std::fs::write(dir.join("x.duckdb.wal"), &wal[..a as usize]).unwrap();
    let got = run_python(
        "import duckdb, sys
c = duckdb.connect(sys.argv[1], read_only=True); c.execute('SET enable_progress_bar = false')
print(*c.execute('SELECT count(*), sum(hash(x))::VARCHAR FROM t AS x').fetchone())",
        &[dir.join("x.duckdb").to_str().unwrap()],
    );
    let want = run_python(
        "import duckdb
c = duckdb.connect(); c.execute('SET enable_progress_bar = false')
print(*c.execute(\"SELECT count(*), sum(hash(x))::VARCHAR FROM (SELECT range::BIGINT AS i, md5(range::VARCHAR) AS v FROM range(400000)) AS x\").fetchone())",
        &[],
    );
    assert_eq!(
        got.trim(),
        want.trim(),
        "the last image does not serve commit A"
    );
    assert_eq!(f[1], "400000", "the app's final state");
}
