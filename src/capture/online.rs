//! An online attempt: a writer holds the database, so its files are copied
//! with the kernel (`copy_file_range`) into a staged copy whose stability is
//! checked before and after, and the staged bytes are what is stored and
//! checked; between attempts the loop waits for DuckDB's checkpoint to end.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::copy::{copy_files, open_optional};
use super::outcome::{Attempt, AttemptError, CaptureError, Keep, io_err};
use crate::database::check::{self};
use crate::database::duckfile::{self, Header, wal_checkpoint_path, wal_path};
use crate::database::stamp::Stamp;
use crate::store::{CaptureMethod, ChunkBatch};

/// An online attempt. The only window in which a checkpoint or a write of
/// the app can spoil the copy is the kernel copy of the `.wal` and then the
/// `.duckdb` into staging (`copy_file_range`, from the page cache: a
/// fraction of the time it takes to hash, compress and store the bytes);
/// the header iteration, size, mtime and inode must not move across it, and
/// no checkpoint may be running (see docs/ARCHITECTURE.md, "What an online
/// copy may span"). Then the staged copy, which only we can write, is stored
/// and checked like a quiescent file.
pub(super) fn online_attempt(
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
    let fp_before = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
    let staged_db = dir.join("db.duckdb");
    let started = std::time::SystemTime::now();
    let window = Instant::now();
    let wal = wal_path(db);
    if let Some(w) = open_optional(&wal)? {
        let len = w.metadata().map_err(io_err("stat", &wal))?.len();
        kernel_copy(&w, &wal, &duckfile::side_path(&staged_db, ".wal"), len)?;
    }
    kernel_copy(file, db, &staged_db, fp_before.size)?;
    let after = Header::read_at(file, db)?;
    let fp_after = Stamp::of(&file.metadata().map_err(io_err("stat", db))?);
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
    still_the_same(db, &fp_before, &fp_after)?;
    let staged = File::open(&staged_db).map_err(io_err("open", &staged_db))?;
    let files = copy_files(
        batch,
        &staged,
        &staged_db,
        fp_before.size,
        &before,
        None,
        true,
        None,
        new_chunks,
    )?;
    Ok(Attempt {
        files,
        check: check::check_copy(&staged_db, &before, false),
        header: before,
        method: CaptureMethod::Online,
        incremental: None,
        keep: Some(Keep::new(
            staged_db.clone(),
            Some(chrono::Utc::now()),
            fp_before,
            started,
        )),
    })
}

/// After an online copy: the database's stamp taken after it (`after`)
/// equals the one taken before, the path still names that file, and no
/// checkpoint started (docs/ARCHITECTURE.md, "What an online copy may
/// span", rules 4 and 5). Else the attempt is retried.
pub(super) fn still_the_same(db: &Path, before: &Stamp, after: &Stamp) -> Result<(), AttemptError> {
    if before != after {
        return Err(AttemptError::Unstable(
            "database size or mtime changed during the copy".into(),
        ));
    }
    match fs::metadata(db) {
        Ok(m) if Stamp::of(&m).same_file(before) => {}
        _ => {
            return Err(AttemptError::Unstable(
                "database file was replaced during the copy".into(),
            ));
        }
    }
    if wal_checkpoint_path(db).exists() {
        return Err(AttemptError::Unstable(
            "a checkpoint started during the copy".into(),
        ));
    }
    Ok(())
}

/// Copies the first `len` bytes of `src` (read from its start) over the
/// private file `dest` in the kernel (`copy_file_range` through
/// `std::io::copy`), then cuts `dest` to `len`. `dest` is overwritten in
/// place, not truncated first: a retry reuses the page cache of the previous
/// attempt's copy. A file that got shorter meanwhile makes the attempt
/// unstable.
pub(super) fn kernel_copy(
    src: &File,
    src_path: &Path,
    dest: &Path,
    len: u64,
) -> Result<(), AttemptError> {
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
pub(super) fn wait_for_checkpoint(db: &Path, limit: Duration) -> Result<(), CaptureError> {
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
