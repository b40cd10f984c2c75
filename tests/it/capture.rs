//! Capture and store: exact copies, a live writer, deduplication, bad input,
//! and crash safety, all through the real binary on real DuckDB files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ducksnap::database::duckfile::{BUNDLED_STORAGE_VERSION, Header};
use ducksnap::store::{ChunkRef, FileHash, chunk_list_hash};

use crate::helpers::*;

#[test]
fn bundled_duckdb_writes_the_storage_version_we_claim_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.duckdb");
    make_db(&p, "CREATE TABLE t AS SELECT range i FROM range(10)");
    let h = Header::read_path(&p).unwrap();
    assert_eq!(h.storage_version, BUNDLED_STORAGE_VERSION, "{h:?}");
    assert_eq!(h.block_size, 262144);
}

#[test]
fn python_duckdb_headers_parse() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("py.duckdb");
    run_python(
        "import duckdb,sys; c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false'); c.execute('create table t as select range i from range(1000)'); c.close()",
        &[p.to_str().unwrap()],
    );
    let h = Header::read_path(&p).unwrap();
    assert!(h.readable_by_bundled(), "{h:?}");
    assert!(h.iteration >= 1);
}

#[test]
fn quiescent_snapshot_reassembles_byte_identical() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s, random() AS r FROM range(300000);
         CREATE TABLE \"odd \"\"name\" (x INTEGER); INSERT INTO \"odd \"\"name\" VALUES (1), (2);",
    );
    let snap = ws.snapshot();
    assert_eq!(snap["capture"]["method"], "quiescent");
    assert_eq!(snap["check"]["status"], "verified");
    let tables = snap["check"]["tables"].as_array().unwrap();
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "t" && t["rows"] == 300000),
        "{tables:?}"
    );
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "odd \"name" && t["rows"] == 2),
        "{tables:?}"
    );
    let id = snap["id"].as_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let copy = ws.reassemble(id, out.path());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(ws.db()).unwrap(),
        "reassembled copy differs"
    );
    assert!(!copy.with_extension("duckdb.wal").exists());

    // list and show agree.
    let list = ws.json(&["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["verified"], true);
    assert_eq!(list[0]["missing_chunks"], 0);
    let show = ws.json(&["show", id, "--json"]);
    assert_eq!(show["manifest"]["id"], id);
    // Human output works too.
    let out = ws.run(&["list"]);
    assert!(
        out.status.success() && stdout(&out).contains(id),
        "{}",
        stdout(&out)
    );
}

#[test]
fn quiescent_snapshot_includes_an_uncheckpointed_wal() {
    let ws = Workspace::new();
    // A writer that exits without checkpointing leaves a WAL (Python: disable
    // the checkpoint on shutdown).
    run_python(
        "import duckdb,sys
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute('create table t(i integer)')
c.execute('checkpoint')
c.execute('pragma disable_checkpoint_on_shutdown')
c.execute('insert into t select range from range(1000)')
c.close()",
        &[ws.db().to_str().unwrap()],
    );
    assert!(
        ws.db().with_extension("duckdb.wal").exists(),
        "test setup: expected a WAL"
    );
    // The check opens the live file (read-only, under our read lock): it
    // must leave the database and its WAL exactly as they were.
    let wal = ws.db().with_extension("duckdb.wal");
    let before = live_state(&ws);
    let snap = ws.snapshot();
    assert_eq!(
        live_state(&ws),
        before,
        "the snapshot changed the live files"
    );
    assert!(wal.exists());
    let files: Vec<&str> = snap["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["role"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["db", "wal"]);
    let t = snap["check"]["tables"].as_array().unwrap();
    assert_eq!(t[0]["rows"], 1000, "the WAL was replayed in the check");
    let out = tempfile::tempdir().unwrap();
    let copy = ws.reassemble(snap["id"].as_str().unwrap(), out.path());
    assert_eq!(query_i64(&open_ro(&copy), "SELECT count(*) FROM t"), 1000);
}

/// Name, bytes and mtime of every file beside the database.
fn live_state(ws: &Workspace) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let dir = ws.db().parent().unwrap().to_path_buf();
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
                m.modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn leftover_wal_checkpoint_is_part_of_the_snapshot() {
    // A `.wal.checkpoint` beside a database is part of what DuckDB opens
    // (it replays it after a `.wal` that ends in a checkpoint marker, and
    // ignores it otherwise): the snapshot holds it, DuckDB checks the live
    // set in place, and a restore puts back exactly that set.
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i FROM range(5000)",
    );
    let mut ckpt = ws.db().into_os_string();
    ckpt.push(".wal.checkpoint");
    std::fs::write(&ckpt, b"not a WAL").unwrap();
    let before = live_state(&ws);
    let out = ws.run(&["--log-level", "debug", "snapshot", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("checked=\"live\""),
        "expected the check in place: {}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snap = &v["snapshot"];
    assert_eq!(snap["capture"]["method"], "quiescent");
    assert_eq!(snap["check"]["status"], "verified");
    assert_eq!(snap["check"]["tables"][0]["rows"], 5000);
    let roles: Vec<&str> = snap["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["db", "wal_checkpoint"]);
    assert_eq!(live_state(&ws), before, "the live files are untouched");
    let id = snap["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = ws.reassemble(id, dir.path());
    let mut restored = copy.into_os_string();
    restored.push(".wal.checkpoint");
    assert_eq!(std::fs::read(&restored).unwrap(), b"not a WAL");
    let staging: Vec<_> = std::fs::read_dir(ws.store_dir().join("staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging leftovers: {staging:?}");
}

#[test]
fn newer_storage_version_is_recorded_not_rejected() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t(i INTEGER)");
    // Pretend a newer DuckDB wrote it: bump serialization_compatibility in the
    // active header.
    let mut bytes = std::fs::read(ws.db()).unwrap();
    let h = Header::parse(&bytes, &ws.db()).unwrap();
    let active = if u64::from_le_bytes(bytes[4104..4112].try_into().unwrap()) == h.iteration {
        4096
    } else {
        8192
    };
    bytes[active + 56..active + 64].copy_from_slice(&(BUNDLED_STORAGE_VERSION + 1).to_le_bytes());
    std::fs::write(ws.db(), &bytes).unwrap();
    let snap = ws.snapshot();
    assert_eq!(snap["check"]["status"], "not_verified");
    let reason = snap["check"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("storage version {}", BUNDLED_STORAGE_VERSION + 1)),
        "{reason}"
    );
    let list = ws.json(&["list", "--json"]);
    assert_eq!(list[0]["verified"], false);
}

/// A separate process holds a read-write connection and keeps invariants;
/// every snapshot listed as good reassembles, opens and satisfies them.
/// Checkpoints are frequent: a one-shot snapshot primes the mirror (reads
/// the whole file outside its window) and then reads what changed since.
#[test]
fn live_writer_never_yields_a_torn_snapshot() {
    let (incremental, primed) = live_writer("25", "120");
    assert!(
        primed >= 1,
        "no primed capture was exercised ({incremental} incremental)"
    );
}

/// The same with checkpoints rare and bulk inserts (optimistic writes into
/// free blocks, referenced by the WAL) frequent: most snapshots are then
/// incremental (no checkpoint or one since the last), and every one must
/// still satisfy the app's invariants.
#[test]
fn live_writer_with_rare_checkpoints_never_yields_a_torn_snapshot() {
    let (incremental, _) = live_writer("400", "30");
    assert!(incremental >= 1, "no incremental capture was exercised");
}

/// Snapshots while `live_writer.py` runs with these CHECKPOINT_EVERY and
/// BULK_EVERY; returns how many were incremental, and how many of those
/// primed the mirror first.
fn live_writer(checkpoint_every: &str, bulk_every: &str) -> (usize, usize) {
    let ws = Workspace::new();
    ws.write_config("[capture]\nattempts = 30\nbackoff = \"20ms\"\ntimeout = \"60s\"\n");
    let stop = ws.path().join("stop");
    let mut writer = Command::new(python())
        .arg(py_script("live_writer.py"))
        .arg(ws.db())
        .arg(&stop)
        .args([checkpoint_every, bulk_every])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let mut good = 0;
    let mut busy = 0;
    let started = Instant::now();
    while good < 24 && started.elapsed() < Duration::from_secs(300) {
        let out = ws.run(&["snapshot", "--json", "--reason", "live"]);
        match out.status.code() {
            Some(0) => good += 1,
            Some(4) => busy += 1, // could not get a consistent copy in time: a clean refusal
            other => panic!("snapshot failed with {other:?}: {}", stderr(&out)),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&stop, b"").unwrap();
    let tail: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(writer.wait().unwrap().success(), "writer failed: {tail:?}");
    println!("live writer: {good} good snapshots, {busy} refused as busy, writer {tail:?}");
    assert!(good >= 20, "only {good} snapshots succeeded ({busy} busy)");

    let list = ws.json(&["list", "--json"]);
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), good);
    let mut counters = Vec::new();
    let mut online = 0;
    let mut with_wal = 0;
    let mut incremental = 0;
    let mut primed = 0;
    for e in entries.iter().rev() {
        let id = e["id"].as_str().unwrap();
        assert_eq!(e["verified"], true);
        let m = ws.manifest(id);
        if m.capture.method == ducksnap::store::CaptureMethod::Online {
            online += 1;
        }
        if m.file("wal").is_some() {
            with_wal += 1;
        }
        incremental += usize::from(m.capture.incremental.is_some());
        primed += usize::from(
            m.capture
                .incremental
                .as_ref()
                .is_some_and(|i| i.primed_bytes > 0),
        );
        let dir = tempfile::tempdir().unwrap();
        let copy = ws.reassemble(id, dir.path());
        assert_invariants(&copy, id);
        let n = query_i64(&open_ro(&copy), "SELECT n FROM counter");
        counters.push(n);
    }
    assert!(
        counters.windows(2).all(|w| w[0] <= w[1]),
        "counter went backwards: {counters:?}"
    );
    assert!(online >= 20, "expected online captures, got {online}");
    println!(
        "live writer: {online} online captures ({incremental} incremental, {primed} of them primed), {with_wal} with a WAL, counters {counters:?}"
    );
    (incremental, primed)
}

#[test]
fn small_contiguous_update_deduplicates() {
    let ws = Workspace::new();
    let size = make_big(&ws, 2_500_000);
    assert!(size >= 64 << 20, "test database is only {size} bytes");
    let first = ws.snapshot();
    let first_new = first["bytes_new"].as_u64().unwrap();
    // Update ~1% of rows in one contiguous range (recent records), checkpoint.
    run_python(
        "import duckdb,sys
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute('UPDATE events SET amount = amount + 1, kind = \\'edited\\' WHERE id BETWEEN 2400000 AND 2424999')
c.execute('CHECKPOINT')
c.close()",
        &[ws.db().to_str().unwrap()],
    );
    let size2 = std::fs::metadata(ws.db()).unwrap().len();
    let second = ws.snapshot();
    let new = second["bytes_new"].as_u64().unwrap();
    let pct = 100.0 * new as f64 / size2 as f64;
    println!(
        "dedup: database {size2} bytes; first snapshot stored {first_new} bytes; second stored {new} new bytes = {pct:.2}% of the database"
    );
    assert!(
        new * 10 <= size2,
        "second snapshot added {new} bytes, more than 10% of {size2}"
    );
    // And the second reassembles exactly.
    let dir = tempfile::tempdir().unwrap();
    let copy = ws.reassemble(second["id"].as_str().unwrap(), dir.path());
    assert_eq!(
        blake3::hash(&std::fs::read(&copy).unwrap()),
        blake3::hash(&std::fs::read(ws.db()).unwrap())
    );
}

#[test]
fn missing_database_is_a_clear_error_and_store_unchanged() {
    let ws = Workspace::new();
    // No store yet: nothing gets created.
    let out = ws.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not exist") && stderr(&out).contains("app.duckdb"),
        "{}",
        stderr(&out)
    );
    assert!(
        !ws.store_dir().exists(),
        "a failed snapshot created the store"
    );
    // With a store: unchanged.
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS x");
    ws.snapshot();
    let before = tree_digest(&ws.store_dir());
    std::fs::remove_file(ws.db()).unwrap();
    let out = ws.run(&["snapshot", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(tree_digest(&ws.store_dir()), before, "store changed");
}

#[test]
fn non_duckdb_files_are_refused() {
    let ws = Workspace::new();
    for (what, content) in [
        ("text", b"hello, I am not a database\n".repeat(1000)),
        ("empty", Vec::new()),
        ("sqlite-ish", {
            let mut v = b"SQLite format 3\0".to_vec();
            v.resize(20000, 0);
            v
        }),
    ] {
        std::fs::write(ws.db(), &content).unwrap();
        let out = ws.run(&["snapshot"]);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a DuckDB database"),
            "{what}: {}",
            stderr(&out)
        );
        assert!(!ws.store_dir().exists(), "{what}: store created");
    }
    std::fs::remove_file(ws.db()).unwrap();
    std::fs::create_dir(ws.db()).unwrap();
    let out = ws.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hostile_ids_are_rejected() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS x");
    ws.snapshot();
    let long = "a".repeat(300);
    for id in [
        "../x",
        "..",
        "",
        &long,
        "20261126T084512Z-3f9a/../../etc",
        "20261126T084512Z-3F9A",
        "20261399T084512Z-3f9a",
        "/etc/passwd",
    ] {
        let out = ws.run(&["show", id]);
        assert_eq!(out.status.code(), Some(2), "{id:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid snapshot"),
            "{id:?}: {}",
            stderr(&out)
        );
    }
    let out = ws.run(&["show", "20200101T000000Z-0000"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("no snapshot"), "{}", stderr(&out));
    for (arg, val) in [
        ("--reason", "../../x"),
        ("--reason", ""),
        ("--label", "a\nb"),
    ] {
        let out = ws.run(&["snapshot", arg, val]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{arg} {val:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn corrupt_catalog_is_rebuilt() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS x");
    let a = ws.snapshot()["id"].as_str().unwrap().to_string();
    let b = ws.snapshot()["id"].as_str().unwrap().to_string();
    let cat = ws.store_dir().join("snapshot_metadata.json");
    for garbage in [&b"{ not json"[..], b"", br#"{"format":1,"snapshots":[]}"#] {
        std::fs::write(&cat, garbage).unwrap();
        let ids = ws.list_ids();
        assert_eq!(ids, [b.as_str(), a.as_str()], "newest first");
        let rebuilt: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cat).unwrap()).unwrap();
        assert_eq!(rebuilt["snapshots"].as_array().unwrap().len(), 2);
    }
    std::fs::remove_file(&cat).unwrap();
    assert_eq!(ws.json(&["list", "--json"]).as_array().unwrap().len(), 2);
    assert!(cat.exists());
}

/// Each commit adds its line to the catalog instead of reading every
/// manifest again: after snapshots, pins and a prune the catalog must be
/// exactly the one rebuilt from the manifests.
#[test]
fn catalog_kept_up_to_date_matches_a_rebuild() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS x");
    let cat = ws.store_dir().join("snapshot_metadata.json");
    let read =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&cat).unwrap()).unwrap() };
    let rebuilt = || {
        let kept = read();
        std::fs::remove_file(&cat).unwrap();
        ws.json(&["list", "--json"]);
        let fresh = read();
        assert_eq!(kept, fresh, "kept catalog differs from a rebuilt one");
        fresh
    };
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(ws.snapshot()["id"].as_str().unwrap().to_string());
    }
    let cat_ids = |v: &serde_json::Value| -> Vec<String> {
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let after_snapshots = rebuilt();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(cat_ids(&after_snapshots), newest_first);

    let out = ws.run(&["pin", &ids[1]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pinned = rebuilt();
    assert_eq!(pinned["snapshots"][2]["pinned"], true);
    let out = ws.run(&["unpin", &ids[1]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rebuilt()["snapshots"][2]["pinned"], false);

    ws.write_config("[retention]\nkeep_last = 2\n");
    let out = ws.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cat_ids(&rebuilt()), newest_first[..2]);
    // And a snapshot after the prune still lands on top of what is left.
    let last = ws.snapshot()["id"].as_str().unwrap().to_string();
    let ids_now = cat_ids(&rebuilt());
    assert_eq!(ids_now.len(), 3);
    assert_eq!(ids_now[0], last);
}

#[test]
fn missing_chunk_and_bad_manifest_are_reported() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i, random() r FROM range(100000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let m = ws.manifest(&id);
    let victim = m.files[0].chunks.last().unwrap().hash.clone();
    std::fs::remove_file(ws.store().chunk_path(&victim)).unwrap();

    let list = ws.json(&["list", "--json"]);
    assert_eq!(list[0]["missing_chunks"], 1);
    let out = ws.run(&["list"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
    let out = ws.run(&["show", &id]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains(&victim), "{}", stderr(&out));

    // A truncated manifest: listed as unreadable, no panic.
    let mpath = ws.store_dir().join("snapshots").join(format!("{id}.json"));
    let text = std::fs::read(&mpath).unwrap();
    std::fs::write(&mpath, &text[..text.len() / 2]).unwrap();
    let out = ws.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unreadable manifest"),
        "{}",
        stderr(&out)
    );
    let out = ws.run(&["show", &id]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("unreadable"), "{}", stderr(&out));
    // A stray file in snapshots/ is reported, not fatal.
    std::fs::write(ws.store_dir().join("snapshots/../../x.json"), b"{}").unwrap_or(());
    std::fs::write(ws.store_dir().join("snapshots/notes.txt"), b"hi").unwrap();
    let out = ws.run(&["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The chunk-list hash as its definition says (docs/ARCHITECTURE.md): one
/// keyed-BLAKE3 update per chunk, its 32 hash bytes then its length — the
/// hash every stored manifest carries, whatever the code computes it with.
fn chunk_list_hash_by_definition(chunks: &[ChunkRef]) -> Option<String> {
    let mut h = blake3::Hasher::new_derive_key("ducksnap 2026-11 file chunk list v1");
    for c in chunks {
        h.update(blake3::Hash::from_hex(&c.hash).ok()?.as_bytes());
        h.update(&c.len.to_le_bytes());
    }
    Some(h.finalize().to_hex().to_string())
}

#[test]
fn chunk_list_hash_is_its_definition() {
    let chunk = |i: u64| ChunkRef {
        hash: blake3::hash(&i.to_le_bytes()).to_hex().to_string(),
        len: 1 + i * 4099 % 262_144,
    };
    for n in [0, 1, 2, 25, 26, 1000, 40_000] {
        let chunks: Vec<ChunkRef> = (0..n).map(chunk).collect();
        let ours = chunk_list_hash(&chunks).unwrap();
        assert_eq!(
            Some(ours),
            chunk_list_hash_by_definition(&chunks),
            "{n} chunks"
        );
    }
    // Not a chunk name: upper case, short, not hex — no hash at all.
    let mut bad = vec![chunk(1), chunk(2)];
    for name in [
        bad[1].hash.to_uppercase(),
        bad[1].hash[1..].to_string(),
        "g".repeat(64),
    ] {
        bad[1].hash = name.clone();
        assert_eq!(chunk_list_hash(&bad), None, "{name}");
    }
}

#[test]
fn file_hash_binds_the_chunk_list_and_old_manifests_still_restore() {
    let ws = Workspace::new();
    make_db(
        &ws.db(),
        "CREATE TABLE t AS SELECT range i, random() r FROM range(300000)",
    );
    let id = ws.snapshot()["id"].as_str().unwrap().to_string();
    let mpath = ws.store_dir().join("snapshots").join(format!("{id}.json"));
    let original = std::fs::read_to_string(&mpath).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(m["files"][0]["hash_of"], "chunk_list");
    let chunks = m["files"][0]["chunks"].as_array().unwrap().clone();
    assert!(chunks.len() >= 4, "test setup: want several chunks");
    // Two equally long chunks swapped: every chunk is still present and
    // intact and the lengths add up, but the file would come out scrambled.
    let (a, b) = (1, 2);
    assert_eq!(chunks[a]["len"], chunks[b]["len"]);
    assert_ne!(chunks[a]["hash"], chunks[b]["hash"]);
    m["files"][0]["chunks"][a] = chunks[b].clone();
    m["files"][0]["chunks"][b] = chunks[a].clone();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = ws.run(&["verify", &id, "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(stdout(&out).contains("altered"), "{}", stdout(&out));
    let to = ws.path().join("scrambled.duckdb");
    let out = ws.run(&["restore", &id, "--to", to.to_str().unwrap(), "--yes"]);
    assert!(!out.status.success(), "a scrambled restore succeeded");
    assert!(
        !to.exists(),
        "a scrambled file was left at {}",
        to.display()
    );

    // A manifest in the older scheme (hash of the bytes, no hash_of) still
    // restores, and its hash is still enforced.
    let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
    let bytes_hash = blake3::hash(&std::fs::read(ws.db()).unwrap())
        .to_hex()
        .to_string();
    m["files"][0].as_object_mut().unwrap().remove("hash_of");
    m["files"][0]["hash"] = bytes_hash.into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = ws.run(&["verify", &id]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = ws.run(&["restore", &id, "--to", to.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(ws.db()).unwrap());
    m["files"][0]["hash"] = "0".repeat(64).into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let to2 = ws.path().join("wrong.duckdb");
    let out = ws.run(&["restore", &id, "--to", to2.to_str().unwrap(), "--yes"]);
    assert!(!out.status.success(), "a wrong bytes hash was not caught");
    assert!(!to2.exists());
}

#[test]
fn store_with_foreign_marker_is_refused() {
    let ws = Workspace::new();
    make_db(&ws.db(), "CREATE TABLE t AS SELECT 1 AS x");
    std::fs::create_dir_all(ws.store_dir()).unwrap();
    std::fs::write(ws.store_dir().join("precious.txt"), b"user data").unwrap();
    let out = ws.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a ducksnap store"),
        "{}",
        stderr(&out)
    );
    std::fs::write(ws.store_dir().join("STORE"), b"ducksnap-store 99\n").unwrap();
    let out = ws.run(&["snapshot"]);
    assert!(
        stderr(&out).contains("ducksnap-store 99"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(ws.store_dir().join("precious.txt")).unwrap(),
        b"user data"
    );
}

/// kill -9 the CLI at random instants during snapshots of a large database:
/// afterwards only complete snapshots are listed, each reassembles to its
/// recorded hash, and staging is empty after the next open.
#[test]
fn kill_9_during_snapshots_leaves_a_consistent_store() {
    let ws = Workspace::new();
    make_big(&ws, 1_500_000);
    let t0 = Instant::now();
    ws.snapshot();
    let full = t0.elapsed();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut killed = 0;
    let mut completed = 0;
    let mut round = 0;
    while killed < 20 && round < 80 {
        round += 1;
        if round % 2 == 0 {
            // New content, so this snapshot has chunks to write.
            let lo = rng.below(1_400_000);
            run_python(
                "import duckdb,sys
c=duckdb.connect(sys.argv[1]); c.execute('SET enable_progress_bar = false')
c.execute(f'UPDATE events SET amount = random() WHERE id BETWEEN {sys.argv[2]} AND {int(sys.argv[2]) + 30000}')
c.execute('CHECKPOINT')
c.close()",
                &[ws.db().to_str().unwrap(), &lo.to_string()],
            );
        }
        let mut child = ws
            .cmd(&["snapshot", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 + 1));
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(_) => completed += 1,
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    println!(
        "kill -9: {killed} killed mid-snapshot, {completed} completed before the kill (full snapshot {full:?})"
    );
    assert!(
        killed >= 20,
        "only {killed} kills landed mid-snapshot in {round} rounds"
    );

    let list = ws.json(&["list", "--json"]);
    let staging: Vec<_> = std::fs::read_dir(ws.store_dir().join("staging"))
        .unwrap()
        .collect();
    assert!(
        staging.is_empty(),
        "staging leftovers after open: {staging:?}"
    );
    for e in list.as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        assert_eq!(e["missing_chunks"], 0, "{id}");
        let m = ws.manifest(id);
        let dir = tempfile::tempdir().unwrap();
        let copy = ws.reassemble(id, dir.path()); // checks every chunk and the whole-file hash
        // Independently: cut the reassembled bytes at the manifest's chunk
        // lengths, hash the pieces, and compare the list's hash.
        let bytes = std::fs::read(&copy).unwrap();
        let mut at = 0usize;
        let pieces: Vec<ChunkRef> = m.files[0]
            .chunks
            .iter()
            .map(|c| {
                let piece = &bytes[at..at + c.len as usize];
                at += c.len as usize;
                ChunkRef {
                    hash: blake3::hash(piece).to_hex().to_string(),
                    len: c.len,
                }
            })
            .collect();
        assert_eq!(at, bytes.len());
        assert_eq!(m.files[0].hash_of, FileHash::ChunkList);
        assert_eq!(chunk_list_hash(&pieces).unwrap(), m.files[0].hash);
    }
    // The store still works.
    ws.snapshot();
    assert!(Path::new(&ws.store_dir().join("STORE")).exists());
}
