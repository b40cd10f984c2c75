//! Taking a consistent copy of a live DuckDB database into the store.
//!
//! * **Quiescent**: no process holds a lock that conflicts with a read lock.
//!   We take an OFD read lock on the database for the duration of the copy (a
//!   writer that tries to open meanwhile gets DuckDB's lock error and can
//!   retry) and copy the `.wal` and the `.duckdb`. Consistent by construction.
//! * **Online**: a writer holds DuckDB's lock. Read the active header
//!   iteration, copy the `.wal` *then* the `.duckdb`, and compare the
//!   iteration of the live file before and after and of the copy, plus size,
//!   inode and mtime of the database; any difference (a checkpoint ran) means
//!   a retry with exponential backoff, bounded by attempts and total time.
//!
//! Either way, the copy is streamed chunk by chunk into the store (chunks
//! aligned to DuckDB blocks) *and* into a staging file, which the bundled
//! DuckDB then opens read-only (replaying the WAL in memory). Only a copy that
//! passes counts; an online copy that fails the check is retried.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::{self, CheckError};
use crate::duckfile::{self, Header, HeaderError};
use crate::oslock::{self, LockKind};
use crate::store::{
    CaptureMethod, CheckInfo, ChunkBatch, FileEntry, Store, StoreError, StoreLock, read_full_at,
};

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

/// `<db>.wal`
pub fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// `<db>.wal.checkpoint` (DuckDB ≥ 1.5, during a checkpoint)
pub fn wal_checkpoint_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".wal.checkpoint");
    PathBuf::from(s)
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
    let mut batch = store.batch(lock);
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
            std::thread::sleep(delay);
        }
        made = attempt;
        let dir = staging.join(format!("attempt-{attempt}"));
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        match attempt_once(&mut batch, db, &dir, &mut new_chunks) {
            Ok((files, header, method, staged_db)) => {
                match check::check_copy(&staged_db, &header, false) {
                    Ok(check) => {
                        // The staged copy is not needed any more: remove it
                        // before the commit's syncfs would write it out.
                        let _ = fs::remove_dir_all(&dir);
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
                    Err(e) if method == CaptureMethod::Online => {
                        tracing::debug!(event = "capture.retry", attempt, reason = %e, "copy failed DuckDB's check; retrying");
                        last = e.to_string();
                    }
                    Err(source) => {
                        return Err(CaptureError::Check {
                            path: db.to_path_buf(),
                            source,
                        });
                    }
                }
            }
            Err(AttemptError::Unstable(reason)) => {
                tracing::debug!(event = "capture.retry", attempt, reason = %reason, "database changed during the copy; retrying");
                last = reason;
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
        let _ = fs::remove_dir_all(&dir);
    }
    Err(CaptureError::Inconsistent {
        path: db.to_path_buf(),
        attempts: made,
        elapsed_ms: start.elapsed().as_millis() as u64,
        last,
    })
}

type AttemptOk = (Vec<FileEntry>, Header, CaptureMethod, PathBuf);

fn attempt_once(
    batch: &mut ChunkBatch,
    db: &Path,
    dir: &Path,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<AttemptOk, AttemptError> {
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
        // Nothing can write while we hold the read lock: copy and release.
        let result = copy_quiescent(batch, &file, db, dir, new_chunks);
        let _ = oslock::unlock(&file);
        return result;
    }

    tracing::debug!(
        event = "capture.online",
        holder_pid = holder.and_then(|h| h.pid),
        "a writer holds the database; taking an online copy"
    );
    let ckpt = wal_checkpoint_path(db);
    if ckpt.exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint is in progress (.wal.checkpoint exists)".into(),
        ));
    }
    let before = Header::read_at(&file, db)?;
    let fp_before = fingerprint(&file.metadata().map_err(io_err("stat", db))?);
    let (files, staged_db) =
        copy_files(batch, &file, db, fp_before.size, &before, dir, new_chunks)?;

    let after = Header::read_at(&file, db)?;
    let fp_after = fingerprint(&file.metadata().map_err(io_err("stat", db))?);
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
    Ok((files, before, CaptureMethod::Online, staged_db))
}

