//! The steps every restore shares: reassembling the snapshot next to its
//! destination with every hash checked (and DuckDB's check when asked),
//! the file set a snapshot puts back, renames that report their paths, the
//! owner and mode a restored file keeps, the lock that keeps the app out,
//! and the pre-restore safety snapshot.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;

use super::journal;
use crate::capture::{self, CaptureError};
use crate::database::check;
use crate::database::duckfile::{self, Header};
use crate::database::oslock::{self, LockKind};
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError};
use crate::ops::snapshot::{SnapshotRequest, commit_capture};
use crate::store::{CheckStatus, Manifest, Store, StoreLock};

pub(crate) fn compare_tables(
    expected: &Manifest,
    got: &crate::store::CheckInfo,
) -> Result<(), String> {
    if expected.check.status != CheckStatus::Verified || got.status != CheckStatus::Verified {
        return Ok(());
    }
    if expected.check.tables != got.tables {
        return Err(format!(
            "tables and row counts differ from the snapshot's: expected {:?}, found {:?}",
            expected.check.tables, got.tables
        ));
    }
    Ok(())
}

/// Reassembles `m` as `dest` (+ `dest.wal`) and fsyncs it. Reassembly checks
/// every chunk's hash and the whole file's, so the bytes are exactly those
/// DuckDB checked when the snapshot was taken; with `check`, DuckDB opens the
/// file again and its tables and row counts are compared with the manifest.
/// Returns (verified, checked), as in [`Restored`].
pub(super) fn stage_restore(
    store: &Store,
    m: &Manifest,
    dest: &Path,
    check: bool,
) -> Result<(bool, bool), OpError> {
    let dir = journal::dir_of(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    store.reassemble(m, dir, &name)?;
    for (_, p) in file_set(dest, m) {
        {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|source| OpError::Io {
                    op: "fsync",
                    path: p.clone(),
                    source,
                })?;
        }
    }
    let header = Header::read_path(dest).map_err(CaptureError::from)?;
    if !check {
        return Ok((m.check.status == CheckStatus::Verified, false));
    }
    let got = check::check_copy(dest, &header, false).map_err(|e| OpError::RestoreFailed {
        reason: format!("the reassembled snapshot does not open: {e}"),
    })?;
    compare_tables(m, &got).map_err(|reason| OpError::RestoreFailed { reason })?;
    Ok((got.status == CheckStatus::Verified, true))
}

/// The file set of a database: the file and the side files a snapshot holds
/// when present, as (role, path).
pub(super) fn file_set(db: &Path, m: &Manifest) -> Vec<(String, PathBuf)> {
    m.files
        .iter()
        .map(|f| {
            let at = duckfile::role_path(db, &f.role).expect("validated role");
            (f.role.clone(), at)
        })
        .collect()
}

pub(super) fn remove_if_exists(p: &Path) -> Result<(), OpError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OpError::Io {
            op: "remove",
            path: p.to_path_buf(),
            source,
        }),
    }
}

pub(super) fn rename(from: &Path, to: &Path) -> Result<(), OpError> {
    fs::rename(from, to).map_err(|source| OpError::Io {
        op: "rename into",
        path: to.to_path_buf(),
        source,
    })
}

/// Mode and owner a restored file gets: those of the file it replaces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ownership {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl Ownership {
    pub(super) fn of(md: &fs::Metadata) -> Ownership {
        Ownership {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        }
    }

    fn apply(&self, p: &Path) -> Result<(), OpError> {
        let io = |op: &'static str| {
            move |source| OpError::Io {
                op,
                path: p.to_path_buf(),
                source,
            }
        };
        let md = fs::metadata(p).map_err(io("stat"))?;
        if md.uid() != self.uid || md.gid() != self.gid {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid))
                .map_err(io("give the database's owner"))?;
        }
        fs::set_permissions(p, fs::Permissions::from_mode(self.mode)).map_err(io("set the mode of"))
    }
}

/// Gives each staged file the mode and owner of the file it replaces (a
/// side file that did not exist: the database's).
pub(super) fn carry_ownership(
    staged: &Path,
    db: &Path,
    m: &Manifest,
    db_own: Ownership,
) -> Result<(), OpError> {
    for (role, p) in file_set(staged, m) {
        let own = duckfile::role_path(db, &role)
            .and_then(|live| fs::metadata(live).ok())
            .map(|md| Ownership::of(&md))
            .unwrap_or(db_own);
        own.apply(&p)?;
    }
    Ok(())
}

