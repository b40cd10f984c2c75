//! An incremental online attempt: when the live header is the mirror's
//! (no checkpoint since the snapshot the mirror equals) or the one after
//! it, only the blocks that can differ are read from the live file into
//! the mirror, the others are taken from that snapshot by hash; DuckDB
//! then checks the whole mirror. docs/ARCHITECTURE.md, "Which blocks a
//! checkpoint can change", says why the rest cannot differ.
//!
//! Read: the header region, every block free or a metadata block under
//! either header, every block past the mirror's block count, every chunk
//! whose bounds differ from the snapshot's, every chunk an earlier attempt
//! of this capture wrote, and the WAL. The window in which no write to the
//! database may happen is those reads, not the whole file.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::copy::{CHUNK_TARGET, copy_files, open_optional};
use super::mirror::{self, Mirror};
use super::online::{kernel_copy, still_the_same};
use super::outcome::{Attempt, AttemptError, Incremental, io_err};
use crate::database::blocks::{BlockMap, BlockMapError};
use crate::database::check;
use crate::database::duckfile::{self, HEADER_REGION, Header, wal_checkpoint_path, wal_path};
use crate::database::stamp::Stamp;
use crate::store::{CaptureMethod, ChunkBatch, ChunkRef, Store};

/// Which chunks of the database an attempt takes from the base snapshot.
struct Plan {
    bounds: Vec<(u64, u64)>,
    known: Vec<Option<ChunkRef>>,
}

/// Whether block `b` is certainly unchanged since the mirror's header `old`
/// under the live header `new` (`new` is `old` or the one after it).
fn unchanged(old: &BlockMap, new: &BlockMap, b: u64) -> bool {
    old.in_use(b)
        && new.in_use(b)
        && !old.metadata.contains_key(&b)
        && !new.metadata.contains_key(&b)
}

/// The chunks of a `size`-byte file under `live` that can be taken from the
/// mirror's snapshot, given the chunks this capture already rewrote.
fn plan(m: &Mirror, live: &BlockMap, size: u64, touched: &BTreeSet<u64>) -> Plan {
    let bs = live.block_size;
    let bounds = duckfile::db_chunk_bounds(size, bs, CHUNK_TARGET);
    let mut base: HashMap<(u64, u64), &ChunkRef> = HashMap::new();
    if let Some(entry) = mirror::db_entry(&m.base) {
        let mut off = 0;
        for c in &entry.chunks {
            base.insert((off, off + c.len), c);
            off += c.len;
        }
    }
    let known = bounds
        .iter()
        .map(|&(start, end)| {
            if start < HEADER_REGION || touched.contains(&start) {
                return None;
            }
            let first = (start - HEADER_REGION) / bs;
            let last = (end - HEADER_REGION).div_ceil(bs);
            let all = (first..last).all(|b| unchanged(&m.map, live, b));
            all.then(|| base.get(&(start, end)).map(|c| (*c).clone()))
                .flatten()
        })
        .collect();
    Plan { bounds, known }
}

/// Every block the plan takes from the mirror's snapshot must carry the
/// same checksum (its first 8 bytes) in the live file as in the mirror: a
/// cheap necessary condition that catches another file at the same path
/// or a wrong premise. `Some(why)` when one does not.
fn tripwire(
    file: &File,
    db: &Path,
    m: &Mirror,
    plan: &Plan,
) -> Result<Option<String>, AttemptError> {
    let mirror = File::open(&m.path).map_err(io_err("open", &m.path))?;
    let bs = m.map.block_size;
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    for (&(start, end), known) in plan.bounds.iter().zip(&plan.known) {
        if known.is_none() {
            continue;
        }
        let mut at = start;
        while at < end {
            file.read_exact_at(&mut a, at).map_err(io_err("read", db))?;
            mirror
                .read_exact_at(&mut b, at)
                .map_err(io_err("read", &m.path))?;
            if a != b {
                return Ok(Some(format!(
                    "block {} differs from the mirror's",
                    (at - HEADER_REGION) / bs
                )));
            }
            at += bs;
        }
    }
    Ok(None)
}

/// What comparing the blocks taken from the snapshot with the live file
/// found.
enum Compared {
    Equal,
    /// The database was written meanwhile: nothing can be said.
    Moved,
    /// These blocks differ: the premise failed somewhere.
    Differ(Vec<u64>),
}

