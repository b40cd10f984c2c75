//! Reassembly: a snapshot's files written back from their chunks, read
//! ahead on every core and written in order, every hash checked.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use super::chunks::ChunkBuf;
use super::disk::{create_private_file, workers};
use super::error::{Result, StoreError, io_err};
use super::manifest::{FileEntry, FileHash, Manifest, chunk_list_hash};
use super::open::Store;

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

impl Store {
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
