//! What a manifest says: the snapshot's files and their chunks, how it was
//! captured, what DuckDB found in it; the one check of a manifest read from
//! disk ([`Manifest::validate`]); and the summary the catalog and `list`
//! show.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What DuckDB said about a copy: defined where the check is made.
pub use crate::database::check::{CheckInfo, CheckStatus, TableCount};
use crate::id::SnapshotId;

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Largest chunk length a manifest may claim (chunks are at most one
/// 256 KiB DuckDB block or [`crate::capture::CHUNK_TARGET`]; this leaves room).
pub(crate) const MAX_CHUNK_LEN: u64 = 64 * 1024 * 1024;

/// Whether `s` is a BLAKE3 hash in lowercase hex.
pub(crate) fn is_hash(s: &str) -> bool {
    hash_bytes(s).is_some()
}

/// One chunk of a file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the plain bytes, lowercase hex.
    pub hash: String,
    /// Plain length in bytes.
    pub len: u64,
}

/// A file captured in a snapshot, as the ordered list of its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `db` or `wal`.
    pub role: String,
    pub size: u64,
    /// BLAKE3 of the whole file, in the scheme `hash_of` names.
    pub hash: String,
    /// What `hash` is the hash of (absent in manifests written before the
    /// chunk-list scheme: the file's bytes).
    #[serde(default)]
    pub hash_of: FileHash,
    /// Absent for an empty file, and in the answer to a `snapshot` request
    /// (docs/PROTOCOL.md: a client waiting for its snapshot has no use for
    /// tens of thousands of chunk names). A manifest read from the store
    /// without them for a file that is not empty fails [`Manifest::validate`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

/// What a [`FileEntry`]'s `hash` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileHash {
    /// BLAKE3 of the file's bytes, in order.
    #[default]
    Bytes,
    /// [`chunk_list_hash`] of the chunk list: as binding as a hash of the
    /// bytes (every chunk's hash is checked against its bytes when read), and
    /// computed from the chunk hashes, so no thread has to hash the whole
    /// file in order.
    ChunkList,
}

/// The whole-file hash in the [`FileHash::ChunkList`] scheme: keyed BLAKE3
/// over each chunk's 32-byte hash and its length (u64, little-endian), in
/// order. None if a chunk hash is not 64 lowercase hex digits.
///
/// The 40-byte records are gathered first and hashed in one update (the
/// same hash as one update per record; BLAKE3 is a stream): a database of
/// 10 GB has ~40,000 chunks, and this runs for every manifest read.
pub fn chunk_list_hash(chunks: &[ChunkRef]) -> Option<String> {
    let mut records = Vec::with_capacity(chunks.len() * 40);
    for c in chunks {
        records.extend_from_slice(&hash_bytes(&c.hash)?);
        records.extend_from_slice(&c.len.to_le_bytes());
    }
    let mut h = blake3::Hasher::new_derive_key("ducksnap 2026-11 file chunk list v1");
    h.update(&records);
    Some(h.finalize().to_hex().to_string())
}

/// The value of each lowercase hex digit; [`NOT_HEX`] for every other byte.
/// A table rather than a `match`: chunk names are random, so a branch per
/// digit would be mispredicted half the time (~40,000 names per manifest).
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

/// The 32 bytes a chunk name (64 lowercase hex digits) stands for.
fn hash_bytes(name: &str) -> Option<[u8; 32]> {
    let b = name.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut seen = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        seen |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (seen & 0xf0 == 0).then_some(out)
}

/// How a capture was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMethod {
    /// No writer held the database; an OFD read lock kept one out meanwhile.
    Quiescent,
    /// A writer held DuckDB's lock; header and file checks bracketed the copy.
    Online,
}

/// The documented lower-case word (as in JSON, manifests and the config).
impl std::fmt::Display for CaptureMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaptureMethod::Quiescent => "quiescent",
            CaptureMethod::Online => "online",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureInfo {
    pub method: CaptureMethod,
    pub attempts: u32,
    pub duration_ms: u64,
    /// Set when only what could have changed was read (absent: every byte
    /// was read, and in manifests written before incremental captures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
}

/// An incremental capture: the snapshot its unread blocks come from, and
/// the bytes it read from the live files (database and WAL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremental {
    pub base: SnapshotId,
    pub read_bytes: u64,
    /// The blocks taken from `base` were also read from the live file and
    /// compared (`capture.full_read_every`), and equal.
    #[serde(default)]
    pub compared: bool,
    /// Bytes read outside the window to bring the mirror up to date — the
    /// whole database file — because the headers written since the base
    /// were not all seen (docs/ARCHITECTURE.md, "The chain"); 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub primed_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The database as captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub path: String,
    pub header_version: u64,
    pub storage_version: u64,
    pub block_size: u64,
    pub block_count: u64,
    pub iteration: u64,
}

/// A snapshot's manifest: everything needed to reassemble and judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub id: SnapshotId,
    pub created_at: DateTime<Utc>,
    pub reason: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub pinned: bool,
    /// A pin that expires (a `pre-restore` safety snapshot's); `None` with
    /// `pinned` is a pin by hand, kept until `unpin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_until: Option<DateTime<Utc>>,
    pub database: DatabaseInfo,
    pub files: Vec<FileEntry>,
    pub capture: CaptureInfo,
    pub check: CheckInfo,
    /// Stored (compressed) bytes of the chunks this snapshot added to the store.
    pub bytes_new: u64,
    pub ducksnap_version: String,
}

