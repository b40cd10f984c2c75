//! What a restore is asked for, and what it reports.

use std::path::PathBuf;

use serde::Serialize;

use crate::id::SnapshotId;

/// What `restore` is asked for: the CLI's arguments, the wire request's
/// fields and the operation's input, in one type.
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The snapshot to put back.
    pub id: String,
    /// Write the snapshot to this path instead of replacing the database
    /// (on the wire: an absolute path).
    #[arg(long, value_name = "PATH")]
    #[serde(default)]
    pub to: Option<PathBuf>,
    /// With --to: overwrite an existing file.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
    /// Also open the restored file with DuckDB and compare its tables and
    /// row counts with the snapshot's (every chunk's and the whole file's
    /// hash is always checked).
    #[arg(long)]
    #[serde(default)]
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
