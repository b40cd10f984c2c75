//! Which database a store belongs to: `<store>/DATABASE`, a small JSON
//! record written when the store is first used for a database — a random
//! store id, the database's real path, and its device and inode. Two
//! configs naming one store (a copied `ducksnap.toml`: `init` writes
//! absolute paths) would otherwise mix two projects' snapshots, and an
//! in-place restore would put one project's data over the other's.
//!
//! This module only reads and writes the record; the decision (refuse,
//! follow a moved file, adopt) is [`crate::ops::owner`]'s.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError, io_err};
use super::open::Store;

const FILE: &str = "DATABASE";

/// The record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Random, 128 bits in hex: names this store (and not another with the
    /// same owner) in messages.
    pub store_id: String,
    /// The database's real path (links resolved).
    pub database: PathBuf,
    pub device: u64,
    pub inode: u64,
}

impl Owner {
    /// A new record for the database at `real` (which exists), with a fresh
    /// store id (or `store_id`, kept when the owner changes).
    pub fn of(real: &Path, store_id: Option<String>) -> std::io::Result<Owner> {
        let m = std::fs::metadata(real)?;
        let store_id = match store_id {
            Some(id) => id,
            None => {
                let mut b = [0u8; 16];
                std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
                b.iter().map(|x| format!("{x:02x}")).collect()
            }
        };
        Ok(Owner {
            store_id,
            database: real.to_path_buf(),
            device: m.dev(),
            inode: m.ino(),
        })
    }

    /// Whether the file at `real` is the recorded one: the same path, or
    /// the same device and inode (a project moved with `mv`).
    pub fn same_path(&self, real: &Path) -> bool {
        self.database == real
    }

    pub fn same_file(&self, real: &Path) -> bool {
        std::fs::metadata(real).is_ok_and(|m| m.dev() == self.device && m.ino() == self.inode)
    }
}

impl Store {
    /// The store's owner record (`None`: a store made before there was one,
    /// or never used for a database yet). A record that is not a regular
    /// file or does not parse is damage.
    pub fn owner(&self) -> Result<Option<Owner>> {
        let p = self.root.join(FILE);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("stat", &p)(e)),
            Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Link { path: p }),
            Ok(m) if !m.is_file() => {
                return Err(StoreError::Format {
                    path: self.root.clone(),
                    reason: format!("{} is not a file", p.display()),
                });
            }
            Ok(_) => {}
        }
        let bytes = std::fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Format {
                path: self.root.clone(),
                reason: format!(
                    "{} is not a valid owner record ({e}); if this store is this project's, `ducksnap adopt` writes a new one",
                    p.display()
                ),
            })
    }

    /// Writes the owner record (atomically).
    pub fn set_owner(&self, owner: &Owner) -> Result<()> {
        let body = serde_json::to_vec_pretty(owner).expect("owner serializes");
        self.write_atomic(&self.root.join(FILE), &body)
    }
}
