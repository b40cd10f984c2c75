//! Garbage collection: deleting the chunks no manifest names (only while
//! every manifest reads), and the bytes the store holds.

use std::collections::HashSet;
use std::fs::{self, File};

use super::error::{Result, StoreError, io_err};
use super::open::{Store, StoreLock};

impl Store {
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
