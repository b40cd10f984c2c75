//! The on-disk snapshot store: content-addressed chunks, manifests as the
//! commit point, a derived catalog, a kernel lock for mutation and a staging
//! area.
//!
//! ```text
//! <dir>/STORE                  format marker ("ducksnap-store 1")
//! <dir>/lock                   OFD write lock held while mutating
//! <dir>/chunks/ab/<blake3>     one chunk: tag byte (0 raw, 1 zstd) + payload
//! <dir>/snapshots/<id>.json    manifest, written last (tmp, fsync, rename, dir fsync)
//! <dir>/snapshot_metadata.json catalog derived from the manifests
//! <dir>/staging/               temporary files, removed at open
//! ```
//!
//! Commit protocol: every chunk is written to staging, made durable
//! (`syncfs`), renamed into place and the rename made durable (`syncfs`
//! again) before a manifest names it; the
//! manifest rename is the commit. A crash at any instant therefore leaves
//! only complete snapshots listed, plus unreferenced chunks (removed by
//! garbage collection) and staging leftovers (removed at the next open).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::database::oslock::{self, LockKind};

mod manifest;

use crate::id::SnapshotId;
pub use manifest::{
    BadEntry, CaptureInfo, CaptureMethod, CheckInfo, CheckStatus, ChunkRef, DatabaseInfo,
    FileEntry, FileHash, MANIFEST_FORMAT, Manifest, Summary, TableCount, chunk_list_hash,
};
pub(crate) use manifest::{MAX_CHUNK_LEN, is_hash};

const MARKER: &str = "ducksnap-store 1\n";
const CATALOG: &str = "snapshot_metadata.json";

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

#[derive(Debug, Serialize, Deserialize)]
struct Catalog {
    format: u32,
    snapshots: Vec<Summary>,
}

/// Held while mutating the store; released on drop or process death.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Result of storing a chunk.
#[derive(Debug, Clone)]
pub struct PutChunk {
    pub chunk: ChunkRef,
    /// Whether the chunk was new to the store.
    pub new: bool,
    /// Bytes written to disk (0 when it already existed).
    pub stored: u64,
}

/// Reusable buffers for reading chunks.
#[derive(Default)]
pub struct ChunkBuf {
    raw: Vec<u8>,
    plain: Vec<u8>,
    zstd: bool,
}

impl ChunkBuf {
    /// The chunk's plain bytes after [`Store::read_chunk_into`].
    pub fn plain(&self) -> &[u8] {
        if self.zstd {
            &self.plain
        } else {
            self.raw.get(1..).unwrap_or_default()
        }
    }
}

/// Reassembly's flow control between the chunk readers and the writer.
#[derive(Default)]
struct Gate {
    /// Chunks written so far.
    written: usize,
    /// Buffers the writer is done with.
    pool: Vec<ChunkBuf>,
    /// Set when the writer stops (done or failed).
    stop: bool,
}

/// A handle on an opened store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    level: i32,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// zstd level of the probe that decides whether a chunk is worth compressing.
/// At this level zstd runs at several GB/s and skips entropy coding of
/// literals; on DuckDB files it finds the same compressible chunks as level 3
/// (see docs/BENCHMARKS.md).
const PROBE_LEVEL: i32 = -3;

/// Compression pays when it saves at least 10% of a chunk.
fn pays(compressed: usize, plain: usize) -> bool {
    (compressed as u64) * 10 < (plain as u64) * 9
}

/// One thread's compression contexts, created when the thread first meets
/// a new chunk (an incremental snapshot of unchanged data never needs one)
/// and reused after (creating a zstd context per chunk cost more than
/// compressing an incompressible one).
#[derive(Default)]
pub struct Compressors {
    contexts: Option<(
        zstd::bulk::Compressor<'static>,
        zstd::bulk::Compressor<'static>,
    )>,
}

/// Chunks written by one operation. Each new chunk is compressed (where
/// that pays) and written to staging without an fsync, and its writeback is
/// started at once; [`ChunkBatch::commit`] makes them all durable with one
/// `syncfs`, then renames them into `chunks/` and makes the renames durable
/// with a second `syncfs`. Nothing may name a chunk before the commit. Dropped without a
/// commit, the batch removes its staging files. [`ChunkBatch::put`] takes
/// `&self` and may run on many threads at once.
pub struct ChunkBatch<'a> {
    store: &'a Store,
    state: Mutex<BatchState>,
}

