//! An incremental online attempt: only the blocks that can differ since
//! the header the mirror follows are read from the live file into the
//! mirror; DuckDB then checks the whole mirror, and chunks none of whose
//! blocks can differ are taken from the mirror's snapshot by hash.
//! docs/ARCHITECTURE.md, "Which blocks a checkpoint can change", says why
//! the rest cannot differ: the marks ([`Marks`]) of the mirror's header, of
//! the live one, and — when they are more than one apart — of every header
//! in between, which only the chain ([`super::chain`]) can know.
//!
//! Read, in the window in which no write to the database may happen: the
//! header region, every marked block (free or metadata under one of those
//! headers, or past one's block count), and the WAL. Nothing else: what
//! it read is written into the mirror after it ([`Staged`]).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::chain::{Chain, Changed, Marks};
use super::copy::{CHUNK_TARGET, copy_files, open_optional};
use super::mirror::{self, Mirror};
use super::online::{kernel_copy, still_the_same};
use super::outcome::{Attempt, AttemptError, Incremental, Keep, io_err};
use crate::database::blocks::{BlockMap, BlockMapError};
use crate::database::check;
use crate::database::duckfile::{self, HEADER_REGION, Header, wal_checkpoint_path, wal_path};
use crate::database::stamp::Stamp;
use crate::store::{CaptureMethod, ChunkBatch, ChunkRef, Manifest, Store};

/// What the mirror holds for this capture: since which header its blocks
/// equal the live file's, except the marked ones.
pub(super) struct Basis {
    pub(super) path: PathBuf,
    /// The stored snapshot the mirror equals, outside the blocks this
    /// capture wrote into it (none: every chunk is hashed afresh).
    pub(super) base: Option<std::sync::Arc<Manifest>>,
    /// The live file the mirror follows (device, inode).
    pub(super) file: (u64, u64),
    /// The header since whose writing every block it does not mark is the
    /// same in the mirror and the live file.
    pub(super) since: Marks,
    /// When every block of the mirror was last known to equal the live
    /// file's.
    pub(super) compared_at: Option<DateTime<Utc>>,
    /// Bytes a prime read to get here (0: none was needed).
    pub(super) primed_bytes: u64,
    /// The live file's size and mtime when the mirror was taken, when it
    /// had been quiet before (see `mirror::Record::quiet_ctime`).
    pub(super) quiet: Option<(u64, (i64, i64))>,
}

impl Basis {
    /// The mirror as its record says: equal to its snapshot, at its header.
    pub(super) fn of(m: &Mirror) -> Basis {
        Basis {
            path: m.path.clone(),
            base: Some(m.base.clone()),
            file: (m.record.dev, m.record.ino),
            since: Marks::of(&m.map),
            compared_at: m.record.compared_at,
            primed_bytes: 0,
            quiet: m.record.quiet_ctime.map(|t| (m.record.size, t)),
        }
    }
}

/// What an incremental attempt needs besides the database and the mirror.
pub(super) struct Context<'a> {
    pub(super) store: &'a Store,
    pub(super) batch: &'a ChunkBatch<'a>,
    pub(super) chain: Option<&'a Chain>,
    /// `capture.full_read_every`.
    pub(super) every: Duration,
}

/// Which chunks of the database an attempt takes from the base snapshot,
/// and which byte ranges it reads from the live file.
struct Plan {
    known: Vec<Option<ChunkRef>>,
    reads: Vec<(u64, u64)>,
}

/// The data blocks of a `size`-byte file.
fn blocks_in(size: u64, bs: u64) -> u64 {
    size.saturating_sub(HEADER_REGION).div_ceil(bs)
}