/// The guard of `capture.full_read_every`: reads every chunk the plan takes
/// from the snapshot from the live file and from the mirror (which holds
/// the snapshot's bytes there) and compares them, then checks that the
/// database was not written meanwhile.
fn compare(
    file: &File,
    db: &Path,
    m: &Mirror,
    plan: &Plan,
    stamp: &Stamp,
    header: &Header,
) -> Result<Compared, AttemptError> {
    let mirror = File::open(&m.path).map_err(io_err("open", &m.path))?;
    let bs = m.map.block_size;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut differ = Vec::new();
    for (&(start, end), known) in plan.bounds.iter().zip(&plan.known) {
        if known.is_none() {
            continue;
        }
        let len = (end - start) as usize;
        a.resize(len, 0);
        b.resize(len, 0);
        file.read_exact_at(&mut a, start)
            .map_err(io_err("read", db))?;
        mirror
            .read_exact_at(&mut b, start)
            .map_err(io_err("read", &m.path))?;
        if a == b {
            continue;
        }
        let mut at = start;
        while at < end {
            let r = (at - start) as usize..((at + bs).min(end) - start) as usize;
            if a[r.clone()] != b[r] {
                differ.push((at - HEADER_REGION) / bs);
            }
            at += bs;
        }
    }
    let now = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    if now != *stamp || Header::read_at(file, db)?.iteration != header.iteration {
        return Ok(Compared::Moved);
    }
    Ok(if differ.is_empty() {
        Compared::Equal
    } else {
        Compared::Differ(differ)
    })
}

/// Why an incremental attempt is not possible now (a full attempt follows).
pub(super) struct NotNow(pub(super) String);

/// The live database as an attempt found it before its window.
struct Live {
    stamp: Stamp,
    header: Header,
    map: BlockMap,
}

/// Step 1: the stamp, header and block map of the live file, when the
/// mirror can serve it (the same file, block size, and the mirror's header
/// or the next).
fn look(file: &File, db: &Path, m: &Mirror) -> Result<Result<Live, NotNow>, AttemptError> {
    // The stamp first: a write after it (the map read below included) is
    // seen when the stamp is compared after the copy.
    let stamp = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    let header = Header::read_at(file, db)?;
    let map = match BlockMap::read(file, db) {
        Ok(l) => l,
        // A checkpoint rewrites metadata blocks in place before its header:
        // one caught half-written fails its checksum.
        Err(BlockMapError::Io { .. }) | Err(BlockMapError::Malformed { .. })
            if moved(file, db, &stamp, &header)? =>
        {
            return Err(AttemptError::Unstable(
                "a checkpoint wrote while the block map was read".into(),
            ));
        }
        Err(e) => return Ok(Err(NotNow(e.to_string()))),
    };
    if (stamp.dev, stamp.ino) != (m.record.dev, m.record.ino) {
        return Ok(Err(NotNow(
            "the database file is not the one the mirror was taken from".into(),
        )));
    }
    let (old, new) = (m.map.iteration, map.iteration);
    if map.block_size != m.map.block_size || new < old || new > old + 1 || new != header.iteration {
        return Ok(Err(NotNow(format!(
            "the database is at header {new}, the mirror at {old}"
        ))));
    }
    Ok(Ok(Live { stamp, header, map }))
}

/// Whether the database was written since `stamp`/`header`: then what was
/// read may be torn, and the attempt is retried rather than judged.
fn moved(file: &File, db: &Path, stamp: &Stamp, header: &Header) -> Result<bool, AttemptError> {
    let now = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    Ok(now != *stamp || Header::read_at(file, db)?.iteration != header.iteration)
}

/// Step 5, the window: the WAL and the planned chunks copied from the live
/// file into the mirror, which is cut to the live size. Returns the bytes
/// read.
fn stage(
    file: &File,
    db: &Path,
    m: &Mirror,
    plan: &Plan,
    size: u64,
    touched: &mut BTreeSet<u64>,
) -> Result<u64, AttemptError> {
    let wal = wal_path(db);
    let staged_wal = duckfile::side_path(&m.path, ".wal");
    let mut read_bytes = 0;
    match open_optional(&wal)? {
        Some(w) => {
            let len = w.metadata().map_err(io_err("stat", &wal))?.len();
            kernel_copy(&w, &wal, &staged_wal, len)?;
            read_bytes += len;
        }
        None => match std::fs::remove_file(&staged_wal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &staged_wal)(e).into()),
        },
    }
    let out = OpenOptions::new()
        .write(true)
        .open(&m.path)
        .map_err(io_err("open", &m.path))?;
    let mut buf = Vec::new();
    for (&(start, end), known) in plan.bounds.iter().zip(&plan.known) {
        if known.is_some() {
            continue;
        }
        touched.insert(start);
        buf.resize((end - start) as usize, 0);
        let got = crate::store::read_full_at(file, &mut buf, start).map_err(io_err("read", db))?;
        if got < buf.len() {
            return Err(AttemptError::Unstable(format!(
                "{} shrank during the copy",
                db.display()
            )));
        }
        out.write_all_at(&buf, start)
            .map_err(io_err("write", &m.path))?;
        read_bytes += end - start;
    }
    out.set_len(size).map_err(io_err("truncate", &m.path))?;
    Ok(read_bytes)
}