#[derive(Default)]
struct BatchState {
    /// (staging file, final path) of every chunk written by this batch.
    pending: Vec<(PathBuf, PathBuf)>,
    /// Hashes this batch has claimed (written or being written).
    queued: HashSet<String>,
}

impl ChunkBatch<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, BatchState> {
        // A worker that panicked cannot leave the sets half-updated (each
        // update is one insert or push), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The probe and full-level contexts of `z`, created on first use.
    fn contexts<'z>(
        &self,
        z: &'z mut Compressors,
    ) -> Result<&'z mut (
        zstd::bulk::Compressor<'static>,
        zstd::bulk::Compressor<'static>,
    )> {
        if z.contexts.is_none() {
            let ctx = |level| {
                zstd::bulk::Compressor::new(level)
                    .map_err(io_err("create a compressor for", &self.store.root))
            };
            z.contexts = Some((ctx(PROBE_LEVEL)?, ctx(self.store.level)?));
        }
        Ok(z.contexts.as_mut().expect("just created"))
    }

    /// Hashes `data` and, unless the store or this batch already has the
    /// chunk, writes it to staging: zstd at the store's level when a fast
    /// probe says compression saves 10%, raw otherwise. Runs on any thread.
    pub fn put(&self, data: &[u8], z: &mut Compressors) -> Result<PutChunk> {
        let hash = blake3::hash(data).to_hex().to_string();
        let chunk = ChunkRef {
            hash: hash.clone(),
            len: data.len() as u64,
        };
        let final_path = self.store.chunk_path(&hash);
        let old = PutChunk {
            chunk: chunk.clone(),
            new: false,
            stored: 0,
        };
        if final_path.exists() || !self.state().queued.insert(hash.clone()) {
            return Ok(old);
        }
        let (probe_ctx, full_ctx) = self.contexts(z)?;
        let probe = probe_ctx
            .compress(data)
            .map_err(io_err("compress chunk for", &final_path))?;
        let body = if pays(probe.len(), data.len()) {
            let full = full_ctx
                .compress(data)
                .map_err(io_err("compress chunk for", &final_path))?;
            Some(if full.len() < probe.len() {
                full
            } else {
                probe
            })
        } else {
            None
        };
        let (tag, payload): (u8, &[u8]) = match &body {
            Some(zb) => (1, zb),
            None => (0, data),
        };
        let tmp = self
            .store
            .staging()
            .join(format!("chunk-{}-{}", &hash[..16], tmp_suffix()));
        // Registered before it is written, so that a failure part-way still
        // gets the file removed when the batch is dropped.
        self.state().pending.push((tmp.clone(), final_path));
        let mut f = create_private_file(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&[tag]).map_err(io_err("write", &tmp))?;
        f.write_all(payload).map_err(io_err("write", &tmp))?;
        // Start writeback now (DONTNEED writes dirty pages out asynchronously
        // and drops clean ones), so the commit's syncfs finds most of the
        // batch on disk already and chunks do not crowd the page cache.
        let _ = nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        Ok(PutChunk {
            chunk,
            new: true,
            stored: payload.len() as u64 + 1,
        })
    }

    /// Makes every chunk of the batch durable and visible.
    pub fn commit(self) -> Result<()> {
        let pending = std::mem::take(&mut self.state().pending);
        if pending.is_empty() {
            return Ok(());
        }
        let staging = self.store.staging();
        let dir = File::open(&staging).map_err(io_err("open", &staging))?;
        nix::unistd::syncfs(&dir).map_err(|e| io_err("syncfs", &staging)(e.into()))?;
        let mut dirs = BTreeSet::new();
        for (i, (tmp, path)) in pending.iter().enumerate() {
            let parent = path.parent().expect("chunk has a parent").to_path_buf();
            let moved = if dirs.contains(&parent) {
                Ok(())
            } else {
                create_private_dir(&parent).map_err(io_err("create directory", &parent))
            }
            .and_then(|()| fs::rename(tmp, path).map_err(io_err("rename chunk into", path)));
            if let Err(e) = moved {
                // Leave the not-yet-renamed rest to Drop.
                self.state().pending = pending[i..].to_vec();
                return Err(e);
            }
            dirs.insert(parent);
        }
        // One more syncfs makes every rename (and every new `chunks/ab`
        // directory) durable: one journal commit instead of an fsync per
        // directory, which cost a quarter of a large first snapshot.
        nix::unistd::syncfs(&dir).map_err(|e| io_err("syncfs", &staging)(e.into()))?;
        Ok(())
    }
}

