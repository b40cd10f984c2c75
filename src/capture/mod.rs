//! Taking a consistent copy of a live DuckDB database into the store.
//!
//! A database is a set of files: `<db>`, and when present `<db>.wal` and
//! `<db>.wal.checkpoint` (see [`crate::database::duckfile::SIDE_FILES`]); a snapshot holds
//! the whole set, never `<db>.wal.recovery`.
//!
//! * **Quiescent**: no process holds a lock that conflicts with a read lock.
//!   We take an OFD read lock on the database for the duration of the copy (a
//!   writer that tries to open meanwhile gets DuckDB's lock error and can
//!   retry) and copy every file of the set. Consistent by construction.
//! * **Online**: a writer holds DuckDB's lock. Read the active header
//!   iteration, copy the `.wal` *then* the `.duckdb` into staging with
//!   kernel copies, and compare the iteration of the live file before and
//!   after and of the copy, plus size, inode and mtime of the database, and
//!   that no checkpoint is running; any difference means a retry with
//!   exponential backoff, bounded by attempts and total time. The staged
//!   copy is then stored like a quiescent file.
//! * **Incremental** (online, `capture.incremental`): the same conditions
//!   over a shorter window that reads only the blocks the headers since the
//!   mirror's mark ([`incremental`]), the headers followed by a chain
//!   ([`chain`]); a prime brings the mirror up to date outside the window
//!   when they were not all seen ([`prime`]). A refused incremental
//!   attempt is followed by full ones.
//!
//! Either way, the copy is streamed chunk by chunk into the store (chunks
//! aligned to DuckDB blocks; one worker per core hashes, compresses and
//! writes them), and the bundled DuckDB then opens *exactly the bytes
//! stored* read-only (replaying the WAL files in memory): for a quiescent
//! copy the live files themselves, still under our read lock (DuckDB's
//! read-only open shares it, and nothing can have changed); for an online
//! copy the staged copy. Only a copy that passes counts; an online copy
//! that fails the check is retried.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::database::oslock::{self, LockKind};
use crate::store::{CaptureMethod, ChunkBatch, Store, StoreLock};

pub mod chain;
mod copy;
mod incremental;
pub mod mapped;
pub mod mirror;
mod online;
mod outcome;
mod prime;
mod quiescent;

pub use copy::CHUNK_TARGET;
use incremental::{Basis, NotNow, incremental_attempt};
use online::{online_attempt, wait_for_checkpoint};
use outcome::{Attempt, AttemptError, io_err};
pub use outcome::{CaptureError, Captured, Incremental};
use quiescent::copy_quiescent;
pub use quiescent::{capture_as_is, capture_locked, refused_check};

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    /// Make online attempts incremental (priming the mirror when needed).
    pub incremental: bool,
    /// How often an incremental attempt compares what it takes from the
    /// stored snapshot with the live file.
    pub full_read_every: Duration,
    /// `store.min_free_space`: a full copy after a refused incremental
    /// attempt checks for room first.
    pub min_free_space: u64,
    /// Copy online even when no process holds the database: never take
    /// the read lock that makes an app's open fail meanwhile.
    pub never_lock: bool,
}

