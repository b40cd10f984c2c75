//! Taking a consistent copy of a live DuckDB database into the store.
//!
//! A database is a set of files: `<db>`, and when present `<db>.wal` and
//! `<db>.wal.checkpoint` (see [`duckfile::SIDE_FILES`]); a snapshot holds
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
//!
//! Either way, the copy is streamed chunk by chunk into the store (chunks
//! aligned to DuckDB blocks; one worker per core hashes, compresses and
//! writes them), and the bundled DuckDB then opens *exactly the bytes
//! stored* read-only (replaying the WAL files in memory): for a quiescent
//! copy the live files themselves, still under our read lock (DuckDB's
//! read-only open shares it, and nothing can have changed); for an online
//! copy the staged copy. Only a copy that passes counts; an online copy
//! that fails the check is retried.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::capture::mapped::Mapped;
use crate::database::check::{self, CheckError};
use crate::database::duckfile::{self, Header, HeaderError, wal_checkpoint_path, wal_path};
use crate::database::oslock::{self, LockKind};
use crate::store::{
    CaptureMethod, CheckInfo, ChunkBatch, Compressors, FileEntry, FileHash, PutChunk, Store,
    StoreError, StoreLock, chunk_list_hash, read_full_at, workers,
};

pub mod mapped;

/// Chunk size target for database runs and the WAL.
pub const CHUNK_TARGET: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

