//! The on-disk snapshot store: content-addressed chunks, manifests as the
//! commit point, a derived catalog, a kernel lock for mutation and a staging
//! area.
//!
//! ```text
//! <dir>/STORE                  format marker ("ducksnap-store 1")
//! <dir>/DATABASE               the database the store belongs to (see [`owner`])
//! <dir>/lock                   OFD write lock held while mutating
//! <dir>/chunks/ab/<blake3>     one chunk: tag byte (0 raw, 1 zstd) + payload
//! <dir>/snapshots/<id>.json    manifest, written last (tmp, fsync, rename, dir fsync)
//! <dir>/snapshot_metadata.json catalog derived from the manifests
//! <dir>/staging/               temporary files, removed at open
//! <dir>/scratch/<use>/         snapshots reassembled for diff/export, each
//!                              locked by its user (see [`scratch`])
//! ```
//!
//! Commit protocol: every chunk is written to staging, made durable
//! (`syncfs`), renamed into place and the rename made durable (`syncfs`
//! again) before a manifest names it; the
//! manifest rename is the commit. A crash at any instant therefore leaves
//! only complete snapshots listed, plus unreferenced chunks (removed by
//! garbage collection) and staging leftovers (removed at the next open).

mod catalog;
mod chunks;
mod disk;
mod error;
mod gc;
mod manifest;
mod open;
pub mod owner;
mod reassemble;
pub mod scratch;

pub use chunks::{ChunkBatch, ChunkBuf, Compressors, PutChunk};
pub(crate) use disk::{create_private_dir, create_private_file};
pub use disk::{fsync_dir, open_lock_file, open_private, read_full_at, workers};
pub use error::{Result, StoreError};
pub(crate) use manifest::is_hash;
pub use manifest::{
    BadEntry, CaptureInfo, CaptureMethod, CheckInfo, CheckStatus, ChunkRef, DatabaseInfo,
    FileEntry, FileHash, Incremental, MANIFEST_FORMAT, Manifest, Summary, TableCount,
    chunk_list_hash,
};
pub use open::{STORE_FORMAT, Store, StoreLock};
pub use owner::Owner;
pub use scratch::Scratch;