/// The chunks of a `size`-byte file that can be taken from the base
/// snapshot (none of their blocks changed or written by this capture), and
/// the ranges to read: the header region and every changed block.
fn plan(basis: &Basis, changed: &Changed, bs: u64, size: u64, touched: &BTreeSet<u64>) -> Plan {
    let bounds = duckfile::db_chunk_bounds(size, bs, CHUNK_TARGET);
    let mut base: HashMap<(u64, u64), &ChunkRef> = HashMap::new();
    if let Some(entry) = basis.base.as_deref().and_then(mirror::db_entry) {
        let mut off = 0;
        for c in &entry.chunks {
            base.insert((off, off + c.len), c);
            off += c.len;
        }
    }
    let known = bounds
        .iter()
        .map(|&(start, end)| {
            if start < HEADER_REGION {
                return None;
            }
            let first = (start - HEADER_REGION) / bs;
            let last = (end - HEADER_REGION).div_ceil(bs);
            let all = (first..last).all(|b| !changed.contains(b) && !touched.contains(&b));
            all.then(|| base.get(&(start, end)).map(|c| (*c).clone()))
                .flatten()
        })
        .collect();
    let mut reads: Vec<(u64, u64)> = vec![(0, size.min(HEADER_REGION))];
    let n = blocks_in(size, bs);
    let marked = changed
        .blocks
        .iter()
        .copied()
        .take_while(|&b| b < n.min(changed.from))
        .chain(changed.from..n);
    for b in marked {
        let (start, end) = (
            HEADER_REGION + b * bs,
            (HEADER_REGION + (b + 1) * bs).min(size),
        );
        match reads.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => reads.push((start, end)),
        }
    }
    Plan { known, reads }
}

/// Every block the mirror is trusted for (not changed) must carry the same
/// checksum (its first 8 bytes) in the live file as in the mirror: a cheap
/// necessary condition that catches another file at the same path or a
/// wrong premise. `Some(why)` when one does not.
fn tripwire(
    file: &File,
    db: &Path,
    basis: &Basis,
    changed: &Changed,
    live: &BlockMap,
    size: u64,
) -> Result<Option<String>, AttemptError> {
    let mirror = File::open(&basis.path).map_err(io_err("open", &basis.path))?;
    let bs = live.block_size;
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    for block in (0..blocks_in(size, bs)).filter(|&x| !changed.contains(x)) {
        let at = HEADER_REGION + block * bs;
        read_live(file, db, &mut a, at)?;
        let got = mirror.read_exact_at(&mut b, at);
        if got.is_err() || a != b {
            return Ok(Some(format!("block {block} differs from the mirror's")));
        }
    }
    Ok(None)
}

/// Reads `buf.len()` bytes of the live file at `at`. A file that ends
/// before them was cut by a checkpoint meanwhile (DuckDB truncates free
/// blocks at the end): the attempt is retried, not failed.
fn read_live(file: &File, db: &Path, buf: &mut [u8], at: u64) -> Result<(), AttemptError> {
    match file.read_exact_at(buf, at) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(AttemptError::Unstable(
            format!("{} shrank while it was read", db.display()),
        )),
        Err(e) => Err(io_err("read", db)(e).into()),
    }
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

/// The guard of `capture.full_read_every`: reads every block the window
/// did not read (those the mirror is trusted for) from the live file and
/// from the mirror and compares them, then checks that the database was not
/// written meanwhile.
fn compare(file: &File, db: &Path, basis: &Basis, live: &Live) -> Result<Compared, AttemptError> {
    let mirror = File::open(&basis.path).map_err(io_err("open", &basis.path))?;
    let bs = live.map.block_size;
    let (mut a, mut b) = (vec![0u8; bs as usize], vec![0u8; bs as usize]);
    let mut differ = Vec::new();
    let size = live.stamp.size;
    for block in (0..blocks_in(size, bs)).filter(|&x| !live.changed.contains(x)) {
        let at = HEADER_REGION + block * bs;
        let len = (size - at).min(bs) as usize;
        match read_live(file, db, &mut a[..len], at) {
            Ok(()) => {}
            Err(AttemptError::Unstable(_)) => return Ok(Compared::Moved),
            Err(e) => return Err(e),
        }
        mirror
            .read_exact_at(&mut b[..len], at)
            .map_err(io_err("read", &basis.path))?;
        if a[..len] != b[..len] {
            differ.push(block);
        }
    }
    if moved(file, db, &live.stamp, &live.header)? {
        return Ok(Compared::Moved);
    }
    Ok(if differ.is_empty() {
        Compared::Equal
    } else {
        Compared::Differ(differ)
    })
}

