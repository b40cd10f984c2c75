//! Chunks: content-addressed by BLAKE3, compressed when it pays, written
//! in batches that become durable together ([`ChunkBatch`]), read back
//! with their hash checked, and listed.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use super::disk::{create_private_dir, create_private_file, tmp_suffix};
use super::error::{Result, StoreError, io_err};
use super::manifest::{ChunkRef, MAX_CHUNK_LEN, is_hash};
use super::open::{Store, StoreLock};

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
}