/// Refuses while anyone holds `db`, then holds an OFD write lock on it
/// through the returned descriptor (write access is needed for an exclusive
/// OFD lock; nothing is ever written through it: the file is replaced by
/// rename). `None` when there is no database.
pub(crate) fn lock_out_the_app(db: &Path) -> Result<Option<File>, OpError> {
    let io = |op: &'static str| {
        move |source| OpError::Io {
            op,
            path: db.to_path_buf(),
            source,
        }
    };
    let f = match fs::OpenOptions::new().read(true).write(true).open(db) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    if let Some(h) = oslock::conflicting(&f, LockKind::Write).map_err(io("query locks on"))? {
        return Err(OpError::InUse {
            path: db.to_path_buf(),
            pid: h.pid,
        });
    }
    if !oslock::try_lock(&f, LockKind::Write).map_err(io("lock"))? {
        return Err(OpError::InUse {
            path: db.to_path_buf(),
            pid: None,
        });
    }
    Header::read_at(&f, db).map_err(CaptureError::from)?;
    Ok(Some(f))
}

/// The pinned safety snapshot of the whole current state (database, `.wal`,
/// `.wal.checkpoint`), taken under the caller's exclusive lock, with
/// `reason` (`pre-restore`, `pre-rescue`) and a label naming `m`.
///
/// A state the store already holds (the same files, byte for byte) is not
/// stored again: that snapshot is pinned instead (until the same time, or
/// longer if it already was) and named as the safety snapshot. A state
/// DuckDB refuses to open is stored byte for byte all the same
/// ([`capture::capture_as_found`]): replacing a broken database must not
/// lose it either (`refused`: the caller already saw DuckDB refuse it,
/// and why).
#[allow(clippy::too_many_arguments)]
pub(super) fn safety_snapshot(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
    db: &Path,
    f: &File,
    reason: &str,
    refused: Option<&str>,
) -> Result<SnapshotId, OpError> {
    let started = Instant::now();
    let created_at = Utc::now();
    let until = created_at
        + chrono::Duration::from_std(ctx.config.retention.pre_restore_pin.0)
            .unwrap_or(chrono::Duration::days(30));
    let as_found =
        |why: &str| capture::capture_as_is(store, lock, db, f, capture::refused_check(why));
    let cap = match refused {
        // The caller saw DuckDB refuse it (a rescue): not asked again.
        Some(why) => {
            tracing::info!(event = "restore.kept_as_found", database = %db.display(), error = %why, "storing the files DuckDB refuses byte for byte");
            as_found(why)?
        }
        None => {
            let staging = store.staging_dir(lock, reason)?;
            let cap = capture::capture_locked(store, lock, db, f, &staging);
            let _ = fs::remove_dir_all(&staging);
            match cap {
                Err(CaptureError::Check { source, .. }) => {
                    tracing::warn!(event = "restore.kept_as_found", database = %db.display(), error = %source, "DuckDB refuses to open the database being replaced; storing its files byte for byte");
                    as_found(&source.message)?
                }
                other => other?,
            }
        }
    };
    let same = |x: &Manifest| file_identity(&x.files) == file_identity(&cap.files);
    if let Some(mut existing) = store.manifests()?.0.into_iter().find(same) {
        if !existing.pinned || existing.pinned_until.is_some_and(|t| t < until) {
            existing.pinned = true;
            existing.pinned_until = Some(until);
            store.commit_manifest(lock, &existing)?;
        }
        tracing::info!(event = "restore.pre_restore_reused", id = %existing.id, "the current database is already stored as this snapshot; pinned it instead of storing it again");
        return Ok(existing.id);
    }
    let verb = if reason == "pre-rescue" {
        "rescuing into"
    } else {
        "restoring"
    };
    let req = SnapshotRequest {
        reason: reason.into(),
        label: Some(format!("before {verb} {}", m.id)),
        pin: true,
        skip_unchanged: false,
        never_lock: false,
    };
    let mut saved = commit_capture(store, lock, db, cap, &req, created_at, started)?;
    saved.pinned_until = Some(until);
    store.commit_manifest(lock, &saved)?;
    Ok(saved.id)
}

/// What makes two snapshots the same state: each file's role and hash.
pub(super) fn file_identity(
    files: &[crate::store::FileEntry],
) -> Vec<(&str, crate::store::FileHash, &str)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|f| (f.role.as_str(), f.hash_of, f.hash.as_str()))
        .collect();
    v.sort();
    v
}