/// Why an incremental attempt is not possible now.
pub(super) enum NotNow {
    /// Headers were written since the mirror's that nobody saw: a prime
    /// brings the mirror up to date, then the attempt can be made.
    Gap(String),
    /// Not this database, layout or premise: a full attempt follows.
    Refused(String),
}

/// The live database as an attempt found it before its window, and the
/// blocks that can differ from the mirror's.
struct Live {
    stamp: Stamp,
    header: Header,
    map: BlockMap,
    changed: Changed,
    /// Not written since the mirror was taken (its stamp says so): the
    /// tripwire has nothing to check.
    untouched: bool,
}

/// Step 1: the stamp, header and block map of the live file, and what can
/// have changed since the mirror's header.
fn look(
    file: &File,
    db: &Path,
    basis: &Basis,
    chain: Option<&Chain>,
) -> Result<Result<Live, NotNow>, AttemptError> {
    // The stamp first: a write after it (the map read below included) is
    // seen when the stamp is compared after the copy.
    let stamp = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    let header = Header::read_at(file, db)?;
    let map = match BlockMap::read(file, db) {
        Ok(l) if l.iteration == header.iteration => l,
        Ok(_) => {
            return Err(AttemptError::Unstable(
                "a checkpoint wrote while the block map was read".into(),
            ));
        }
        // A checkpoint rewrites metadata blocks in place before its header:
        // one caught half-written fails its checksum.
        Err(BlockMapError::Io { .. }) | Err(BlockMapError::Malformed { .. })
            if moved(file, db, &stamp, &header)? =>
        {
            return Err(AttemptError::Unstable(
                "a checkpoint wrote while the block map was read".into(),
            ));
        }
        Err(e) => return Ok(Err(NotNow::Refused(e.to_string()))),
    };
    let id = (stamp.dev, stamp.ino);
    if let Some(c) = chain {
        c.observe(id, &map);
    }
    if id != basis.file {
        return Ok(Err(NotNow::Refused(
            "the database file is not the one the mirror was taken from".into(),
        )));
    }
    let (old, new) = (basis.since.iteration, map.iteration);
    if map.block_size != basis.since.block_size || new < old {
        return Ok(Err(NotNow::Refused(format!(
            "the database is at header {new}, the mirror at {old}"
        ))));
    }
    let mut changed = Changed::new();
    if new == old && basis.quiet == Some((stamp.size, stamp.ctime)) {
        // The file was quiet when the mirror was taken and has not been
        // written since (its ctime would have moved): nothing changed.
        return Ok(Ok(Live {
            stamp,
            header,
            map,
            changed,
            untouched: true,
        }));
    }
    changed.add(&basis.since);
    changed.add(&Marks::of(&map));
    if new > old + 1 {
        let Some(run) = chain.and_then(|c| c.between(id, old + 1, new - 1)) else {
            return Ok(Err(NotNow::Gap(format!(
                "the database is at header {new}, the mirror at {old}, and not every header between was seen"
            ))));
        };
        for m in &run {
            changed.add(m);
        }
    }
    Ok(Ok(Live {
        stamp,
        header,
        map,
        changed,
        untouched: false,
    }))
}

/// Whether the database was written since `stamp`/`header`: then what was
/// read may be torn, and the attempt is retried rather than judged.
fn moved(file: &File, db: &Path, stamp: &Stamp, header: &Header) -> Result<bool, AttemptError> {
    let now = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    Ok(now != *stamp || Header::read_at(file, db)?.iteration != header.iteration)
}

/// At most this many bytes (WAL and planned ranges) a window holds in
/// memory; a larger window writes into the mirror as it reads.
const WINDOW_BUFFER: u64 = 64 << 20;

/// What a window read. Held in memory until the window's checks are done:
/// a write into the mirror can wait for the kernel to write back dirty
/// pages (a store busy with other snapshots), which would stretch the
/// window over the app's next checkpoint. Past [`WINDOW_BUFFER`] it was
/// written into the mirror as it was read.
enum Staged {
    Held {
        /// The WAL's bytes; `None`: the database had no WAL.
        wal: Option<Vec<u8>>,
        ranges: Vec<(u64, Vec<u8>)>,
        read_bytes: u64,
    },
    Written {
        read_bytes: u64,
    },
}