impl Drop for ChunkBatch<'_> {
    fn drop(&mut self) {
        for (tmp, _) in &self.state().pending {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl Store {
    /// Opens the store at `dir`, creating it when `create` is set and it does
    /// not exist. Checks the format marker; removes staging leftovers when no
    /// other process is mutating the store.
    pub fn open(dir: &Path, create: bool, level: i32) -> Result<Store> {
        let marker = dir.join("STORE");
        if !marker.exists() {
            let empty = match fs::read_dir(dir) {
                Ok(mut it) => it.next().is_none(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(io_err("read directory", dir)(e)),
            };
            if !create {
                return Err(StoreError::Format {
                    path: dir.to_path_buf(),
                    reason: "no STORE marker (no snapshot has been taken yet?)".into(),
                });
            }
            if !empty {
                return Err(StoreError::Format {
                    path: dir.to_path_buf(),
                    reason: "directory exists, is not empty and has no STORE marker; refusing to write into it"
                        .into(),
                });
            }
            create_private_dir(dir).map_err(io_err("create directory", dir))?;
            let store = Store {
                root: dir.to_path_buf(),
                level,
            };
            store.write_atomic(&marker, MARKER.as_bytes())?;
        }
        let found = fs::read_to_string(&marker).map_err(io_err("read", &marker))?;
        if found != MARKER {
            return Err(StoreError::Format {
                path: dir.to_path_buf(),
                reason: format!(
                    "STORE marker says {:?}, expected {:?}",
                    found.trim(),
                    MARKER.trim()
                ),
            });
        }
        let store = Store {
            root: dir.to_path_buf(),
            level,
        };
        for sub in ["chunks", "snapshots", "staging"] {
            let p = dir.join(sub);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Link { path: p }),
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(StoreError::Format {
                        path: dir.to_path_buf(),
                        reason: format!("{} is not a directory", p.display()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_private_dir(&p).map_err(io_err("create directory", &p))?
                }
                Err(e) => return Err(io_err("stat", &p)(e)),
            }
        }
        tighten_modes(dir)?;
        if let Some(lock) = store.try_lock()? {
            store.clean_staging(&lock)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn lock_file(&self) -> Result<File> {
        let p = self.root.join("lock");
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&p)
            .map_err(io_err("open", &p))
    }

    /// Takes the mutation lock, waiting for another holder to finish.
    pub fn lock(&self) -> Result<StoreLock> {
        let f = self.lock_file()?;
        let p = self.root.join("lock");
        oslock::lock_wait(&f, LockKind::Write).map_err(io_err("lock", &p))?;
        Ok(StoreLock { _file: f })
    }

    /// Takes the mutation lock if free.
    pub fn try_lock(&self) -> Result<Option<StoreLock>> {
        let f = self.lock_file()?;
        let p = self.root.join("lock");
        Ok(oslock::try_lock(&f, LockKind::Write)
            .map_err(io_err("lock", &p))?
            .then_some(StoreLock { _file: f }))
    }

    /// Removes everything in staging. Needs the lock: staging belongs to the
    /// holder while it works.
    pub fn clean_staging(&self, _lock: &StoreLock) -> Result<usize> {
        let dir = self.staging();
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let e = e.map_err(io_err("read directory", &dir))?;
            let p = e.path();
            let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err("remove staging leftover", &p))?;
            n += 1;
        }
        if n > 0 {
            tracing::info!(
                event = "store.staging_cleaned",
                entries = n,
                "removed staging leftovers"
            );
        }
        Ok(n)
    }

    /// A fresh private directory in staging.
    pub fn staging_dir(&self, _lock: &StoreLock, name: &str) -> Result<PathBuf> {
        let p = self.staging().join(format!("{name}-{}", tmp_suffix()));
        create_private_dir(&p).map_err(io_err("create directory", &p))?;
        Ok(p)
    }

    pub fn chunk_path(&self, hash: &str) -> PathBuf {
        self.root.join("chunks").join(&hash[..2]).join(hash)
    }

    /// A batch for storing chunks; see [`ChunkBatch`].
    pub fn batch<'a>(&'a self, _lock: &'a StoreLock) -> ChunkBatch<'a> {
        ChunkBatch {
            store: self,
            state: Mutex::new(BatchState::default()),
        }
    }

    /// Reads a chunk and checks its hash.
    pub fn read_chunk(&self, c: &ChunkRef) -> Result<Vec<u8>> {
        let mut buf = ChunkBuf::default();
        self.read_chunk_into(c, &mut buf)?;
        Ok(buf.plain().to_vec())
    }

    /// Reads a chunk into `buf` (reusing its allocations) and checks its
    /// length and hash; the plain bytes are then `buf.plain()`.
    pub fn read_chunk_into(&self, c: &ChunkRef, buf: &mut ChunkBuf) -> Result<()> {
        let path = self.chunk_path(&c.hash);
        buf.raw.clear();
        let read = File::open(&path).and_then(|mut f| {
            use std::io::Read;
            f.read_to_end(&mut buf.raw)
        });
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::ChunkMissing {
                    hash: c.hash.clone(),
                });
            }
            Err(e) => return Err(io_err("read chunk", &path)(e)),
        }
        let corrupt = |reason: String| StoreError::ChunkCorrupt {
            hash: c.hash.clone(),
            reason,
        };
        buf.zstd = match buf.raw.first() {
            Some(0) => false,
            Some(1) => {
                // Never trust a length from outside with an allocation.
                if c.len > MAX_CHUNK_LEN {
                    return Err(corrupt(format!("length {} is implausible", c.len)));
                }
                buf.plain.clear();
                buf.plain.reserve(c.len as usize);
                zstd::bulk::Decompressor::new()
                    .and_then(|mut d| d.decompress_to_buffer(&buf.raw[1..], &mut buf.plain))
                    .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
                true
            }
            Some(t) => return Err(corrupt(format!("unknown tag byte {t}"))),
            None => return Err(corrupt("empty file".into())),
        };
        let plain = buf.plain();
        if plain.len() as u64 != c.len {
            return Err(corrupt(format!(
                "length {} instead of {}",
                plain.len(),
                c.len
            )));
        }
        if blake3::hash(plain).to_hex().as_str() != c.hash {
            return Err(corrupt("content does not match its hash".into()));
        }
        Ok(())
    }

    /// Every chunk file present, by hash. Never follows a link: a link where
    /// a `chunks/xx` directory or a chunk file should be is an error.
    pub fn chunk_set(&self) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        let dir = self.root.join("chunks");
        for sub in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let sub = sub.map_err(io_err("read directory", &dir))?;
            let kind = sub.file_type().map_err(io_err("stat", &sub.path()))?;
            if kind.is_symlink() {
                return Err(StoreError::Link { path: sub.path() });
            }
            if !kind.is_dir() {
                continue;
            }
            let sub = sub.path();
            for e in fs::read_dir(&sub).map_err(io_err("read directory", &sub))? {
                let e = e.map_err(io_err("read directory", &sub))?;
                let name = e.file_name().to_string_lossy().into_owned();
                // Only files named like chunks count (and may be collected).
                if !is_hash(&name) {
                    continue;
                }
                if e.file_type()
                    .map_err(io_err("stat", &e.path()))?
                    .is_symlink()
                {
                    return Err(StoreError::Link { path: e.path() });
                }
                out.insert(name);
            }
        }
        Ok(out)
    }

    /// Whether snapshot `id`'s manifest file is (still) there.
    pub fn manifest_exists(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.manifest_path(id)).is_ok()
    }

    fn manifest_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(format!("{id}.json"))
    }

    /// Writes a manifest: the commit point of a snapshot. Then refreshes the
    /// catalog (derived data; a failure there is logged, not fatal).
    pub fn commit_manifest(&self, _lock: &StoreLock, m: &Manifest) -> Result<()> {
        // The catalog as it stands, checked against the manifests present:
        // adding one line to it spares reading every manifest again.
        let before = self.catalog();
        let path = self.manifest_path(&m.id);
        let body = serde_json::to_vec_pretty(m).expect("manifest serializes");
        self.write_atomic(&path, &body)?;
        let updated = before.and_then(|mut snapshots| {
            snapshots.retain(|s| s.id != m.id);
            snapshots.push(Summary::from(m));
            sort_newest_first(&mut snapshots, |s| (&s.created_at, &s.id));
            self.write_catalog(snapshots)
        });
        if let Err(e) = updated {
            tracing::warn!(event = "store.catalog_failed", error = %e, "could not rewrite the catalog; it will be rebuilt on next read");
        }
        Ok(())
    }

    /// Writes `data` to `path` via a staging file: write, fsync, rename, fsync dir.
    pub fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = self.staging();
        let tmp_dir = if staging.is_dir() {
            staging
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let tmp = tmp_dir.join(format!(".{name}.{}.tmp", tmp_suffix()));
        {
            let mut f = create_private_file(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(data).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Ids of the manifest files present (names that are not valid ids are
    /// reported in the second list).
    fn manifest_ids(&self) -> Result<(BTreeSet<SnapshotId>, Vec<BadEntry>)> {
        let dir = self.root.join("snapshots");
        let mut ids = BTreeSet::new();
        let mut bad = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let e = e.map_err(io_err("read directory", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".json").map(SnapshotId::parse) {
                Some(Ok(id)) => {
                    ids.insert(id);
                }
                Some(Err(err)) => bad.push(BadEntry {
                    file: name,
                    reason: err.to_string(),
                }),
                None => bad.push(BadEntry {
                    file: name,
                    reason: "not a manifest (.json) file".into(),
                }),
            }
        }
        Ok((ids, bad))
    }

    /// Loads and checks one manifest.
    pub fn load_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        let path = self.manifest_path(id);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    id: id.clone(),
                    store: self.root.clone(),
                });
            }
            Err(e) => return Err(io_err("read manifest", &path)(e)),
        };
        let bad = |reason: String| StoreError::BadManifest {
            path: path.clone(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if &m.id != id {
            return Err(bad(format!("names id {} but the file is {id}.json", m.id)));
        }
        m.validate().map_err(bad)?;
        Ok(m)
    }

    /// Every readable manifest, newest first, and the files that could not be read.
    pub fn manifests(&self) -> Result<(Vec<Manifest>, Vec<BadEntry>)> {
        let (ids, mut bad) = self.manifest_ids()?;
        let mut out = Vec::new();
        for id in ids {
            match self.load_manifest(&id) {
                Ok(m) => out.push(m),
                Err(StoreError::NotFound { .. }) => {} // removed meanwhile
                Err(e) => bad.push(BadEntry {
                    file: format!("{id}.json"),
                    reason: e.to_string(),
                }),
            }
        }
        sort_newest_first(&mut out, |m| (&m.created_at, &m.id));
        Ok((out, bad))
    }

    /// Rewrites the catalog from the manifests.
    pub fn rebuild_catalog(&self) -> Result<Vec<Summary>> {
        let (ms, _) = self.manifests()?;
        self.write_catalog(ms.iter().map(Summary::from).collect())
    }

    fn write_catalog(&self, snapshots: Vec<Summary>) -> Result<Vec<Summary>> {
        let cat = Catalog {
            format: MANIFEST_FORMAT,
            snapshots,
        };
        let body = serde_json::to_vec_pretty(&cat).expect("catalog serializes");
        self.write_atomic(&self.root.join(CATALOG), &body)?;
        Ok(cat.snapshots)
    }

    /// The catalog, newest first: read from `snapshot_metadata.json` when it
    /// matches the manifests present, rebuilt otherwise.
    pub fn catalog(&self) -> Result<Vec<Summary>> {
        let (ids, _) = self.manifest_ids()?;
        let path = self.root.join(CATALOG);
        let cached = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Catalog>(&b).ok())
            .filter(|c| c.format == MANIFEST_FORMAT)
            .filter(|c| {
                c.snapshots.iter().map(|s| &s.id).collect::<BTreeSet<_>>() == ids.iter().collect()
            });
        match cached {
            Some(c) => Ok(c.snapshots),
            None => {
                if path.exists() {
                    tracing::warn!(event = "store.catalog_rebuilt", path = %path.display(), "catalog was unreadable or out of date; rebuilt from the manifests");
                }
                self.rebuild_catalog()
            }
        }
    }

    /// Reassembles a file of a snapshot into `dest`, checking every chunk and
    /// the whole-file hash. Does not fsync.
    pub fn reassemble_file(&self, f: &FileEntry, dest: &Path) -> Result<()> {
        let mut out = create_private_file(dest).map_err(io_err("create", dest))?;
        let mut h = (f.hash_of == FileHash::Bytes).then(blake3::Hasher::new);
        let threads = workers();
        // How far the readers may run ahead of the writer, in chunks.
        let window = 4 * threads;
        let next = AtomicUsize::new(0);
        let gate = (Mutex::new(Gate::default()), Condvar::new());
        let (tx, rx) = mpsc::channel::<(usize, Result<ChunkBuf>)>();
        let n = f.chunks.len();
        let written = std::thread::scope(|s| {
            for _ in 0..threads.min(n) {
                let (tx, next, gate) = (tx.clone(), &next, &gate);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let mut buf = {
                            let (lock, cv) = gate;
                            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
                            while !g.stop && i >= g.written + window {
                                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                            }
                            if g.stop {
                                break;
                            }
                            g.pool.pop().unwrap_or_default()
                        };
                        let read = self.read_chunk_into(&f.chunks[i], &mut buf).map(|()| buf);
                        if tx.send((i, read)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // This thread writes the chunks in order as they arrive.
            let result = (|| -> Result<()> {
                let mut ready = BTreeMap::new();
                let mut done = 0;
                while done < n {
                    let Ok((i, read)) = rx.recv() else { break };
                    ready.insert(i, read?);
                    while let Some(buf) = ready.remove(&done) {
                        if let Some(h) = h.as_mut() {
                            h.update(buf.plain());
                        }
                        out.write_all(buf.plain()).map_err(io_err("write", dest))?;
                        done += 1;
                        let (lock, cv) = &gate;
                        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
                        g.written = done;
                        g.pool.push(buf);
                        cv.notify_all();
                    }
                }
                if done < n {
                    // Only if a reader stopped without reporting (a panic,
                    // which the scope re-raises): never a short file.
                    return Err(io_err("reassemble", dest)(io::Error::other(format!(
                        "only {done} of {n} chunks arrived"
                    ))));
                }
                Ok(())
            })();
            let (lock, cv) = &gate;
            lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
            cv.notify_all();
            result
        });
        written?;
        check_file_hash(f, h)
    }

    /// Reassembles a snapshot as `<dir>/<name>` plus its side files
    /// (`<name>.wal`, `<name>.wal.checkpoint`) as the snapshot holds them.
    /// Returns the database path.
    pub fn reassemble(&self, m: &Manifest, dir: &Path, name: &str) -> Result<PathBuf> {
        m.validate().map_err(|reason| StoreError::BadManifest {
            path: self.manifest_path(&m.id),
            reason,
        })?;
        let db = dir.join(name);
        for f in &m.files {
            let dest = crate::database::duckfile::role_path(&db, &f.role).expect("validated role");
            self.reassemble_file(f, &dest)?;
        }
        Ok(db)
    }

    /// Chunks a manifest names that are not in the store.
    pub fn missing_chunks(m: &Manifest, present: &HashSet<String>) -> Vec<String> {
        let mut seen = BTreeMap::new();
        for h in m.chunk_hashes() {
            if !present.contains(h) {
                seen.insert(h.to_string(), ());
            }
        }
        seen.into_keys().collect()
    }

    /// Deletes every chunk no manifest names. The caller holds the lock and
    /// has made sure every manifest is readable. Returns (files, bytes).
    pub fn collect_garbage(&self, _lock: &StoreLock) -> Result<(usize, u64)> {
        let (manifests, bad) = self.manifests()?;
        if !bad.is_empty() {
            return Err(StoreError::GcRefused {
                manifests: bad.into_iter().map(|b| b.file).collect(),
            });
        }
        let live: HashSet<&str> = manifests.iter().flat_map(|m| m.chunk_hashes()).collect();
        let mut files = 0;
        let mut bytes = 0;
        for h in self.chunk_set()? {
            if live.contains(h.as_str()) {
                continue;
            }
            let p = self.chunk_path(&h);
            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).map_err(io_err("remove chunk", &p))?;
            files += 1;
            bytes += len;
        }
        if files > 0 {
            // The removals are durable after one syncfs (as in commit).
            let root = File::open(&self.root).map_err(io_err("open", &self.root))?;
            nix::unistd::syncfs(&root).map_err(|e| io_err("syncfs", &self.root)(e.into()))?;
        }
        Ok((files, bytes))
    }

    /// Total bytes of chunk files on disk.
    pub fn stored_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for h in self.chunk_set()? {
            let p = self.chunk_path(&h);
            total += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }
}

