//! Opening a store (checking its format, cleaning staging, tightening
//! modes), its lock, and its staging area.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::database::oslock::{self, LockKind};

use super::disk::{create_private_dir, remove_entries, tighten_modes, tmp_suffix};
use super::error::{Result, StoreError, io_err};

/// The store format this build reads and writes (the `STORE` marker).
pub const STORE_FORMAT: u32 = 1;
const MARKER: &str = "ducksnap-store 1\n";

/// Held while mutating the store; released on drop or process death.
#[derive(Debug)]
pub struct StoreLock {
    pub(super) _file: File,
}

/// A handle on an opened store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) root: PathBuf,
    pub(super) level: i32,
}

/// The file that marks a directory as a store (its format inside).
const MARKER_FILE: &str = "STORE";

impl Store {
    /// Whether `dir` holds a store (its marker), without opening it: how
    /// read-only operations tell "no snapshot taken yet" from a store.
    pub fn exists_at(dir: &Path) -> bool {
        dir.join(MARKER_FILE).exists()
    }

    /// Opens the store at `dir`, creating it when `create` is set and it does
    /// not exist. Checks the format marker; removes staging leftovers when no
    /// other process is mutating the store.
    pub fn open(dir: &Path, create: bool, level: i32) -> Result<Store> {
        let marker = dir.join(MARKER_FILE);
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
        if let Err(e) = store.clean_scratch() {
            tracing::warn!(event = "store.scratch_clean_failed", error = %e, "could not remove scratch leftovers");
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
        super::disk::open_lock_file(&p).map_err(io_err("open", &p))
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
        let n = remove_entries(&self.staging(), "remove staging leftover", |_, _| false)?;
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
}
