//! The mirror: `<store>/mirror/db.duckdb`, a private copy of the database
//! as one stored snapshot holds it, kept so that the next online capture
//! reads only the blocks that can have changed ([`super::incremental`]) and
//! DuckDB still checks a whole file. It costs one more copy of the
//! database on the store's disk.
//!
//! `mirror.json` says which stored file the mirror equals (its chunk-list
//! hash, size, block size, header iteration). It is removed — durably —
//! before the mirror is written to, and written — after the mirror is
//! flushed — only once the mirror again equals a captured file, so that a
//! crash at any instant leaves either a mirror that equals what its record
//! says, or no record (and the next capture reads everything). A record
//! whose file cannot be found among the newest snapshots is not used.
//!
//! A long-running process keeps the manifest of the snapshot it last
//! committed or found here ([`remember`]), and uses it while that
//! manifest's file keeps the same `stat` stamp.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::outcome::{CaptureError, io_err};
use crate::database::blocks::BlockMap;
use crate::database::stamp::Stamp;
use crate::id::SnapshotId;
use crate::store::{FileEntry, FileHash, Manifest, Store};

/// How many of the newest snapshots are searched for the mirror's file.
const SEARCH: usize = 20;

/// What `mirror.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The chunk-list hash of the database file the mirror equals.
    pub db_hash: String,
    pub size: u64,
    pub block_size: u64,
    pub iteration: u64,
    /// The live database file it was taken from (a file replaced since —
    /// restored, deleted and created again — is another database).
    pub dev: u64,
    pub ino: u64,
    /// When every block of the mirror was last known to equal the live
    /// file's (a full read, or a comparison): see
    /// `capture.full_read_every`.
    #[serde(default)]
    pub compared_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The live file's ctime when the mirror was taken, recorded only when
    /// the file had not been changed for [`super::outcome::QUIET`] before:
    /// any later write then moves it (and nobody can set it back), so the
    /// same ctime, size, inode and header say that no block changed since.
    #[serde(default)]
    pub quiet_ctime: Option<(i64, i64)>,
}

/// A usable mirror: the file, its block map, and the stored snapshot whose
/// database file it equals.
pub struct Mirror {
    pub path: PathBuf,
    pub map: BlockMap,
    pub base: Arc<Manifest>,
    pub record: Record,
}

/// The base manifest this process last found for a mirror, with the stamp
/// its file had: a daemon takes it from here instead of reading and
/// parsing the file again for every snapshot (~40,000 chunk names at
/// 10 GB). Only while the file keeps that stamp — a manifest is written
/// once, by rename; pin and unpin write a new file, and any write in place
/// moves the ctime — and only for the mirror's lookup: everything else
/// (verify, restore, prune) reads manifests from the store.
static FOUND: Mutex<Option<Found>> = Mutex::new(None);

struct Found {
    store: PathBuf,
    id: SnapshotId,
    stamp: Stamp,
    manifest: Arc<Manifest>,
}

/// Keeps `m`, just committed, as the manifest the next capture's mirror
/// lookup finds first (the newest snapshot), with its file's stamp now.
pub fn remember(store: &Store, m: &Arc<Manifest>) {
    if let Some(stamp) = store.manifest_stamp(&m.id) {
        remember_as(store, m, stamp);
    }
}

fn remember_as(store: &Store, m: &Arc<Manifest>, stamp: Stamp) {
    if let Ok(mut f) = FOUND.lock() {
        *f = Some(Found {
            store: store.root().to_path_buf(),
            id: m.id.clone(),
            stamp,
            manifest: m.clone(),
        });
    }
}

/// Snapshot `id`'s manifest, from [`FOUND`] when it still holds it.
fn load_base(store: &Store, id: &SnapshotId) -> Option<(Arc<Manifest>, Stamp)> {
    let stamp = store.manifest_stamp(id)?;
    let cached = FOUND.lock().ok().and_then(|f| {
        f.as_ref()
            .filter(|f| f.store == store.root() && &f.id == id && f.stamp == stamp)
            .map(|f| f.manifest.clone())
    });
    match cached {
        Some(m) => Some((m, stamp)),
        None => Some((Arc::new(store.load_manifest(id).ok()?), stamp)),
    }
}

/// The mirror directory of `store`.
pub fn dir(store: &Store) -> PathBuf {
    store.root().join("mirror")
}

fn record_path(store: &Store) -> PathBuf {
    dir(store).join("mirror.json")
}

/// The mirror file.
pub fn file(store: &Store) -> PathBuf {
    dir(store).join("db.duckdb")
}