/// A capture that succeeded: its chunks are in the store, not yet committed.
#[derive(Debug)]
pub struct Captured {
    pub files: Vec<FileEntry>,
    pub header: Header,
    pub method: CaptureMethod,
    pub attempts: u32,
    pub check: CheckInfo,
    /// Chunks this capture added to the store, with their stored size.
    pub new_chunks: HashMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("database {path} does not exist (is database.path right? has the app created it yet?)")]
    Missing { path: PathBuf },
    #[error("database path {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("capture: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "could not take a consistent snapshot of {path} in {attempts} attempt(s) over {elapsed_ms} ms \
         (last: {last}); the database is busy with checkpoints; try again, or raise capture.attempts / capture.timeout"
    )]
    Inconsistent {
        path: PathBuf,
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    #[error("the copy of {path} taken while no writer held it fails DuckDB's check: {source}")]
    Check {
        path: PathBuf,
        #[source]
        source: CheckError,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CaptureError + 'a {
    move |source| CaptureError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Why an attempt has to be retried, or that it cannot succeed.
enum AttemptError {
    Unstable(String),
    Fatal(CaptureError),
}

impl<E: Into<CaptureError>> From<E> for AttemptError {
    fn from(e: E) -> Self {
        AttemptError::Fatal(e.into())
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Fingerprint {
    ino: u64,
    dev: u64,
    size: u64,
    mtime: (i64, i64),
}

fn fingerprint(m: &fs::Metadata) -> Fingerprint {
    Fingerprint {
        ino: m.ino(),
        dev: m.dev(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
    }
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
    let mut new_chunks = HashMap::new();
    let mut last = String::from("no attempt made");
    let mut made = 0;
    for attempt in 1..=opts.attempts.max(1) {
        if attempt > 1 {
            let factor = 1u32 << (attempt - 2).min(10);
            let delay = opts
                .backoff
                .saturating_mul(factor)
                .min(Duration::from_secs(2));
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
        let outcome = attempt_once(&batch, db, &dir, &mut new_chunks);
        let unstable = matches!(outcome, Err(AttemptError::Unstable(_)));
        if !unstable {
            // The staged copy (if any) is not needed any more: remove it
            // before the commit's syncfs would write it out.
            let _ = fs::remove_dir_all(&dir);
        }
        match outcome {
            Ok(Attempt {
                files,
                header,
                method,
                check: Ok(check),
            }) => {
                batch.commit()?;
                return Ok(Captured {
                    files,
                    header,
                    method,
                    attempts: attempt,
                    check,
                    new_chunks,
                });
            }
            Ok(Attempt {
                method: CaptureMethod::Online,
                check: Err(e),
                ..
            }) => {
                tracing::debug!(event = "capture.retry", attempt, reason = %e, "copy failed DuckDB's check; retrying");
                last = e.to_string();
            }
            Ok(Attempt {
                check: Err(source), ..
            }) => {
                return Err(CaptureError::Check {
                    path: db.to_path_buf(),
                    source,
                });
            }
            Err(AttemptError::Unstable(reason)) => {
                tracing::debug!(event = "capture.retry", attempt, reason = %reason, "database changed during the copy; retrying");
                last = reason;
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
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

/// One consistent copy and the result of DuckDB's check of exactly those bytes.
struct Attempt {
    files: Vec<FileEntry>,
    header: Header,
    method: CaptureMethod,
    check: Result<CheckInfo, CheckError>,
}

fn attempt_once(
    batch: &ChunkBatch,
    db: &Path,
    dir: &Path,
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
    let quiescent =
        holder.is_none() && oslock::try_lock(&file, LockKind::Read).map_err(io_err("lock", db))?;
    if quiescent {
        // Nothing can write while we hold the read lock: copy, check, release.
        let result = copy_quiescent(batch, &file, db, dir, new_chunks, true);
        let _ = oslock::unlock(&file);
        return result;
    }

    tracing::debug!(
        event = "capture.online",
        holder_pid = holder.and_then(|h| h.pid),
        "a writer holds the database; taking an online copy"
    );
    online_attempt(batch, &file, db, dir, new_chunks)
}

/// An online attempt. The only window in which a checkpoint or a write of
/// the app can spoil the copy is the kernel copy of the `.wal` and then the
/// `.duckdb` into staging (`copy_file_range`, from the page cache: a
/// fraction of the time it takes to hash, compress and store the bytes);
/// the header iteration, size, mtime and inode must not move across it, and
/// no checkpoint may be running (see docs/ARCHITECTURE.md, "What an online
/// copy may span"). Then the staged copy, which only we can write, is stored
/// and checked like a quiescent file.
fn online_attempt(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    dir: &Path,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Attempt, AttemptError> {
    let ckpt = wal_checkpoint_path(db);
    if ckpt.exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint is in progress (.wal.checkpoint exists)".into(),
        ));
    }
    let before = Header::read_at(file, db)?;
    let fp_before = fingerprint(&file.metadata().map_err(io_err("stat", db))?);
    let staged_db = dir.join("db.duckdb");
    let window = Instant::now();
    let wal = wal_path(db);
    if let Some(w) = open_optional(&wal)? {
        let len = w.metadata().map_err(io_err("stat", &wal))?.len();
        kernel_copy(&w, &wal, &duckfile::side_path(&staged_db, ".wal"), len)?;
    }
    kernel_copy(file, db, &staged_db, fp_before.size)?;
    let after = Header::read_at(file, db)?;
    let fp_after = fingerprint(&file.metadata().map_err(io_err("stat", db))?);
    let window = window.elapsed();
    tracing::debug!(
        event = "capture.window",
        window_ms = window.as_secs_f64() * 1e3,
        "online copy staged"
    );
    let copied = Header::read_path(&staged_db)?;
    if before.iteration != after.iteration || copied.iteration != before.iteration {
        return Err(AttemptError::Unstable(format!(
            "header iteration moved ({} before, {} after, {} in the copy)",
            before.iteration, after.iteration, copied.iteration
        )));
    }
    if fp_before != fp_after {
        return Err(AttemptError::Unstable(
            "database size or mtime changed during the copy".into(),
        ));
    }
    match fs::metadata(db) {
        Ok(m) if fingerprint(&m).ino == fp_before.ino && fingerprint(&m).dev == fp_before.dev => {}
        _ => {
            return Err(AttemptError::Unstable(
                "database file was replaced during the copy".into(),
            ));
        }
    }
    if ckpt.exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint started during the copy".into(),
        ));
    }
    let staged = File::open(&staged_db).map_err(io_err("open", &staged_db))?;
    let files = copy_files(
        batch,
        &staged,
        &staged_db,
        fp_before.size,
        &before,
        None,
        true,
        new_chunks,
    )?;
    Ok(Attempt {
        files,
        check: check::check_copy(&staged_db, &before, false),
        header: before,
        method: CaptureMethod::Online,
    })
}

/// Copies the first `len` bytes of `src` (read from its start) over the
/// private file `dest` in the kernel (`copy_file_range` through
/// `std::io::copy`), then cuts `dest` to `len`. `dest` is overwritten in
/// place, not truncated first: a retry reuses the page cache of the previous
/// attempt's copy. A file that got shorter meanwhile makes the attempt
/// unstable.
fn kernel_copy(src: &File, src_path: &Path, dest: &Path, len: u64) -> Result<(), AttemptError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_err("create", dest))?;
    let mut from = io::Read::take(src, len);
    let n = io::copy(&mut from, &mut out).map_err(io_err("copy", src_path))?;
    if n < len {
        return Err(AttemptError::Unstable(format!(
            "{} shrank during the copy",
            src_path.display()
        )));
    }
    out.set_len(len).map_err(io_err("truncate", dest))?;
    Ok(())
}

/// Waits until DuckDB writes a new database header — a checkpoint just
/// ended, which starts the longest stretch without one — or `limit` passes.
/// Woken by inotify on every write to the file; each wake-up reads the
/// header's iteration (16 bytes). An online retry that starts there has the
/// best chance that its short copy window sees no checkpoint.
fn wait_for_checkpoint(db: &Path, limit: Duration) -> Result<(), CaptureError> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + limit;
    let Ok(file) = File::open(db) else {
        std::thread::sleep(limit);
        return Ok(());
    };
    let watched = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .and_then(|ino| ino.add_watch(db, AddWatchFlags::IN_MODIFY).map(|_| ino));
    let ino = match watched {
        Ok(ino) => ino,
        Err(e) => {
            // Out of inotify instances or watches: a plain backoff still works.
            tracing::debug!(event = "capture.no_inotify", error = %e, "cannot watch the database; waiting the backoff");
            std::thread::sleep(limit);
            return Ok(());
        }
    };
    let start = Header::read_at(&file, db)?.iteration;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_err("wait for changes of", db)(e.into())),
        }
        let _ = ino.read_events();
        match Header::read_at(&file, db) {
            Ok(h) if h.iteration != start => return Ok(()),
            _ => {}
        }
    }
}