/// Step 5, the window: the WAL and the planned ranges read from the live
/// file — into memory, or straight into the mirror when they are too
/// large ([`Staged`]). Returns what was read; [`write_out`] finishes it.
fn stage(
    file: &File,
    db: &Path,
    basis: &Basis,
    plan: &Plan,
    live: &Live,
    touched: &mut BTreeSet<u64>,
) -> Result<Staged, AttemptError> {
    let wal = wal_path(db);
    let w = open_optional(&wal)?;
    let wal_len = match &w {
        Some(w) => w.metadata().map_err(io_err("stat", &wal))?.len(),
        None => 0,
    };
    let planned: u64 = plan.reads.iter().map(|(s, e)| e - s).sum();
    if planned + wal_len > WINDOW_BUFFER {
        return stage_into_mirror(file, db, basis, plan, live, touched, w, wal_len);
    }
    let wal_bytes = match w {
        Some(w) => {
            let mut buf = vec![0u8; wal_len as usize];
            let got = crate::store::read_full_at(&w, &mut buf, 0).map_err(io_err("read", &wal))?;
            if got < buf.len() {
                return Err(shrank(&wal));
            }
            Some(buf)
        }
        None => None,
    };
    let mut ranges = Vec::with_capacity(plan.reads.len());
    for &(start, end) in &plan.reads {
        let mut buf = vec![0u8; (end - start) as usize];
        let got = crate::store::read_full_at(file, &mut buf, start).map_err(io_err("read", db))?;
        if got < buf.len() {
            return Err(shrank(db));
        }
        ranges.push((start, buf));
    }
    Ok(Staged::Held {
        wal: wal_bytes,
        ranges,
        read_bytes: planned + wal_len,
    })
}

fn shrank(path: &Path) -> AttemptError {
    AttemptError::Unstable(format!("{} shrank during the copy", path.display()))
}

/// [`stage`] for a window too large to hold: the WAL and the planned
/// ranges copied from the live file into the mirror as they are read.
#[allow(clippy::too_many_arguments)]
fn stage_into_mirror(
    file: &File,
    db: &Path,
    basis: &Basis,
    plan: &Plan,
    live: &Live,
    touched: &mut BTreeSet<u64>,
    w: Option<File>,
    wal_len: u64,
) -> Result<Staged, AttemptError> {
    let wal = wal_path(db);
    let staged_wal = duckfile::side_path(&basis.path, ".wal");
    match w {
        Some(w) => kernel_copy(&w, &wal, &staged_wal, wal_len)?,
        None => remove_staged_wal(&staged_wal)?,
    }
    let out = open_mirror(basis)?;
    let bs = live.map.block_size;
    let mut read_bytes = wal_len;
    let mut buf = Vec::new();
    for &(start, end) in &plan.reads {
        mark_touched(touched, start, end, bs);
        buf.resize((end - start) as usize, 0);
        let got = crate::store::read_full_at(file, &mut buf, start).map_err(io_err("read", db))?;
        if got < buf.len() {
            return Err(shrank(db));
        }
        out.write_all_at(&buf, start)
            .map_err(io_err("write", &basis.path))?;
        read_bytes += end - start;
    }
    out.set_len(live.stamp.size)
        .map_err(io_err("truncate", &basis.path))?;
    Ok(Staged::Written { read_bytes })
}