/// Captures `db` into the store. `staging` is a private directory in the
/// store's staging area; the caller removes it afterwards.
pub fn capture(
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    opts: &CaptureOptions,
    staging: &Path,
) -> Result<Captured, CaptureError> {
    let start = Instant::now();
    let batch = store.batch(lock);
    let mirror = mirror_for(store, opts);
    // The chain a daemon keeps for this database, or one for this capture.
    let chain = opts
        .incremental
        .then(|| chain::followed(db).or_else(|| chain::Chain::start(db).ok().map(Arc::new)))
        .flatten();
    let mut using = Using::new(store, mirror.as_ref(), chain.as_deref(), opts);
    let mut new_chunks = HashMap::new();
    let mut last = String::from("no attempt made");
    let mut made = 0;
    for attempt in 1..=opts.attempts.max(1) {
        if attempt > 1 {
            let delay = backoff(opts, attempt);
            if start.elapsed() + delay > opts.timeout {
                break;
            }
            wait_for_checkpoint(db, delay)?;
        }
        made = attempt;
        // One staging directory for every attempt: a retry overwrites the
        // staged copy in place, whose pages are already allocated (a third
        // of the time of a first copy), which keeps its window short.
        let dir = staging.join("attempt");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let outcome = attempt_once(&batch, db, &dir, &mut using, &mut new_chunks);
        let unstable = matches!(outcome, Err(AttemptError::Unstable(_)));
        let staged_kept = matches!(&outcome, Ok(a) if a.check.is_ok() && opts.incremental
            && a.keep.as_ref().is_some_and(|k| k.path.starts_with(&dir)));
        if !unstable && !staged_kept {
            // The staged copy (if any) is not needed any more: remove it
            // before the commit's syncfs would write it out.
            let _ = fs::remove_dir_all(&dir);
        }
        match judge(db, attempt, outcome)? {
            Ok(good) => {
                batch.commit()?;
                if opts.incremental {
                    keep_as_mirror(store, &good, using.chain);
                }
                let _ = fs::remove_dir_all(&dir);
                return Ok(Captured {
                    files: good.files,
                    header: good.header,
                    method: good.method,
                    attempts: attempt,
                    check: good.check,
                    new_chunks,
                    incremental: good.incremental,
                });
            }
            Err(reason) => last = reason,
        }
    }
    let _ = fs::remove_dir_all(staging.join("attempt"));
    Err(CaptureError::Inconsistent {
        path: db.to_path_buf(),
        attempts: made,
        elapsed_ms: start.elapsed().as_millis() as u64,
        last,
    })
}

/// The mirror this capture may use; with `capture.incremental` off, none,
/// and the disk it took is given back.
fn mirror_for(store: &Store, opts: &CaptureOptions) -> Option<mirror::Mirror> {
    if opts.incremental {
        return mirror::usable(store);
    }
    if let Err(e) = mirror::remove(store) {
        tracing::warn!(event = "capture.mirror_failed", error = %e, "could not remove the mirror");
    }
    None
}

/// The wait before attempt `attempt` (≥ 2): the backoff doubled each time,
/// at most 2 s.
fn backoff(opts: &CaptureOptions, attempt: u32) -> Duration {
    let factor = 1u32 << (attempt - 2).min(10);
    opts.backoff
        .saturating_mul(factor)
        .min(Duration::from_secs(2))
}

/// A copy that passed DuckDB's check.
struct GoodCopy {
    files: Vec<crate::store::FileEntry>,
    header: crate::database::duckfile::Header,
    method: CaptureMethod,
    check: crate::store::CheckInfo,
    incremental: Option<Incremental>,
    keep: Option<outcome::Keep>,
}

/// What an attempt may use and must keep track of besides the database:
/// the store (for the mirror), the mirror as its record said, what the
/// mirror holds now, the chain, the blocks earlier attempts and primes
/// wrote into the mirror.
struct Using<'a> {
    store: &'a Store,
    mirror: Option<&'a mirror::Mirror>,
    basis: Option<Basis>,
    chain: Option<&'a chain::Chain>,
    /// No incremental attempt any more (turned off, or refused once).
    refused: bool,
    touched: BTreeSet<u64>,
    full_read_every: Duration,
    min_free_space: u64,
    never_lock: bool,
}

impl<'a> Using<'a> {
    fn new(
        store: &'a Store,
        mirror: Option<&'a mirror::Mirror>,
        chain: Option<&'a chain::Chain>,
        opts: &CaptureOptions,
    ) -> Using<'a> {
        Using {
            store,
            mirror,
            basis: mirror.map(Basis::of),
            chain,
            refused: !opts.incremental,
            touched: BTreeSet::new(),
            full_read_every: opts.full_read_every,
            min_free_space: opts.min_free_space,
            never_lock: opts.never_lock,
        }
    }
}