/// Copies WAL and database while the caller keeps writers out with a lock
/// on `file`, and checks what was copied.
///
/// With `check_live` (the caller holds only a *read* lock, which DuckDB's
/// read-only open shares), DuckDB checks the live file in place, at the same
/// time as the copy: under the lock its bytes, and those of the `.wal` and
/// `.wal.checkpoint` it replays, are exactly the bytes stored, DuckDB opens
/// them with `O_RDONLY`, and no staged copy has to be written. An exclusive
/// lock (restore's safety snapshot), which DuckDB's open would conflict
/// with, sends the check to a staged copy of the same files.
fn copy_quiescent(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    dir: &Path,
    new_chunks: &mut HashMap<String, u64>,
    check_live: bool,
) -> Result<Attempt, AttemptError> {
    let header = Header::read_at(file, db)?;
    let size = file.metadata().map_err(io_err("stat", db))?.len();
    let live = check_live;
    tracing::debug!(
        event = "capture.check",
        checked = if live { "live" } else { "staged" },
        "checking the quiescent copy with DuckDB"
    );
    if !live {
        let files = copy_files(batch, file, db, size, &header, Some(dir), true, new_chunks)?;
        return Ok(Attempt {
            files,
            check: check::check_copy(&dir.join("db.duckdb"), &header, false),
            header,
            method: CaptureMethod::Quiescent,
        });
    }
    // The live file cannot change while we hold the lock, so DuckDB checks
    // it while the chunks are being written (its start-up alone is tens of
    // milliseconds); both finish before the lock is released.
    let started = Instant::now();
    let (files, check) = std::thread::scope(|s| {
        let checking = s.spawn(|| {
            let check = check::check_copy(db, &header, false);
            (check, started.elapsed())
        });
        let files = copy_files(batch, file, db, size, &header, None, true, new_chunks);
        let copied = started.elapsed();
        let (check, checked) = checking.join().expect("DuckDB check panicked");
        tracing::debug!(
            event = "capture.timing",
            copy_ms = copied.as_secs_f64() * 1e3,
            check_ms = checked.as_secs_f64() * 1e3,
            "copy and check finished"
        );
        (files, check)
    });
    Ok(Attempt {
        files: files?,
        check,
        header,
        method: CaptureMethod::Quiescent,
    })
}