impl Manifest {
    /// Whether `other` holds the same files, byte for byte (by role and
    /// hash).
    pub fn same_files(&self, other: &Manifest) -> bool {
        let key = |m: &Manifest| {
            let mut v: Vec<String> = m
                .files
                .iter()
                .map(|f| format!("{} {:?} {}", f.role, f.hash_of, f.hash))
                .collect();
            v.sort();
            v
        };
        key(self) == key(other)
    }

    /// This manifest without its chunk lists (what the answer to a
    /// `snapshot` request carries), copied without copying them.
    pub fn without_chunks(&self) -> Manifest {
        Manifest {
            format: self.format,
            id: self.id.clone(),
            created_at: self.created_at,
            reason: self.reason.clone(),
            label: self.label.clone(),
            pinned: self.pinned,
            pinned_until: self.pinned_until,
            database: self.database.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileEntry {
                    role: f.role.clone(),
                    size: f.size,
                    hash: f.hash.clone(),
                    hash_of: f.hash_of,
                    chunks: Vec::new(),
                })
                .collect(),
            capture: self.capture.clone(),
            check: self.check.clone(),
            bytes_new: self.bytes_new,
            ducksnap_version: self.ducksnap_version.clone(),
        }
    }

    pub fn file(&self, role: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == role)
    }

    /// Bytes of every file captured (database and side files).
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Bytes of the side files captured (`.wal`, `.wal.checkpoint`).
    pub fn side_size(&self) -> u64 {
        self.total_size() - self.db_size()
    }

    /// Everything a manifest must satisfy before anything trusts it; one
    /// check shared by `load_manifest` and therefore by restore, verify,
    /// list and garbage collection: a supported format, one `db` entry, only
    /// roles a snapshot holds (each once), chunk names that are BLAKE3 hex
    /// with plausible lengths adding up to the file size, and (chunk-list
    /// scheme) a chunk list that hashes to the recorded file hash — so that
    /// a damaged or edited chunk name is caught before it could mislead
    /// garbage collection.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!(
                "format {} is not supported (expected {MANIFEST_FORMAT})",
                self.format
            ));
        }
        let mut roles = BTreeSet::new();
        for f in &self.files {
            if crate::database::duckfile::role_path(Path::new("db"), &f.role).is_none() {
                return Err(format!("unknown file role {:?}", f.role));
            }
            if !roles.insert(f.role.as_str()) {
                return Err(format!("file role {:?} appears twice", f.role));
            }
            if let Some(c) = f.chunks.iter().find(|c| !is_hash(&c.hash)) {
                return Err(format!("chunk name {:?} is not a BLAKE3 hex hash", c.hash));
            }
            if let Some(c) = f.chunks.iter().find(|c| c.len > MAX_CHUNK_LEN) {
                return Err(format!(
                    "chunk {} claims an implausible length {}",
                    c.hash, c.len
                ));
            }
            let total: u64 = f.chunks.iter().map(|c| c.len).sum();
            if total != f.size {
                return Err(format!(
                    "file {} has chunks totalling {total} bytes, not {}",
                    f.role, f.size
                ));
            }
            if f.hash_of == FileHash::ChunkList
                && chunk_list_hash(&f.chunks).as_deref() != Some(f.hash.as_str())
            {
                return Err(format!(
                    "file {}: its chunk list does not match the file hash {} (the manifest was altered or damaged)",
                    f.role, f.hash
                ));
            }
        }
        if !roles.contains(crate::database::duckfile::DB_ROLE) {
            return Err("no db file entry".into());
        }
        Ok(())
    }

    /// Size of the database file captured.
    pub fn db_size(&self) -> u64 {
        self.file("db").map(|f| f.size).unwrap_or(0)
    }

    pub fn chunk_hashes(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| c.hash.as_str()))
    }
}

/// One line of the catalog and of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: SnapshotId,
    pub created_at: DateTime<Utc>,
    pub reason: String,
    pub label: Option<String>,
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_until: Option<DateTime<Utc>>,
    pub db_size: u64,
    pub wal_size: u64,
    pub bytes_new: u64,
    pub verified: bool,
    pub method: CaptureMethod,
    /// The database header's checkpoint iteration it captured (absent in
    /// catalogs written before it was recorded): evidence, for the WAL
    /// archive's timeline, of checkpoints no followed WAL belonged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_iteration: Option<u64>,
}

impl From<&Manifest> for Summary {
    fn from(m: &Manifest) -> Summary {
        Summary {
            id: m.id.clone(),
            created_at: m.created_at,
            reason: m.reason.clone(),
            label: m.label.clone(),
            pinned: m.pinned,
            pinned_until: m.pinned_until,
            db_size: m.db_size(),
            wal_size: m.side_size(),
            bytes_new: m.bytes_new,
            verified: m.check.status == CheckStatus::Verified,
            method: m.capture.method,
            db_iteration: Some(m.database.iteration),
        }
    }
}

/// A manifest file that could not be read, reported rather than fatal.
#[derive(Debug, Clone, Serialize)]
pub struct BadEntry {
    pub file: String,
    pub reason: String,
}