/// Fails unless the store's file system has room for a full online copy of
/// a `len`-byte database: the staged copy and, at worst, as many new
/// chunks (the snapshot's own check made room only for an incremental one).
fn room_for_a_full_copy(
    store: &Store,
    db: &Path,
    len: u64,
    min_free: u64,
) -> Result<(), AttemptError> {
    let st = nix::sys::statvfs::statvfs(store.root())
        .map_err(|e| io_err("query free space of", store.root())(e.into()))?;
    let available = st.blocks_available() * st.fragment_size();
    let needed = 2 * len + min_free;
    if available < needed {
        return Err(CaptureError::NoSpace {
            path: store.root().to_path_buf(),
            available,
            needed,
            database: db.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// Makes the database file `good` says to keep — an online copy, or one
/// taken from the mirror — the mirror for the next capture, and tells the
/// chain which headers it no longer needs. A failure costs only the next
/// capture's speed.
fn keep_as_mirror(store: &Store, good: &GoodCopy, chain: Option<&chain::Chain>) {
    let Some(keep) = &good.keep else {
        return;
    };
    if let Some(c) = chain {
        c.keep_from(good.header.iteration);
    }
    let Some(entry) = good
        .files
        .iter()
        .find(|f| f.role == crate::database::duckfile::DB_ROLE)
    else {
        return;
    };
    let at = (good.header.block_size, good.header.iteration);
    if let Err(e) = mirror::adopt(store, entry, at, keep) {
        tracing::warn!(event = "capture.mirror_failed", error = %e, "could not keep the mirror; the next online snapshot reads the whole database");
        let _ = mirror::forget(store);
    }
}

/// What one attempt's outcome means: `Ok(Ok(copy))` a good copy,
/// `Ok(Err(why))` try again, `Err` give up (a quiescent copy that fails
/// DuckDB's check cannot get better by waiting).
fn judge(
    db: &Path,
    attempt: u32,
    outcome: Result<Attempt, AttemptError>,
) -> Result<Result<GoodCopy, String>, CaptureError> {
    match outcome {
        Ok(Attempt {
            files,
            header,
            method,
            check: Ok(check),
            incremental,
            keep,
        }) => Ok(Ok(GoodCopy {
            files,
            header,
            method,
            check,
            incremental,
            keep,
        })),
        Ok(Attempt {
            method: CaptureMethod::Online,
            check: Err(e),
            ..
        }) => {
            tracing::debug!(event = "capture.retry", attempt, reason = %e, "copy failed DuckDB's check; retrying");
            Ok(Err(e.to_string()))
        }
        Ok(Attempt {
            check: Err(source), ..
        }) => Err(CaptureError::Check {
            path: db.to_path_buf(),
            source,
        }),
        Err(AttemptError::Unstable(reason)) => {
            tracing::debug!(event = "capture.retry", attempt, reason = %reason, "database changed during the copy; retrying");
            Ok(Err(reason))
        }
        Err(AttemptError::Fatal(e)) => Err(e),
    }
}

/// A copy under our read lock: incremental when a mirror exists (nothing
/// can write, so its window always holds), else the whole file.
/// An incremental copy that DuckDB refuses is followed by a whole one:
/// the live file is judged on its own bytes.
fn quiescent_attempt(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    dir: &Path,
    using: &mut Using,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Attempt, AttemptError> {
    // Without a mirror the whole file is read, as it always was: a first
    // snapshot costs no extra copy (online snapshots seed the mirror).
    if !using.refused && using.mirror.is_some() {
        match changed_only(batch, file, db, using, new_chunks)? {
            Ok(a) if a.check.is_ok() => {
                return Ok(Attempt {
                    method: CaptureMethod::Quiescent,
                    ..a
                });
            }
            Ok(a) => {
                let why = a.check.err().map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(event = "capture.full", reason = %why, "the mirror failed DuckDB's check; reading the whole database");
                using.refused = true;
            }
            Err(why) => {
                tracing::debug!(event = "capture.full", reason = %why, "reading the whole database");
                using.refused = true;
            }
        }
    }
    copy_quiescent(batch, file, db, dir, new_chunks, true)
}

/// An incremental attempt, after a prime when the mirror does not follow
/// the live file's headers (no mirror, or headers nobody saw): `Ok(Err)`
/// says why a full attempt must be made instead.
fn changed_only(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    using: &mut Using,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Result<Attempt, String>, AttemptError> {
    let Some(chain) = using.chain.filter(|c| c.following()) else {
        return Ok(Err("the database's headers cannot be followed".into()));
    };
    let cx = incremental::Context {
        store: using.store,
        batch,
        chain: Some(chain),
        every: using.full_read_every,
    };
    let mut primed = false;
    loop {
        let basis = match using.basis.take() {
            Some(b) => b,
            None => {
                if using.mirror.is_none() && !mirror::file(using.store).exists() {
                    let len = file.metadata().map_err(io_err("stat", db))?.len();
                    if let Err(e) = room_for_a_full_copy(using.store, db, len, using.min_free_space)
                    {
                        let why = match e {
                            AttemptError::Fatal(e) => e.to_string(),
                            AttemptError::Unstable(why) => why,
                        };
                        return Ok(Err(format!("no room for the mirror: {why}")));
                    }
                }
                primed = true;
                prime::prime(
                    using.store,
                    file,
                    db,
                    chain,
                    using.mirror,
                    &mut using.touched,
                )?
            }
        };
        let mut basis = basis;
        let outcome =
            incremental_attempt(&cx, file, db, &mut basis, &mut using.touched, new_chunks);
        match outcome {
            Ok(Ok(a)) => {
                using.basis = Some(basis);
                return Ok(Ok(a));
            }
            Ok(Err(NotNow::Gap(why))) if primed => {
                // Headers were missed while priming: the next attempt
                // primes again.
                return Err(AttemptError::Unstable(why));
            }
            Ok(Err(NotNow::Gap(why))) => {
                tracing::debug!(event = "capture.prime", reason = %why, "bringing the mirror up to date outside the window");
            }
            Ok(Err(NotNow::Refused(why))) => return Ok(Err(why)),
            Err(e) => {
                using.basis = Some(basis);
                return Err(e);
            }
        }
    }
}

fn attempt_once(
    batch: &ChunkBatch,
    db: &Path,
    dir: &Path,
    using: &mut Using,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Attempt, AttemptError> {
    let file = match File::open(db) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CaptureError::Missing {
                path: db.to_path_buf(),
            }
            .into());
        }
        Err(e) => return Err(io_err("open", db)(e).into()),
    };
    let meta = file.metadata().map_err(io_err("stat", db))?;
    if !meta.is_file() {
        return Err(CaptureError::NotAFile {
            path: db.to_path_buf(),
        }
        .into());
    }
    let holder =
        oslock::conflicting(&file, LockKind::Read).map_err(io_err("query locks on", db))?;
    let quiescent = !using.never_lock
        && holder.is_none()
        && oslock::try_lock(&file, LockKind::Read).map_err(io_err("lock", db))?;
    if quiescent {
        // Nothing can write while we hold the read lock: copy (what can
        // have changed, when the mirror allows), check, release.
        let result = quiescent_attempt(batch, &file, db, dir, using, new_chunks);
        let _ = oslock::unlock(&file);
        return result;
    }

    tracing::debug!(
        event = "capture.online",
        holder_pid = holder.and_then(|h| h.pid),
        "a writer holds the database; taking an online copy"
    );
    if !using.refused {
        match changed_only(batch, &file, db, using, new_chunks)? {
            Ok(a) => return Ok(a),
            Err(why) => {
                tracing::debug!(event = "capture.full", reason = %why, "reading the whole database");
                using.refused = true;
                room_for_a_full_copy(using.store, db, meta.len(), using.min_free_space)?;
            }
        }
    }
    online_attempt(batch, &file, db, dir, new_chunks)
}