/// Copies WAL and database while the caller keeps writers out with a lock on `file`.
fn copy_quiescent(
    batch: &mut ChunkBatch,
    file: &File,
    db: &Path,
    dir: &Path,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<AttemptOk, AttemptError> {
    let header = Header::read_at(file, db)?;
    let size = file.metadata().map_err(io_err("stat", db))?.len();
    let (files, staged_db) = copy_files(batch, file, db, size, &header, dir, new_chunks)?;
    Ok((files, header, CaptureMethod::Quiescent, staged_db))
}

/// Copies the WAL (if any) and then the first `size` bytes of the database
/// into chunks and into `dir/db.duckdb(.wal)`. Returns the entries (db
/// first) and the staged database path.
#[allow(clippy::too_many_arguments)]
fn copy_files(
    batch: &mut ChunkBatch,
    file: &File,
    db: &Path,
    size: u64,
    header: &Header,
    dir: &Path,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<(Vec<FileEntry>, PathBuf), AttemptError> {
    let staged_db = dir.join("db.duckdb");
    let wal = wal_path(db);
    let mut files = Vec::new();
    if let Some(w) = open_optional(&wal)? {
        let len = w.metadata().map_err(io_err("stat", &wal))?.len();
        let bounds = duckfile::fixed_chunk_bounds(len, CHUNK_TARGET);
        let staged_wal = dir.join("db.duckdb.wal");
        files.push(copy_chunks(
            batch,
            &w,
            &wal,
            "wal",
            &bounds,
            &staged_wal,
            new_chunks,
        )?);
    }
    let bounds = duckfile::db_chunk_bounds(size, header.block_size, CHUNK_TARGET);
    files.insert(
        0,
        copy_chunks(batch, file, db, "db", &bounds, &staged_db, new_chunks)?,
    );
    Ok((files, staged_db))
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
    let mut batch = store.batch(lock);
    let mut new_chunks = HashMap::new();
    let dir = staging.join("locked");
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let (files, header, method, staged_db) =
        match copy_quiescent(&mut batch, file, db, &dir, &mut new_chunks) {
            Ok(ok) => ok,
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
    let check =
        check::check_copy(&staged_db, &header, false).map_err(|source| CaptureError::Check {
            path: db.to_path_buf(),
            source,
        })?;
    let _ = fs::remove_dir_all(&dir);
    batch.commit()?;
    Ok(Captured {
        files,
        header,
        method,
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

/// Streams `src` over `bounds` into chunks in the store and into `dest`.
#[allow(clippy::too_many_arguments)]
fn copy_chunks(
    batch: &mut ChunkBatch,
    src: &File,
    src_path: &Path,
    role: &str,
    bounds: &[(u64, u64)],
    dest: &Path,
    new_chunks: &mut HashMap<String, u64>,
) -> Result<FileEntry, AttemptError> {
    let mut out = File::create(dest).map_err(io_err("create", dest))?;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::with_capacity(bounds.len());
    let mut size = 0;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    // Read a window of chunks, hash and compress it on every core, store it.
    for window in bounds.chunks(4 * threads) {
        let mut bufs = Vec::with_capacity(window.len());
        for &(start, end) in window {
            let mut buf = vec![0u8; (end - start) as usize];
            let got = read_full_at(src, &mut buf, start).map_err(io_err("read", src_path))?;
            if got < buf.len() {
                return Err(AttemptError::Unstable(format!(
                    "{} shrank during the copy",
                    src_path.display()
                )));
            }
            whole.update(&buf);
            out.write_all(&buf).map_err(io_err("write", dest))?;
            size += got as u64;
            bufs.push(buf);
        }
        let shared: &ChunkBatch = batch;
        let per = bufs.len().div_ceil(threads);
        let prepared = std::thread::scope(|s| {
            let handles: Vec<_> = bufs
                .chunks(per)
                .map(|part| {
                    s.spawn(move || part.iter().map(|b| shared.prepare(b)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("chunk worker panicked"))
                .collect::<Vec<_>>()
        });
        for (buf, p) in bufs.iter().zip(prepared) {
            let put = batch.put_prepared(buf, p?)?;
            if put.new {
                new_chunks.insert(put.chunk.hash.clone(), put.stored);
            }
            chunks.push(put.chunk);
        }
    }
    Ok(FileEntry {
        role: role.to_string(),
        size,
        hash: whole.finalize().to_hex().to_string(),
        chunks,
    })
}
