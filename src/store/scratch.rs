//! Scratch space for reading snapshots (`diff`, `export`): private
//! directories under `<store>/scratch/`, one per use, where snapshots are
//! reassembled for DuckDB to open read-only.
//!
//! Unlike `staging`, scratch needs no store lock — a long diff must never
//! hold up a pre-delete snapshot — so each directory carries its own: an OFD
//! write lock on `<dir>/lock`, held by the [`Scratch`] value. Dropping it
//! removes the directory; a directory whose lock nobody holds is a crash's
//! leftover, removed by [`Store::clean_scratch`] at the next open.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::disk::{create_private_dir, open_lock_file, remove_entries, tmp_suffix};
use super::error::{Result, StoreError, io_err};
use super::open::Store;
use crate::database::oslock::{self, LockKind};

/// A private scratch directory, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

impl Scratch {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Store {
    /// `<store>/scratch`, created private when missing; a link there is
    /// refused (the store's rule for every directory in it).
    pub fn scratch_root(&self) -> Result<PathBuf> {
        let root = self.root.join("scratch");
        match fs::symlink_metadata(&root) {
            Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Link { path: root }),
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::Format {
                    path: self.root.clone(),
                    reason: format!("{} is not a directory", root.display()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir(&root).map_err(io_err("create directory", &root))?
            }
            Err(e) => return Err(io_err("stat", &root)(e)),
        }
        Ok(root)
    }

    /// A fresh scratch directory named after `what` (`diff`, `export`).
    pub fn scratch(&self, what: &str) -> Result<Scratch> {
        let root = self.scratch_root()?;
        // Another process's clean-up can remove the directory between its
        // creation and its lock (it looks abandoned then): try again.
        let mut tries = 0;
        let (dir, lock) = loop {
            let dir = root.join(format!("{what}-{}", tmp_suffix()));
            create_private_dir(&dir).map_err(io_err("create directory", &dir))?;
            match open_lock_file(&dir.join("lock")) {
                Ok(f) => break (dir, f),
                Err(e) if tries < 3 && e.kind() == io::ErrorKind::NotFound => tries += 1,
                Err(e) => return Err(io_err("open", &dir.join("lock"))(e)),
            }
        };
        let lp = dir.join("lock");
        let held = oslock::try_lock(&lock, LockKind::Write).map_err(io_err("lock", &lp))?;
        if !held {
            return Err(StoreError::Format {
                path: lp,
                reason: "a fresh scratch directory is locked by another process".into(),
            });
        }
        Ok(Scratch { dir, _lock: lock })
    }

    /// Removes scratch directories nobody holds (left by a crash); returns
    /// how many. Ones in use are left alone.
    pub fn clean_scratch(&self) -> Result<usize> {
        let root = self.root.join("scratch");
        // Only a real directory: never through a link planted there.
        if !fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
            return Ok(0);
        }
        // A directory whose lock someone holds is in use: kept.
        let in_use = |p: &Path, is_dir: bool| {
            is_dir
                && open_lock_file(&p.join("lock"))
                    .and_then(|f| oslock::try_lock(&f, LockKind::Write))
                    .is_ok_and(|free| !free)
        };
        let n = remove_entries(&root, "remove scratch leftover", in_use)?;
        if n > 0 {
            tracing::info!(
                event = "store.scratch_cleaned",
                entries = n,
                "removed scratch leftovers"
            );
        }
        Ok(n)
    }
}
