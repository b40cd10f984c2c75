//! What a capture produces ([`Captured`]) and how it fails: [`CaptureError`]
//! for the caller, and within the retry loop an [`AttemptError`] that says
//! whether another attempt may succeed; [`Attempt`] is one consistent copy
//! and DuckDB's verdict on it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::database::check::CheckError;
use crate::database::duckfile::{Header, HeaderError};
use crate::database::stamp::Stamp;
use crate::store::{CaptureMethod, CheckInfo, FileEntry, StoreError};

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
    /// Set when only what could have changed was read.
    pub incremental: Option<Incremental>,
}

pub use crate::store::Incremental;

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
    #[error(
        "not enough free space in {path} for a full copy of {database}: {available} bytes available, {needed} needed (the staged copy DuckDB checks and its chunks, plus store.min_free_space)"
    )]
    NoSpace {
        path: PathBuf,
        available: u64,
        needed: u64,
        database: PathBuf,
    },
    #[error("the copy of {path} taken while no writer held it fails DuckDB's check: {source}")]
    Check {
        path: PathBuf,
        #[source]
        source: CheckError,
    },
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CaptureError + 'a {
    move |source| CaptureError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Why an attempt has to be retried, or that it cannot succeed.
pub(super) enum AttemptError {
    Unstable(String),
    Fatal(CaptureError),
}

impl<E: Into<CaptureError>> From<E> for AttemptError {
    fn from(e: E) -> Self {
        AttemptError::Fatal(e.into())
    }
}

/// One consistent copy and the result of DuckDB's check of exactly those bytes.
pub(super) struct Attempt {
    pub(super) files: Vec<FileEntry>,
    pub(super) header: Header,
    pub(super) method: CaptureMethod,
    pub(super) check: Result<CheckInfo, CheckError>,
    pub(super) incremental: Option<Incremental>,
    /// The staged database file to keep as the mirror.
    pub(super) keep: Option<Keep>,
}

/// A staged database file to keep as the mirror, once its snapshot is
/// committed.
pub(super) struct Keep {
    pub(super) path: PathBuf,
    /// When every block of it was last known to equal the live file's.
    pub(super) compared_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The live file's stamp across the window the copy was taken in.
    pub(super) live: Stamp,
    /// Whether the live file had not been changed for a while when that
    /// stamp was taken (then any later write moves its ctime).
    pub(super) quiet: bool,
}

/// How long the live file must have gone unwritten before a capture for
/// its stamp to prove later that nothing wrote it since: longer than the
/// file system's mtime granularity (a clock tick) by far.
pub(super) const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

impl Keep {
    /// A copy taken across a window that began at `start`, in which the
    /// live file had stamp `live`.
    pub(super) fn new(
        path: PathBuf,
        compared_at: Option<chrono::DateTime<chrono::Utc>>,
        live: Stamp,
        start: std::time::SystemTime,
    ) -> Keep {
        let ctime = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                live.ctime.0.max(0) as u64,
                live.ctime.1.clamp(0, 999_999_999) as u32,
            );
        let quiet = start.duration_since(ctime).is_ok_and(|d| d >= QUIET);
        Keep {
            path,
            compared_at,
            live,
            quiet,
        }
    }
}