/// After the window: what it held in memory written into the mirror (and
/// its WAL beside it), which is cut to the live size. Returns the bytes
/// the window read.
fn write_out(
    staged: Staged,
    basis: &Basis,
    live: &Live,
    touched: &mut BTreeSet<u64>,
) -> Result<u64, AttemptError> {
    let (wal, ranges, read_bytes) = match staged {
        Staged::Written { read_bytes } => return Ok(read_bytes),
        Staged::Held {
            wal,
            ranges,
            read_bytes,
        } => (wal, ranges, read_bytes),
    };
    let staged_wal = duckfile::side_path(&basis.path, ".wal");
    match wal {
        Some(bytes) => write_staged_wal(&staged_wal, &bytes)?,
        None => remove_staged_wal(&staged_wal)?,
    }
    let out = open_mirror(basis)?;
    let bs = live.map.block_size;
    for (start, bytes) in &ranges {
        mark_touched(touched, *start, start + bytes.len() as u64, bs);
        out.write_all_at(bytes, *start)
            .map_err(io_err("write", &basis.path))?;
    }
    out.set_len(live.stamp.size)
        .map_err(io_err("truncate", &basis.path))?;
    Ok(read_bytes)
}

/// The blocks of `start..end` join `touched`: the mirror holds what this
/// capture read there. A range that begins in the header region (the
/// plan's first read, merged with block 0 onwards when they are marked)
/// marks the blocks it reaches past it — once it marked none, and a retry
/// whose marks left them out took their chunks from the base snapshot,
/// whose bytes the mirror no longer held.
fn mark_touched(touched: &mut BTreeSet<u64>, start: u64, end: u64, bs: u64) {
    let start = start.max(HEADER_REGION);
    if end > start {
        touched.extend((start - HEADER_REGION) / bs..(end - HEADER_REGION).div_ceil(bs));
    }
}

fn open_mirror(basis: &Basis) -> Result<File, AttemptError> {
    Ok(OpenOptions::new()
        .write(true)
        .open(&basis.path)
        .map_err(io_err("open", &basis.path))?)
}

/// The mirror's WAL, written from the bytes a window read (private, never
/// through a link planted at its name).
fn write_staged_wal(dest: &Path, bytes: &[u8]) -> Result<(), AttemptError> {
    use std::os::unix::fs::OpenOptionsExt;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_err("create", dest))?;
    out.write_all_at(bytes, 0).map_err(io_err("write", dest))?;
    out.set_len(bytes.len() as u64)
        .map_err(io_err("truncate", dest))?;
    Ok(())
}

fn remove_staged_wal(staged_wal: &Path) -> Result<(), AttemptError> {
    match std::fs::remove_file(staged_wal) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", staged_wal)(e).into()),
    }
}

