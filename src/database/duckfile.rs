//! Reading a DuckDB database file's headers without DuckDB.
//!
//! Layout (checked against files written by DuckDB 1.4 and 2.0): a 4 KiB main
//! header at offset 0 (8-byte checksum, `DUCK` magic at byte 8, a u64 version
//! at byte 12), then two 4 KiB database headers at 4096 and 8192, each
//! `checksum, iteration, meta_block, free_list, block_count, block_alloc_size,
//! vector_size, serialization_compatibility` as little-endian u64. The header
//! with the higher iteration is active. Block *i* starts at
//! `12288 + i * block_alloc_size`.
//!
//! Versions: DuckDB up to 1.x writes 64 at byte 12; DuckDB 2.0 writes 999 there
//! and the storage version (69) in `serialization_compatibility`. The
//! effective storage version is therefore the u64 at byte 12 when it is 64,
//! else `serialization_compatibility` when that is ≥ 64.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Size of the region holding the three headers.
pub const HEADER_REGION: u64 = 12288;
/// The newest storage version the bundled DuckDB reads (a test checks this
/// against a file the bundled DuckDB writes).
pub const BUNDLED_STORAGE_VERSION: u64 = 69;
const MAGIC: &[u8; 4] = b"DUCK";

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a DuckDB database: {reason}")]
    NotDuckDb { path: String, reason: String },
    /// DuckDB's main header flag 1 (`MainHeader::ENCRYPTED_DATABASE_FLAG`,
    /// storage_info.hpp:249 at main `044a04a`): the database headers and
    /// blocks are encrypted.
    #[error(
        "{path} is an encrypted DuckDB database (made with ENCRYPTION_KEY): ducksnap cannot read its headers or blocks without the key and does not back up encrypted databases; copy it while the app is stopped, or keep the data to protect in an unencrypted database"
    )]
    Encrypted { path: String },
}

/// What the headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The u64 at byte 12 of the main header.
    pub header_version: u64,
    /// The effective storage version (see the module docs).
    pub storage_version: u64,
    /// Iteration of the active database header.
    pub iteration: u64,
    pub block_size: u64,
    pub block_count: u64,
}

