//! The block map read from a DuckDB file without DuckDB
//! (`database::blocks`), against DuckDB's own view of the same file, and
//! the copy-on-write facts a change-proportional capture would rest on,
//! measured on real files (docs/ARCHITECTURE.md, "Which blocks a
//! checkpoint can change").

use std::collections::BTreeSet;
use std::path::Path;

use ducksnap::database::blocks::BlockMap;

/// The workload: each step's SQL, run on the attached database `d`, then a
/// checkpoint. Drops, deletes that free row groups, a table that shrinks
/// the file, bulk inserts (optimistic writes), one rolled back.
const STEPS: [&str; 8] = [
    "CREATE TABLE d.t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000)",
    "DELETE FROM d.t WHERE i < 150000",
    "CREATE TABLE d.u AS SELECT range AS i, range * 2 AS j FROM range(200000)",
    "DROP TABLE d.t",
    "UPDATE d.u SET j = j + 1 WHERE i % 10 = 0",
    "BEGIN; INSERT INTO d.u SELECT range, range FROM range(500000); ROLLBACK",
    "INSERT INTO d.u SELECT range, range FROM range(100000)",
    "CREATE TABLE d.v AS SELECT range AS i FROM range(10); DELETE FROM d.u WHERE i % 2 = 0",
];

/// The database's file after each step of [`STEPS`] (checkpointed and
/// detached), for a block size and a storage version.
fn states(dir: &Path, block_size: u64, storage: Option<&str>) -> Vec<Vec<u8>> {
    let path = dir.join(format!(
        "b{block_size}-{}.duckdb",
        storage.unwrap_or("default")
    ));
    let c = duckdb::Connection::open_in_memory().unwrap();
    let opts = match storage {
        Some(v) => format!("BLOCK_SIZE {block_size}, STORAGE_VERSION '{v}'"),
        None => format!("BLOCK_SIZE {block_size}"),
    };
    let mut out = Vec::new();
    for (i, sql) in STEPS.iter().enumerate() {
        let attach = if i == 0 {
            format!("ATTACH '{}' AS d ({opts})", path.display())
        } else {
            format!("ATTACH '{}' AS d", path.display())
        };
        c.execute_batch(&attach).unwrap();
        c.execute_batch(sql).unwrap();
        c.execute_batch("CHECKPOINT d; DETACH d").unwrap();
        out.push(std::fs::read(&path).unwrap());
    }
    out
}

/// DuckDB's view of a file: (total blocks, free blocks, metadata blocks
/// with their free sub-blocks, blocks holding table data).
type Truth = (u64, u64, Vec<(u64, BTreeSet<u64>)>, BTreeSet<u64>);

fn duckdb_view(file: &Path) -> Truth {
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!("ATTACH '{}' AS d (READ_ONLY)", file.display()))
        .unwrap();
    let (total, free): (i64, i64) = c
        .query_row(
            "SELECT total_blocks, free_blocks FROM pragma_database_size() WHERE database_name = 'd'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut meta = Vec::new();
    let mut q = c
        .prepare(
            "SELECT block_id, free_list::VARCHAR FROM pragma_metadata_info('d') ORDER BY block_id",
        )
        .unwrap();
    let rows = q
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for r in rows {
        let (b, list) = r.unwrap();
        let subs = list
            .trim_matches(['[', ']'])
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| x.trim().parse().unwrap())
            .collect();
        meta.push((b as u64, subs));
    }
    let tables: Vec<String> = c
        .prepare("SELECT table_name FROM duckdb_tables() WHERE database_name = 'd'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut data = BTreeSet::new();
    for t in tables {
        let mut q = c
            .prepare(&format!(
                "SELECT DISTINCT block_id FROM pragma_storage_info('d.{t}') WHERE persistent AND block_id >= 0"
            ))
            .unwrap();
        for b in q.query_map([], |r| r.get::<_, i64>(0)).unwrap() {
            data.insert(b.unwrap() as u64);
        }
    }
    (total as u64, free as u64, meta, data)
}

fn map_of(bytes: &[u8], dir: &Path) -> BlockMap {
    let p = dir.join("state.duckdb");
    std::fs::write(&p, bytes).unwrap();
    BlockMap::read(&std::fs::File::open(&p).unwrap(), &p).unwrap()
}

/// Every state of the workload, at 256 KiB and 16 KiB blocks and storage
/// versions 64 and the bundled one: the block map read from the file
/// agrees with DuckDB — the block count, the number of free blocks, every
/// metadata block and its free sub-blocks — and no block DuckDB reads
/// table data from is listed free.
#[test]
fn the_block_map_is_duckdb_s() {
    let dir = tempfile::tempdir().unwrap();
    for (block_size, storage) in [
        (262_144, None),
        (16_384, None),
        (262_144, Some("v1.0.0")),
        (16_384, Some("v1.0.0")),
    ] {
        for (i, bytes) in states(dir.path(), block_size, storage).iter().enumerate() {
            let what = format!("{block_size} {storage:?} step {i}");
            let map = map_of(bytes, dir.path());
            let p = dir.path().join("state.duckdb");
            let (total, free, meta, data) = duckdb_view(&p);
            assert_eq!(map.block_count, total, "{what}");
            assert_eq!(map.free.len() as u64, free, "{what}");
            let mine: Vec<(u64, BTreeSet<u64>)> = map
                .metadata
                .iter()
                .map(|(b, bits)| (*b, (0..64).filter(|i| bits & (1 << i) != 0).collect()))
                .collect();
            assert_eq!(mine, meta, "{what}: metadata blocks");
            assert!(!data.is_empty() || i == 3, "{what}: no table data seen");
            for b in &data {
                assert!(
                    map.in_use(*b),
                    "{what}: block {b} holds table data but is free"
                );
            }
        }
    }
}