/// Step 6, the guard, when `every` has passed since the mirror was last
/// known whole (a mirror never compared is due at once): `Ok(true)` compared and equal, `Ok(false)` not compared
/// (not due, or the database moved meanwhile), `Err` blocks differ.
fn guard(
    file: &File,
    db: &Path,
    basis: &Basis,
    live: &Live,
    every: Duration,
) -> Result<Result<bool, NotNow>, AttemptError> {
    let due = basis.compared_at.is_none_or(|t| {
        Utc::now()
            .signed_duration_since(t)
            .to_std()
            .is_ok_and(|age| age >= every)
    });
    if !due {
        return Ok(Ok(false));
    }
    Ok(match compare(file, db, basis, live)? {
        Compared::Equal => Ok(true),
        Compared::Moved => Ok(false),
        Compared::Differ(blocks) => {
            let why = format!(
                "a full read found {} block(s) the mirror has wrong (blocks {}): this capture reads the whole database",
                blocks.len(),
                blocks
                    .iter()
                    .take(20)
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let base = basis.base.as_ref().map(|b| b.id.to_string());
            tracing::error!(event = "capture.stale_block", blocks = ?blocks, base = ?base, "{why}");
            Err(NotNow::Refused(why))
        }
    })
}

/// Step 4: the tripwire, unless the file is untouched since the mirror was
/// taken. `Some` refuses the attempt; a database written meanwhile makes
/// it unstable instead.
fn trip(
    file: &File,
    db: &Path,
    basis: &Basis,
    live: &Live,
) -> Result<Option<NotNow>, AttemptError> {
    if live.untouched {
        return Ok(None);
    }
    let size = live.stamp.size;
    let Some(why) = tripwire(file, db, basis, &live.changed, &live.map, size)? else {
        return Ok(None);
    };
    if moved(file, db, &live.stamp, &live.header)? {
        return Err(AttemptError::Unstable(
            "the database was written while the mirror was compared".into(),
        ));
    }
    tracing::warn!(event = "capture.tripwire", reason = %why, "a block the mirror should share with the database differs; reading the whole database");
    Ok(Some(NotNow::Refused(why)))
}

/// Step 5: the window — [`stage`] — and the checks that nothing wrote the
/// database across it (from `start`, its stamp as the window began).
/// Returns the bytes read. When the window was read whole but the
/// database moved across it, `basis` is moved up to the header the attempt
/// planned from ([`rebase`]) before the attempt is retried.
fn window(
    file: &File,
    db: &Path,
    basis: &mut Basis,
    plan: &Plan,
    live: &Live,
    start: &Stamp,
    touched: &mut BTreeSet<u64>,
) -> Result<u64, AttemptError> {
    let window = std::time::Instant::now();
    let staged = stage(file, db, basis, plan, live, touched)?;
    let after = Header::read_at(file, db)?;
    let stamp_after = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    let window_ms = window.elapsed().as_secs_f64() * 1e3;
    let held = if after.iteration != live.header.iteration {
        Err(AttemptError::Unstable(
            "the database was written during the copy".into(),
        ))
    } else {
        still_the_same(db, start, &stamp_after)
    };
    let read_bytes = write_out(staged, basis, live, touched)?;
    tracing::debug!(
        event = "capture.window",
        window_ms,
        read_bytes,
        held = held.is_ok(),
        "incremental copy staged"
    );
    if let Err(e) = held {
        rebase(basis, live);
        return Err(e);
    }
    Ok(read_bytes)
}

/// After a window that read every planned block but saw the database move:
/// the mirror now holds what a prime at the planned header would have
/// written ([`super::prime`]). Every block the old basis trusted and no
/// header since the planned one marks was the live file's then and still
/// is; every block it did not trust was read in the window, after that
/// header was — whatever was written there since is under a mark of that
/// header or of a later one, which the next attempt reads again. So the
/// next attempt plans from this header: what it must read stays what the
/// last few checkpoints marked, not the union of every header's marks
/// since the mirror was taken.
fn rebase(basis: &mut Basis, live: &Live) {
    basis.since = Marks::of(&live.map);
    basis.quiet = None;
}

/// One incremental attempt (the steps are docs/ARCHITECTURE.md's, "Which
/// blocks a checkpoint can change"). `touched` holds the blocks this
/// capture wrote into the mirror so far.
pub(super) fn incremental_attempt(
    cx: &Context,
    file: &File,
    db: &Path,
    basis: &mut Basis,
    touched: &mut BTreeSet<u64>,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Result<Attempt, NotNow>, AttemptError> {
    if wal_checkpoint_path(db).exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint is in progress (.wal.checkpoint exists)".into(),
        ));
    }
    let live = match look(file, db, basis, cx.chain)? {
        Ok(l) => l,
        Err(n) => return Ok(Err(n)),
    };
    let size = live.stamp.size;
    let plan = plan(basis, &live.changed, live.map.block_size, size, touched);
    if let Some(refused) = trip(file, db, basis, &live)? {
        return Ok(Err(refused));
    }
    mirror::forget(cx.store)?;
    warm(file, db, &plan, live.map.block_size, touched)?;
    let started = std::time::SystemTime::now();
    let start = window_start(file, db, &live)?;
    let read_bytes = window(file, db, basis, &plan, &live, &start, touched)?;
    let compared = match guard(file, db, basis, &live, cx.every)? {
        Ok(c) => c,
        Err(n) => return Ok(Err(n)),
    };
    let staged = File::open(&basis.path).map_err(io_err("open", &basis.path))?;
    let files = copy_files(
        cx.batch,
        &staged,
        &basis.path,
        size,
        &live.header,
        None,
        false,
        Some(&plan.known),
        new_chunks,
    )?;
    Ok(Ok(Attempt {
        files,
        check: check::check_copy(&basis.path, &live.header, false),
        header: live.header,
        method: CaptureMethod::Online,
        incremental: basis.base.as_ref().map(|b| Incremental {
            base: b.id.clone(),
            read_bytes,
            compared,
            primed_bytes: basis.primed_bytes,
        }),
        keep: Some(Keep::new(
            basis.path.clone(),
            if compared {
                Some(Utc::now())
            } else {
                basis.compared_at
            },
            start,
            started,
        )),
    }))
}