impl Header {
    /// Parses the 12 KiB header region.
    pub fn parse(buf: &[u8], path: &Path) -> Result<Header, HeaderError> {
        let not = |reason: String| HeaderError::NotDuckDb {
            path: path.display().to_string(),
            reason,
        };
        if buf.len() < HEADER_REGION as usize {
            return Err(not(format!(
                "file is {} bytes, shorter than the {HEADER_REGION}-byte header region",
                buf.len()
            )));
        }
        if &buf[8..12] != MAGIC {
            return Err(not("no DUCK magic at byte 8".into()));
        }
        let u = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
        let header_version = u(12);
        // The main header: checksum, magic, version, then the flags
        // (single_file_block_manager.cpp `MainHeader::Write`).
        if u(20) & 1 != 0 {
            return Err(HeaderError::Encrypted {
                path: path.display().to_string(),
            });
        }
        let (a, b) = (4096usize, 8192usize);
        let active = if u(a + 8) >= u(b + 8) { a } else { b };
        let iteration = u(active + 8);
        let block_count = u(active + 32);
        let block_size = u(active + 40);
        let compat = u(active + 56);
        if !(16 * 1024..=256 * 1024).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(not(format!(
                "implausible block size {block_size} in the active header"
            )));
        }
        let storage_version = if header_version == 64 || compat < 64 {
            header_version
        } else {
            compat
        };
        Ok(Header {
            header_version,
            storage_version,
            iteration,
            block_size,
            block_count,
        })
    }

    /// Reads the header region of an open file.
    pub fn read_at(file: &File, path: &Path) -> Result<Header, HeaderError> {
        let mut buf = vec![0u8; HEADER_REGION as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(HeaderError::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        buf.truncate(got);
        Header::parse(&buf, path)
    }

    /// Reads the header of a file by path.
    pub fn read_path(path: &Path) -> Result<Header, HeaderError> {
        let mut f = File::open(path).map_err(|source| HeaderError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut buf = Vec::with_capacity(HEADER_REGION as usize);
        (&mut f)
            .take(HEADER_REGION)
            .read_to_end(&mut buf)
            .map_err(|source| HeaderError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Header::parse(&buf, path)
    }

    /// Whether the bundled DuckDB can open a file of this storage version.
    pub fn readable_by_bundled(&self) -> bool {
        (64..=BUNDLED_STORAGE_VERSION).contains(&self.storage_version)
    }
}

/// Chunk boundaries for a database file of `len` bytes: the header region,
/// then runs of whole blocks of at least `target` bytes each, so unchanged
/// blocks map to unchanged chunks between snapshots.
pub fn db_chunk_bounds(len: u64, block_size: u64, target: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let first = len.min(HEADER_REGION);
    if first > 0 {
        out.push((0, first));
    }
    let per = block_size.max(1) * (target / block_size.max(1)).max(1);
    let mut off = first;
    while off < len {
        let end = (off + per).min(len);
        out.push((off, end));
        off = end;
    }
    out
}

/// Fixed-size chunk boundaries (for the WAL, which only grows by appending).
pub fn fixed_chunk_bounds(len: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < len {
        let end = (off + size).min(len);
        out.push((off, end));
        off = end;
    }
    out
}

/// A file DuckDB keeps beside a database `<db>`, named `<db><suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideFile {
    /// Role of the file in a manifest.
    pub role: &'static str,
    pub suffix: &'static str,
    /// Whether a snapshot holds it when present.
    pub captured: bool,
}

/// Every file DuckDB (≥ 1.5) may keep beside a database (DESIGN.md §4.2;
/// DuckDB `src/storage/storage_manager.cpp`, `src/storage/wal_replay.cpp`):
/// - `.wal`: commits since the last checkpoint;
/// - `.wal.checkpoint`: commits made while a checkpoint ran; when the process
///   died mid-checkpoint they exist only here, and the next open replays it
///   after a `.wal` that ends in a checkpoint marker. Part of the database.
/// - `.wal.recovery`: written by a read-write open while it merges the two
///   (created anew each time, `FILE_CREATE_NEW`), never read by an open: not
///   part of the database, never captured, but never left beside a restored
///   one either.
pub const SIDE_FILES: [SideFile; 3] = [
    SideFile {
        role: "wal",
        suffix: ".wal",
        captured: true,
    },
    SideFile {
        role: "wal_checkpoint",
        suffix: ".wal.checkpoint",
        captured: true,
    },
    SideFile {
        role: "wal_recovery",
        suffix: ".wal.recovery",
        captured: false,
    },
];

/// The manifest role of the database file itself.
pub const DB_ROLE: &str = "db";

/// `<db><suffix>`
pub fn side_path(db: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}

/// Where a file of a manifest role lives for database `db`; `None` for a
/// role a snapshot never holds.
pub fn role_path(db: &std::path::Path, role: &str) -> Option<std::path::PathBuf> {
    if role == DB_ROLE {
        return Some(db.to_path_buf());
    }
    SIDE_FILES
        .iter()
        .find(|s| s.captured && s.role == role)
        .map(|s| side_path(db, s.suffix))
}

/// The database and every side file path, captured or not.
pub fn all_paths(db: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::iter::once(db.to_path_buf())
        .chain(SIDE_FILES.iter().map(|s| side_path(db, s.suffix)))
        .collect()
}

/// `<db>.wal`
pub fn wal_path(db: &std::path::Path) -> std::path::PathBuf {
    side_path(db, ".wal")
}

/// `<db>.wal.checkpoint` (DuckDB ≥ 1.5, during a checkpoint, and after a
/// crash in one)
pub fn wal_checkpoint_path(db: &std::path::Path) -> std::path::PathBuf {
    side_path(db, ".wal.checkpoint")
}
