//! A quiescent capture: no writer holds the database, and our OFD read lock
//! keeps every writer out while the live files are stored through read-only
//! maps and checked in place; [`capture_locked`] does the same for a caller
//! that already holds the lock (restore's safety snapshot), and
//! [`capture_as_is`] stores the files byte for byte without DuckDB (the
//! safety snapshot of a database DuckDB refuses to open, and what a rescue
//! made).

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::Path;
use std::time::Instant;

use super::copy::copy_files;
use super::outcome::Captured;
use super::outcome::{Attempt, AttemptError, CaptureError, io_err};
use crate::database::check::{self};
use crate::database::duckfile::Header;
use crate::store::{CaptureMethod, ChunkBatch, Store, StoreLock};

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
pub(super) fn copy_quiescent(
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
        let files = copy_files(
            batch,
            file,
            db,
            size,
            &header,
            Some(dir),
            true,
            None,
            new_chunks,
        )?;
        return Ok(Attempt {
            files,
            check: check::check_copy(&dir.join("db.duckdb"), &header, false),
            header,
            method: CaptureMethod::Quiescent,
            incremental: None,
            keep: None,
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
        let files = copy_files(batch, file, db, size, &header, None, true, None, new_chunks);
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
        incremental: None,
        keep: None,
    })
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
        incremental: None,
    })
}

/// Stores `db` and its side files byte for byte, without asking DuckDB,
/// while the caller keeps writers out (an exclusive OFD lock through
/// `file`, or a private staged copy); `check` is what the caller knows of
/// it. What a restore or a rescue keeps of a database DuckDB refuses to
/// open (a check that says so: nothing is lost if what replaces it is
/// wrong; `restore --to` gives the files back as they were, opening
/// nothing unless asked), and the rescued database DuckDB has just opened.
pub fn capture_as_is(
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    file: &File,
    check: check::CheckInfo,
) -> Result<Captured, CaptureError> {
    let header = Header::read_at(file, db)?;
    let size = file.metadata().map_err(io_err("stat", db))?.len();
    let batch = store.batch(lock);
    let mut new_chunks = HashMap::new();
    let files = match copy_files(
        &batch,
        file,
        db,
        size,
        &header,
        None,
        true,
        None,
        &mut new_chunks,
    ) {
        Ok(f) => f,
        Err(AttemptError::Fatal(e)) => return Err(e),
        // Nobody can write under the exclusive lock: a change is not
        // expected, and not papered over.
        Err(AttemptError::Unstable(last)) => {
            return Err(CaptureError::Inconsistent {
                path: db.to_path_buf(),
                attempts: 1,
                elapsed_ms: 0,
                last,
            });
        }
    };
    batch.commit()?;
    Ok(Captured {
        files,
        header,
        method: CaptureMethod::Quiescent,
        attempts: 1,
        check,
        new_chunks,
        incremental: None,
    })
}

/// What a snapshot of files DuckDB refused to open says of its check.
pub fn refused_check(why: &str) -> check::CheckInfo {
    check::CheckInfo {
        status: crate::store::CheckStatus::NotVerified,
        reason: Some(format!("kept as found: DuckDB refused to open it ({why})")),
        duckdb_version: check::bundled_version(),
        tables: Vec::new(),
    }
}