/// Copies the side files a snapshot holds (`.wal`, `.wal.checkpoint`; see
/// [`duckfile::SIDE_FILES`]) that exist and then the first `size` bytes of
/// the database into chunks, and, given a `staging` directory, into
/// `staging/db.duckdb` and its side files, so that DuckDB's check of the
/// staged copy opens exactly the captured set. Returns the entries,
/// database first.
///
/// `quiescent`: the caller's lock keeps writers out, so every file is read
/// through a memory map ([`Mapped`]) rather than copied into buffers.
#[allow(clippy::too_many_arguments)]
fn copy_files(
    batch: &ChunkBatch,
    file: &File,
    db: &Path,
    size: u64,
    header: &Header,
    staging: Option<&Path>,
    quiescent: bool,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<Vec<FileEntry>, AttemptError> {
    let map = |f: &File, len: u64, path: &Path| -> Result<Option<Mapped>, CaptureError> {
        if quiescent {
            Mapped::map(f, len).map_err(io_err("map", path))
        } else {
            Ok(None)
        }
    };
    let staged_db = staging.map(|d| d.join("db.duckdb"));
    let mut files = Vec::new();
    for side in duckfile::SIDE_FILES.iter().filter(|s| s.captured) {
        let path = duckfile::side_path(db, side.suffix);
        let Some(w) = open_optional(&path)? else {
            continue;
        };
        let len = w.metadata().map_err(io_err("stat", &path))?.len();
        let bounds = duckfile::fixed_chunk_bounds(len, CHUNK_TARGET);
        let mapped = map(&w, len, &path)?;
        let staged = staged_db
            .as_deref()
            .map(|d| duckfile::side_path(d, side.suffix));
        files.push(copy_chunks(
            batch,
            (&w, mapped.as_ref()),
            &path,
            side.role,
            &bounds,
            staged.as_deref(),
            new_chunks,
        )?);
    }
    let bounds = duckfile::db_chunk_bounds(size, header.block_size, CHUNK_TARGET);
    let mapped = map(file, size, db)?;
    files.insert(
        0,
        copy_chunks(
            batch,
            (file, mapped.as_ref()),
            db,
            duckfile::DB_ROLE,
            &bounds,
            staged_db.as_deref(),
            new_chunks,
        )?,
    );
    Ok(files)
}

/// Captures `db` while the caller already holds an exclusive OFD lock on it
/// through `file` (restore's safety snapshot): one quiescent copy, checked.
pub fn capture_locked(
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    file: &File,
    staging: &Path,
) -> Result<Captured, CaptureError> {
    let batch = store.batch(lock);
    let mut new_chunks = HashMap::new();
    let dir = staging.join("locked");
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let outcome = copy_quiescent(&batch, file, db, &dir, &mut new_chunks, false);
    let _ = fs::remove_dir_all(&dir);
    let attempt = match outcome {
        Ok(a) => a,
        Err(AttemptError::Fatal(e)) => return Err(e),
        Err(AttemptError::Unstable(last)) => {
            return Err(CaptureError::Inconsistent {
                path: db.to_path_buf(),
                attempts: 1,
                elapsed_ms: 0,
                last,
            });
        }
    };
    let check = attempt.check.map_err(|source| CaptureError::Check {
        path: db.to_path_buf(),
        source,
    })?;
    batch.commit()?;
    Ok(Captured {
        files: attempt.files,
        header: attempt.header,
        method: attempt.method,
        attempts: 1,
        check,
        new_chunks,
    })
}

fn open_optional(p: &Path) -> Result<Option<File>, CaptureError> {
    match File::open(p) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("open", p)(e)),
    }
}