/// The mirror, when its record is there, its file matches it and a stored
/// snapshot holds that file; `None` otherwise (the capture reads all).
pub fn usable(store: &Store) -> Option<Mirror> {
    let text = fs::read(record_path(store)).ok()?;
    let rec: Record = serde_json::from_slice(&text).ok()?;
    let path = file(store);
    let f = File::open(&path).ok()?;
    if f.metadata().ok()?.len() != rec.size {
        return None;
    }
    let map = BlockMap::read(&f, &path).ok()?;
    if map.iteration != rec.iteration || map.block_size != rec.block_size {
        return None;
    }
    let catalog = store.catalog().ok()?;
    let (base, stamp) = catalog.iter().take(SEARCH).find_map(|s| {
        let (m, stamp) = load_base(store, &s.id)?;
        let db = db_entry(&m)?;
        (db.hash == rec.db_hash
            && db.size == rec.size
            && m.database.block_size == rec.block_size
            && m.database.iteration == rec.iteration)
            .then_some((m, stamp))
    })?;
    remember_as(store, &base, stamp);
    Some(Mirror {
        path,
        map,
        base,
        record: rec,
    })
}

/// Whether a recorded mirror is there (its record parses and its file has
/// the recorded size), without looking for its snapshot: what a space
/// check needs to know — an incremental capture, or a prime, writes into
/// it in place.
pub fn recorded(store: &Store) -> bool {
    let rec = fs::read(record_path(store))
        .ok()
        .and_then(|t| serde_json::from_slice::<Record>(&t).ok());
    rec.is_some_and(|r| fs::metadata(file(store)).is_ok_and(|m| m.len() == r.size))
}

/// The database file of a manifest, when it is in the chunk-list scheme.
pub fn db_entry(m: &Manifest) -> Option<&FileEntry> {
    m.files
        .iter()
        .find(|f| f.role == crate::database::duckfile::DB_ROLE && f.hash_of == FileHash::ChunkList)
}

/// Removes the record, durably: from here on the mirror may be written.
pub fn forget(store: &Store) -> Result<(), CaptureError> {
    let p = record_path(store);
    match fs::remove_file(&p) {
        Ok(()) => sync_dir(&dir(store)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &p)(e)),
    }
}

/// Removes the mirror, record first (`capture.incremental = false`).
pub fn remove(store: &Store) -> Result<(), CaptureError> {
    let d = dir(store);
    if !d.exists() {
        return Ok(());
    }
    forget(store)?;
    fs::remove_dir_all(&d).map_err(io_err("remove", &d))
}

/// Creates the mirror directory (private; as root, given to the store's
/// owner) when it is missing.
fn ensure_dir(store: &Store) -> Result<(), CaptureError> {
    let d = dir(store);
    match fs::symlink_metadata(&d) {
        Ok(m) if m.is_dir() => return Ok(()),
        // Never written through a link planted there.
        Ok(_) => {
            return Err(io_err("use", &d)(std::io::Error::new(
                ErrorKind::AlreadyExists,
                "it is not a directory",
            )));
        }
        Err(_) => {}
    }
    crate::store::create_private_dir(&d).map_err(io_err("create directory", &d))?;
    sync_dir(store.root())
}

/// The mirror file opened for reading and writing (created, private, when
/// missing; never through a link), its record removed first.
pub fn open_for_writing(store: &Store) -> Result<File, CaptureError> {
    ensure_dir(store)?;
    forget(store)?;
    let p = file(store);
    crate::store::open_private(&p).map_err(io_err("open", &p))
}

/// Makes `keep.path` (a database file equal to `entry`, at `(block size,
/// iteration)`, of the live file `keep.live`) the mirror: flushed, renamed
/// into place, then recorded.
pub(super) fn adopt(
    store: &Store,
    entry: &FileEntry,
    (block_size, iteration): (u64, u64),
    keep: &super::outcome::Keep,
) -> Result<(), CaptureError> {
    ensure_dir(store)?;
    forget(store)?;
    let target = file(store);
    let staged = keep.path.as_path();
    if staged != target {
        File::open(staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", staged))?;
        fs::rename(staged, &target).map_err(io_err("rename into", &target))?;
    } else {
        File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", &target))?;
    }
    for side in [".wal", ".wal.checkpoint"] {
        let _ = fs::remove_file(crate::database::duckfile::side_path(&target, side));
    }
    let rec = Record {
        db_hash: entry.hash.clone(),
        size: entry.size,
        block_size,
        iteration,
        dev: keep.live.dev,
        ino: keep.live.ino,
        compared_at: keep.compared_at,
        quiet_ctime: (keep.quiet && keep.live.size == entry.size).then_some(keep.live.ctime),
    };
    let bytes = serde_json::to_vec(&rec).expect("a record serializes");
    Ok(store.write_atomic(&record_path(store), &bytes)?)
}

fn sync_dir(d: &Path) -> Result<(), CaptureError> {
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync directory", d))
}