/// Creates a directory (and missing parents) only its owner can enter.
pub(crate) fn create_private_dir(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

/// Creates (or truncates) a file only its owner can read. Never follows a
/// link at `p`.
pub(crate) fn create_private_file(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
}

/// Every chunk's bytes matched its hash on the way; what is left is to tie
/// the list (or, for old manifests, the bytes) to the manifest's file hash.
fn check_file_hash(f: &FileEntry, bytes: Option<blake3::Hasher>) -> Result<()> {
    let got = match bytes {
        Some(h) => h.finalize().to_hex().to_string(),
        None => chunk_list_hash(&f.chunks).unwrap_or_default(),
    };
    if got != f.hash {
        return Err(StoreError::ChunkCorrupt {
            hash: f.hash.clone(),
            reason: format!("reassembled {} hashes to {got}", f.role),
        });
    }
    Ok(())
}

/// A store made by an older ducksnap (or copied with `cp -r`) may be
/// readable by other users: its chunks are the database. When the store's
/// directory admits anyone but its owner, every directory in it becomes
/// 0700 and every file 0600 (links are neither followed nor changed; they
/// are reported by the operations that meet them). One log line says so.
fn tighten_modes(root: &Path) -> Result<()> {
    // The store's own path may be a link the user made (a store on another
    // disk): that one is followed, nothing inside it is.
    let root = &fs::canonicalize(root).map_err(io_err("resolve", root))?;
    let mode = fs::symlink_metadata(root)
        .map_err(io_err("stat", root))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    fn walk(p: &Path, changed: &mut usize) -> Result<()> {
        let m = fs::symlink_metadata(p).map_err(io_err("stat", p))?;
        let want = if m.is_dir() {
            0o700
        } else if m.is_file() {
            0o600
        } else {
            return Ok(());
        };
        if m.permissions().mode() & 0o7777 != want {
            fs::set_permissions(p, fs::Permissions::from_mode(want))
                .map_err(io_err("restrict the mode of", p))?;
            *changed += 1;
        }
        if m.is_dir() {
            for e in fs::read_dir(p).map_err(io_err("read directory", p))? {
                walk(&e.map_err(io_err("read directory", p))?.path(), changed)?;
            }
        }
        Ok(())
    }
    let mut changed = 0;
    walk(root, &mut changed)?;
    tracing::warn!(
        event = "store.modes_tightened",
        store = %root.display(),
        entries = changed,
        "the store was readable by other users; its directories are now 0700 and its files 0600"
    );
    Ok(())
}

fn tmp_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// fsyncs a directory so a rename in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Reads exactly `buf.len()` bytes at `off`, or fewer at end of file.
/// Newest first: by creation time, then by id.
fn sort_newest_first<T>(v: &mut [T], key: impl Fn(&T) -> (&DateTime<Utc>, &SnapshotId)) {
    v.sort_by(|a, b| key(b).cmp(&key(a)));
}

/// Threads that hash, compress and copy chunks: one per core, at most 8.
/// Asked once per process (the answer reads cgroup files).
pub fn workers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
    })
}

pub fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