/// What a checkpoint leaves alone, measured: between consecutive states,
/// a block in use under both headers that is not a metadata block is
/// byte-identical; a metadata block in use under both may be rewritten in
/// place (`MetadataManager::Flush` writes a persistent block whose free
/// sub-blocks were filled), but the sub-blocks the older header uses keep
/// their bytes. Two checkpoints apart, a block can be freed and reused: in
/// use under both headers, and different.
#[test]
fn what_a_checkpoint_leaves_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut rewritten_metadata = 0;
    let mut reused_two_apart = 0;
    let mut same_header = 0;
    for (block_size, storage) in [(262_144u64, None), (16_384, Some("v1.0.0"))] {
        let states = states(dir.path(), block_size, storage);
        let maps: Vec<BlockMap> = states.iter().map(|b| map_of(b, dir.path())).collect();
        let block = |s: usize, b: u64| {
            let at = maps[s].offset(b) as usize;
            &states[s][at..at + block_size as usize]
        };
        for n in 0..states.len() - 1 {
            let (old, new) = (&maps[n], &maps[n + 1]);
            // A step with nothing to checkpoint (the rolled-back insert)
            // writes no header; its optimistic writes went to free blocks.
            assert!(new.iteration == old.iteration || new.iteration == old.iteration + 1);
            same_header += usize::from(new.iteration == old.iteration);
            for b in (0..old.block_count).filter(|b| old.in_use(*b) && new.in_use(*b)) {
                if block(n, b) == block(n + 1, b) {
                    continue;
                }
                assert_ne!(
                    new.iteration, old.iteration,
                    "{block_size} step {n}: block {b} in use changed without a new header"
                );
                let Some(free_subs) = old.metadata.get(&b) else {
                    panic!("{block_size} step {n}: data block {b} changed under both headers");
                };
                rewritten_metadata += 1;
                let sub = ((block_size - 8) / 64) & !7;
                for i in (0..64u64).filter(|i| free_subs & (1 << i) == 0) {
                    let r = (8 + i * sub) as usize..(8 + (i + 1) * sub) as usize;
                    assert_eq!(
                        block(n, b)[r.clone()],
                        block(n + 1, b)[r],
                        "{block_size} step {n}: used sub-block {i} of metadata block {b}"
                    );
                }
            }
            if n + 2 < states.len() {
                let far = &maps[n + 2];
                reused_two_apart += (0..old.block_count)
                    .filter(|b| old.in_use(*b) && far.in_use(*b) && !old.metadata.contains_key(b))
                    .filter(|b| block(n, *b) != block(n + 2, *b))
                    .count();
            }
        }
    }
    println!(
        "metadata blocks rewritten in place: {rewritten_metadata}; data blocks in use two checkpoints apart and changed: {reused_two_apart}; steps without a new header: {same_header}"
    );
    assert!(same_header > 0, "the rolled-back insert wrote a header");
    assert!(
        rewritten_metadata > 0,
        "the workload never rewrote a metadata block"
    );
}

/// The chain's premise (docs/ARCHITECTURE.md, "The chain"), measured on
/// every run of consecutive states of the workload, one to seven
/// checkpoints long: a block that no header of the run marks (free,
/// metadata, or past its block count) has the same bytes at both ends. And
/// the headers in between are needed: the marks of the two ends alone miss
/// blocks that changed (freed by one checkpoint, reused by the next).
#[test]
fn the_chain_marks_every_block_that_changed() {
    use ducksnap::capture::chain::{Changed, Marks};
    let dir = tempfile::tempdir().unwrap();
    let (mut runs, mut ends_only_missed) = (0, 0);
    for (block_size, storage) in [(262_144u64, None), (16_384, Some("v1.0.0"))] {
        let states = states(dir.path(), block_size, storage);
        let maps: Vec<BlockMap> = states.iter().map(|b| map_of(b, dir.path())).collect();
        let blocks = |s: usize| (states[s].len() as u64).saturating_sub(12_288) / block_size;
        let block = |s: usize, b: u64| {
            let at = maps[s].offset(b) as usize;
            &states[s][at..at + block_size as usize]
        };
        for n in 0..states.len() {
            for m in n + 1..states.len() {
                runs += 1;
                let mut chain = Changed::new();
                let mut ends = Changed::new();
                for (k, map) in maps.iter().enumerate().take(m + 1).skip(n) {
                    chain.add(&Marks::of(map));
                    if k == n || k == m {
                        ends.add(&Marks::of(map));
                    }
                }
                for b in 0..blocks(n).min(blocks(m)) {
                    let same = block(n, b) == block(m, b);
                    assert!(
                        chain.contains(b) || same,
                        "{block_size} states {n}..{m}: block {b} changed, unmarked"
                    );
                    ends_only_missed += usize::from(!ends.contains(b) && !same);
                }
            }
        }
    }
    println!("{runs} runs; blocks the two ends' marks alone would miss: {ends_only_missed}");
    assert!(
        ends_only_missed > 0,
        "the workload never needed a header in between"
    );
}
