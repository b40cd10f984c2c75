//! What a restore is asked for, and what it reports.

use std::path::PathBuf;

use serde::Serialize;

use crate::id::SnapshotId;

/// What `restore` was asked for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub id: String,
    /// Write a standalone copy here instead of replacing the database.
    pub to: Option<PathBuf>,
    /// With `to`: overwrite an existing file.
    pub force: bool,
    /// Also open the restored file with DuckDB and compare its tables and
    /// row counts with the snapshot's.
    pub check: bool,
}

/// Result of `restore`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Restored {
    pub id: SnapshotId,
    pub path: PathBuf,
    /// The pinned safety snapshot of the database as it was (in-place restore
    /// of an existing database only).
    pub pre_restore: Option<SnapshotId>,
    /// Whether the restored file is known good: its whole-file hash (always
    /// checked) matches a snapshot DuckDB verified when it was taken, and, when
    /// `checked`, DuckDB opened it now and found the same tables and row
    /// counts. False for a storage version the bundled DuckDB cannot read.
    pub verified: bool,
    /// Whether DuckDB opened the restored file during this restore (`--check`).
    #[serde(default)]
    pub checked: bool,
    pub wal: bool,
}
