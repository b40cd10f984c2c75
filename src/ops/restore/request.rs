//! What a restore is asked for, and what it reports.

use std::path::PathBuf;

use serde::Serialize;

use crate::id::SnapshotId;

/// What `restore` is asked for: the CLI's arguments, the wire request's
/// fields and the operation's input, in one type.
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The snapshot: its id (YYYYMMDDTHHMMSSZ-xxxx), a unique prefix of it,
    /// `latest`, or `latest:REASON` (e.g. latest:pre-delete).
    #[arg(required_unless_present = "as_of", conflicts_with = "as_of")]
    #[serde(default)]
    pub id: Option<String>,
    /// Instead of an id: the newest snapshot taken at or before this time
    /// (2h, "90m ago", 2026-11-29T14:00:00Z, "2026-11-29 14:00 local", …).
    #[arg(long, value_name = "TIME")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
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

impl RestoreRequest {
    /// The selector as one string (`as-of:TIME` for `--as-of`).
    pub fn given(&self) -> Result<String, crate::ops::OpError> {
        crate::ops::select::selector_of(self.id.as_deref(), self.as_of.as_deref())
    }
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
    /// The commit restore point restored (`GENERATION@OFFSET`), when one
    /// was: `id` is then its base snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// `--as-of`: which snapshot that time chose and how long before it
    /// it was taken (set by the CLI, which resolves the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}