/// Step 6, the guard, when `every` has passed since the mirror was last
/// known whole: `Ok(true)` compared and equal, `Ok(false)` not compared
/// (not due, or the database moved meanwhile), `Err` blocks differ.
fn guard(
    file: &File,
    db: &Path,
    m: &Mirror,
    plan: &Plan,
    live: &Live,
    every: std::time::Duration,
) -> Result<Result<bool, NotNow>, AttemptError> {
    let due = m.record.compared_at.is_none_or(|t| {
        chrono::Utc::now()
            .signed_duration_since(t)
            .to_std()
            .is_ok_and(|age| age >= every)
    });
    if !due {
        return Ok(Ok(false));
    }
    Ok(
        match compare(file, db, m, plan, &live.stamp, &live.header)? {
            Compared::Equal => Ok(true),
            Compared::Moved => Ok(false),
            Compared::Differ(blocks) => {
                let why = format!(
                    "a full read found {} block(s) the mirror's snapshot has wrong (blocks {}): this capture reads the whole database",
                    blocks.len(),
                    blocks
                        .iter()
                        .take(20)
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                tracing::error!(event = "capture.stale_block", blocks = ?blocks, base = %m.base.id, "{why}");
                Err(NotNow(why))
            }
        },
    )
}

/// One incremental attempt (the steps are docs/ARCHITECTURE.md's, "Which
/// blocks a checkpoint can change"). `touched` holds the offsets of the
/// chunks earlier attempts of this capture wrote into the mirror; `every`
/// is `capture.full_read_every`.
#[allow(clippy::too_many_arguments)]
pub(super) fn incremental_attempt(
    store: &Store,
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    m: &Mirror,
    touched: &mut BTreeSet<u64>,
    every: std::time::Duration,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Result<Attempt, NotNow>, AttemptError> {
    if wal_checkpoint_path(db).exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint is in progress (.wal.checkpoint exists)".into(),
        ));
    }
    let live = match look(file, db, m)? {
        Ok(l) => l,
        Err(n) => return Ok(Err(n)),
    };
    let plan = plan(m, &live.map, live.stamp.size, touched);
    if let Some(why) = tripwire(file, db, m, &plan)? {
        if moved(file, db, &live.stamp, &live.header)? {
            return Err(AttemptError::Unstable(
                "the database was written while the mirror was compared".into(),
            ));
        }
        tracing::warn!(event = "capture.tripwire", reason = %why, "a block the mirror should share with the database differs; reading the whole database");
        return Ok(Err(NotNow(why)));
    }
    mirror::forget(store)?;
    let window = std::time::Instant::now();
    let read_bytes = stage(file, db, m, &plan, live.stamp.size, touched)?;
    let after = Header::read_at(file, db)?;
    let stamp_after = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    tracing::debug!(
        event = "capture.window",
        window_ms = window.elapsed().as_secs_f64() * 1e3,
        read_bytes,
        "incremental copy staged"
    );
    if after.iteration != live.header.iteration {
        return Err(AttemptError::Unstable(
            "the database was written during the copy".into(),
        ));
    }
    still_the_same(db, &live.stamp, &stamp_after)?;
    let compared = match guard(file, db, m, &plan, &live, every)? {
        Ok(c) => c,
        Err(n) => return Ok(Err(n)),
    };
    let staged = File::open(&m.path).map_err(io_err("open", &m.path))?;
    let files = copy_files(
        batch,
        &staged,
        &m.path,
        live.stamp.size,
        &live.header,
        None,
        false,
        Some(&plan.known),
        new_chunks,
    )?;
    Ok(Ok(Attempt {
        files,
        check: check::check_copy(&m.path, &live.header, false),
        header: live.header,
        method: CaptureMethod::Online,
        incremental: Some(Incremental {
            base: m.base.id.clone(),
            read_bytes,
            compared,
        }),
    }))
}