/// Copies `src` over `bounds` into chunks in the store, and into `dest`
/// when given (the staged copy DuckDB checks). One worker per core takes the
/// next chunk, reads it (each byte of the file is read once; from the map
/// when `src` comes with one), writes it to `dest` at its offset, and
/// hashes, compresses and stores it. The file's hash is then the chunk
/// list's.
fn copy_chunks(
    batch: &ChunkBatch,
    (src, map): (&File, Option<&Mapped>),
    src_path: &Path,
    role: &str,
    bounds: &[(u64, u64)],
    dest: Option<&Path>,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<FileEntry, AttemptError> {
    let out = match dest {
        Some(d) => Some(File::create(d).map_err(io_err("create", d))?),
        None => None,
    };
    let n = bounds.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, PutChunk)>, AttemptError> {
        let mut z = Compressors::default();
        let mut buf = Vec::new();
        let mut done = Vec::new();
        let result = (|| {
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(start, end)) = bounds.get(i) else {
                    break;
                };
                let shrank = || {
                    AttemptError::Unstable(format!("{} shrank during the copy", src_path.display()))
                };
                let data: &[u8] = match map {
                    Some(m) => m
                        .bytes()
                        .get(start as usize..end as usize)
                        .ok_or_else(shrank)?,
                    None => {
                        buf.resize((end - start) as usize, 0);
                        let got =
                            read_full_at(src, &mut buf, start).map_err(io_err("read", src_path))?;
                        if got < buf.len() {
                            return Err(shrank());
                        }
                        &buf
                    }
                };
                if let (Some(f), Some(d)) = (&out, dest) {
                    f.write_all_at(data, start).map_err(io_err("write", d))?;
                }
                done.push((i, batch.put(data, &mut z)?));
            }
            Ok(())
        })();
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        result.map(|()| done)
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let others: Vec<_> = (1..workers().min(n)).map(|_| s.spawn(worker)).collect();
        // This thread is a worker too.
        let mut results = vec![worker()];
        results.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("chunk worker panicked")),
        );
        results
    });
    let puts = in_order(results, n)?;
    Ok(file_entry(role, puts, new_chunks))
}

/// The workers' chunks in file order, or the most telling error: a worker
/// that saw the file shrink (or failed) rather than one that merely stopped
/// because another failed.
fn in_order(
    results: Vec<Result<Vec<(usize, PutChunk)>, AttemptError>>,
    n: usize,
) -> Result<Vec<PutChunk>, AttemptError> {
    let mut slots: Vec<Option<PutChunk>> = vec![None; n];
    let mut first_error = None;
    for r in results {
        match r {
            Ok(done) => {
                for (i, put) in done {
                    slots[i] = Some(put);
                }
            }
            Err(e) => {
                if first_error.is_none() || matches!(e, AttemptError::Fatal(_)) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(slots
        .into_iter()
        .map(|p| p.expect("every chunk index was taken by a worker that succeeded"))
        .collect())
}

/// The manifest entry of a file stored as `puts`; notes the new chunks.
fn file_entry(role: &str, puts: Vec<PutChunk>, new_chunks: &mut HashMap<String, u64>) -> FileEntry {
    let mut size = 0;
    let mut chunks = Vec::with_capacity(puts.len());
    for put in puts {
        if put.new {
            new_chunks.insert(put.chunk.hash.clone(), put.stored);
        }
        size += put.chunk.len;
        chunks.push(put.chunk);
    }
    FileEntry {
        role: role.to_string(),
        size,
        hash: chunk_list_hash(&chunks).expect("chunk hashes are BLAKE3 hex"),
        hash_of: FileHash::ChunkList,
        chunks,
    }
}
