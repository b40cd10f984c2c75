//! How a store operation fails ([`StoreError`], with the path and the
//! operation), and the helper that says so for an I/O error.

use std::io;
use std::path::{Path, PathBuf};

use crate::id::SnapshotId;

/// Errors at the store boundary; each names the path and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // No "store:" prefix: the same error reports I/O on the database's
    // directory (a restore's fsync), and the path says which it is.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a ducksnap store (or an unsupported format): {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("no snapshot {id} in store {store}")]
    NotFound { id: SnapshotId, store: PathBuf },
    #[error("manifest {path} is unreadable: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("chunk {hash} is missing from the store")]
    ChunkMissing { hash: String },
    #[error("chunk {hash} is corrupt: {reason}")]
    ChunkCorrupt { hash: String, reason: String },
    #[error(
        "store damaged: {path} is a symbolic link; ducksnap never follows links inside its store \
         (they could lead it to read or delete files elsewhere): replace it with the directory or file it should be"
    )]
    Link { path: PathBuf },
    #[error(
        "garbage collection refused: {} cannot be read or do not match their file hashes, so the chunks they \
         name cannot be told apart from garbage; nothing was deleted (see `ducksnap verify --all`; repair or \
         move those manifests away)",
        manifests.join(", ")
    )]
    GcRefused { manifests: Vec<String> },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