/// Reads the ranges the window will read once beforehand, so that the
/// window reads them from the page cache (a large database under memory
/// pressure has them on disk, and a window that waits for the disk spans
/// the app's writes). Blocks an earlier attempt or prime of this capture
/// read (`touched`) are in the cache already and are skipped: a retry
/// starts its window sooner after the checkpoint it waited for.
fn warm(
    file: &File,
    db: &Path,
    plan: &Plan,
    bs: u64,
    touched: &BTreeSet<u64>,
) -> Result<(), AttemptError> {
    let mut buf = Vec::new();
    for &(start, end) in &plan.reads {
        let mut at = start;
        while at < end {
            let block = at.saturating_sub(HEADER_REGION) / bs;
            let next = if at < HEADER_REGION {
                HEADER_REGION
            } else {
                HEADER_REGION + (block + 1) * bs
            }
            .min(end);
            if at < HEADER_REGION || !touched.contains(&block) {
                buf.resize((next - at) as usize, 0);
                crate::store::read_full_at(file, &mut buf, at).map_err(io_err("read", db))?;
            }
            at = next;
        }
    }
    Ok(())
}

/// The stamp the window starts from. The plan was made from the header,
/// size and blocks `look` saw, and holds while the header and size do:
/// what the app wrote since then without a checkpoint went into blocks it
/// marks, which the window reads. Only an untouched file (nothing planned
/// but the header region) must not have been written at all.
fn window_start(file: &File, db: &Path, live: &Live) -> Result<Stamp, AttemptError> {
    let start = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    let same = if live.untouched {
        start == live.stamp
    } else {
        start.same_file(&live.stamp) && start.size == live.stamp.size
    };
    if !same || Header::read_at(file, db)?.iteration != live.header.iteration {
        return Err(AttemptError::Unstable(
            "the database was written while the copy was planned".into(),
        ));
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan's first read is the header region, merged with the blocks
    /// that follow it when they are marked: every block it reaches is
    /// touched (a retry must not take their chunks from the base snapshot).
    #[test]
    fn a_read_that_begins_in_the_header_region_touches_the_blocks_it_reaches() {
        let bs = 262_144;
        let mut t = BTreeSet::new();
        mark_touched(&mut t, 0, HEADER_REGION + 7 * bs, bs);
        assert_eq!(t, (0..7).collect());
        let mut t = BTreeSet::new();
        mark_touched(&mut t, 0, HEADER_REGION, bs);
        assert!(t.is_empty(), "the header region alone is no block");
        let mut t = BTreeSet::new();
        mark_touched(
            &mut t,
            HEADER_REGION + 8 * bs,
            HEADER_REGION + 8 * bs + 10,
            bs,
        );
        assert_eq!(t, [8].into_iter().collect());
    }

    /// The same through `plan`: with blocks 0..3 marked, the reads start
    /// with one range from 0, and writing them out touches blocks 0..3.
    #[test]
    fn the_plans_first_range_touches_block_zero_on() {
        let bs = 262_144;
        let size = HEADER_REGION + 6 * bs;
        let mut changed = Changed::new();
        changed.blocks.extend([0, 1, 2, 3]);
        let basis = Basis {
            path: PathBuf::new(),
            base: None,
            file: (0, 0),
            since: Marks {
                iteration: 1,
                block_size: bs,
                count: 6,
                blocks: BTreeSet::new(),
            },
            compared_at: None,
            primed_bytes: 0,
            quiet: None,
        };
        let p = plan(&basis, &changed, bs, size, &BTreeSet::new());
        assert_eq!(p.reads, vec![(0, HEADER_REGION + 4 * bs)]);
        let mut t = BTreeSet::new();
        for (s, e) in &p.reads {
            mark_touched(&mut t, *s, *e, bs);
        }
        assert_eq!(t, (0..4).collect());
    }
}
