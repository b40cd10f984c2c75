//! `restore`: a snapshot reassembled and checked, then written as a
//! standalone copy (`--to`) or swapped in over the database ([`swap`]), with
//! the crash-safe journal and its rollback in [`journal`].

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use crate::capture::{self, CaptureError};
use crate::database::check;
use crate::database::dbpath;
use crate::database::duckfile::{self, Header};
use crate::database::oslock::{self, LockKind};
use crate::id::SnapshotId;
use crate::store::{CheckStatus, Manifest, Store, StoreError, StoreLock};
pub mod journal;
mod swap;

use super::{Ctx, OpError, check_space_at, database_path, store_for};
use crate::ops::snapshot::{SnapshotRequest, commit_capture};
use swap::restore_in_place;

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
fn stage_restore(
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
                .map_err(|source| StoreError::Io {
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

/// Restores snapshot `id` over the configured database (or to `--to PATH`).
pub fn restore(ctx: &Ctx, req: &RestoreRequest) -> Result<Restored, OpError> {
    let id = SnapshotId::parse(&req.id)?;
    let store = store_for(ctx, &id)?;
    let lock = store.lock()?;
    let m = store.load_manifest(&id)?;
    let db = database_path(ctx)?;
    match &req.to {
        Some(to) => restore_to(&store, &m, &db, to, req),
        // In place, DuckDB always checks the result at the database's own path.
        None => restore_in_place(ctx, &store, &lock, &m, &db),
    }
}

/// The file set of a database: the file and the side files a snapshot holds
/// when present, as (role, path).
fn file_set(db: &Path, m: &Manifest) -> Vec<(String, PathBuf)> {
    m.files
        .iter()
        .map(|f| {
            let at = duckfile::role_path(db, &f.role).expect("validated role");
            (f.role.clone(), at)
        })
        .collect()
}

fn remove_if_exists(p: &Path) -> Result<(), OpError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            op: "remove",
            path: p.to_path_buf(),
            source,
        }
        .into()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), OpError> {
    fs::rename(from, to).map_err(|source| {
        StoreError::Io {
            op: "rename into",
            path: to.to_path_buf(),
            source,
        }
        .into()
    })
}

/// Writes a standalone copy of `m` at `to` (which must not be the database
/// by any spelling); stale side files there are refused without `force`.
fn restore_to(
    store: &Store,
    m: &Manifest,
    db: &Path,
    to: &Path,
    req: &RestoreRequest,
) -> Result<Restored, OpError> {
    let bad = |reason: String| OpError::InvalidArgument {
        what: "--to",
        reason,
    };
    let to = dbpath::real_path(to).map_err(|e| bad(format!("{}: {e}", to.display())))?;
    if let Some(p) = dbpath::clash(db, &to) {
        return Err(bad(format!(
            "{} is the configured database {} or one of its files ({}), whatever --force says; \
             restore without --to to replace the database (with a safety snapshot first)",
            to.display(),
            db.display(),
            p.display()
        )));
    }
    if to.is_dir() {
        return Err(bad(format!("{} is a directory", to.display())));
    }
    for p in duckfile::all_paths(&to) {
        if fs::symlink_metadata(&p).is_ok() && !req.force {
            return Err(OpError::Exists { path: p });
        }
    }
    if let Ok(f) = File::open(&to)
        && let Some(h) =
            oslock::conflicting(&f, LockKind::Write).map_err(|source| StoreError::Io {
                op: "query locks on",
                path: to.clone(),
                source,
            })?
    {
        return Err(OpError::InUse {
            path: to,
            pid: h.pid,
        });
    }
    check_space_at(
        journal::dir_of(&to),
        m.total_size(),
        "the snapshot's database and side files",
    )?;
    // The copy is as private as the database it is a copy of.
    let mode = fs::metadata(db)
        .map(|md| md.mode() & 0o777)
        .unwrap_or(0o600);
    let (staged, _guard) = journal::claim_staging(&to)?;
    let result = stage_restore(store, m, &staged, req.check).and_then(|verified| {
        for (_, p) in file_set(&staged, m) {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|source| {
                StoreError::Io {
                    op: "set the mode of",
                    path: p.clone(),
                    source,
                }
            })?;
        }
        put_in_place(&staged, &to, m)?;
        Ok(verified)
    });
    for p in duckfile::all_paths(&staged) {
        let _ = fs::remove_file(p);
    }
    let (verified, checked) = result?;
    tracing::info!(event = "restore.copied", id = %m.id, path = %to.display(), "snapshot written to a standalone file");
    Ok(Restored {
        id: m.id.clone(),
        path: to,
        pre_restore: None,
        verified,
        checked,
        wal: m.side_size() > 0,
    })
}

/// Moves a staged restore to `to`: first the file there and every side file
/// (stale ones belong to another database), then the snapshot's side files,
/// the database last — so a crash leaves either no database at `to` or the
/// complete snapshot, never a database beside another one's WAL.
fn put_in_place(staged: &Path, to: &Path, m: &Manifest) -> Result<(), OpError> {
    for p in duckfile::all_paths(to) {
        remove_if_exists(&p)?;
    }
    for (role, from) in file_set(staged, m) {
        if role != duckfile::DB_ROLE {
            rename(&from, &duckfile::role_path(to, &role).expect("known role"))?;
        }
    }
    rename(staged, to)?;
    crate::store::fsync_dir(journal::dir_of(to))?;
    Ok(())
}

/// Mode and owner a restored file gets: those of the file it replaces.
#[derive(Debug, Clone, Copy)]
struct Ownership {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Ownership {
    fn of(md: &fs::Metadata) -> Ownership {
        Ownership {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        }
    }

    fn apply(&self, p: &Path) -> Result<(), OpError> {
        let io = |op: &'static str| {
            move |source| {
                OpError::Store(StoreError::Io {
                    op,
                    path: p.to_path_buf(),
                    source,
                })
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
fn carry_ownership(
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
fn lock_out_the_app(db: &Path) -> Result<Option<File>, OpError> {
    let io = |op: &'static str| {
        move |source| {
            OpError::Store(StoreError::Io {
                op,
                path: db.to_path_buf(),
                source,
            })
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
/// `.wal.checkpoint`), taken under the caller's exclusive lock.
///
/// A state the store already holds (the same files, byte for byte) is not
/// stored again: that snapshot is pinned instead (until the same time, or
/// longer if it already was) and named as the safety snapshot.
fn safety_snapshot(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
    db: &Path,
    f: &File,
) -> Result<SnapshotId, OpError> {
    let started = Instant::now();
    let created_at = Utc::now();
    let until = created_at
        + chrono::Duration::from_std(ctx.config.retention.pre_restore_pin.0)
            .unwrap_or(chrono::Duration::days(30));
    let staging = store.staging_dir(lock, "pre-restore")?;
    let cap = capture::capture_locked(store, lock, db, f, &staging);
    let _ = fs::remove_dir_all(&staging);
    let cap = cap?;
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
    let req = SnapshotRequest {
        reason: "pre-restore".into(),
        label: Some(format!("before restoring {}", m.id)),
        pin: true,
        skip_unchanged: false,
    };
    let mut saved = commit_capture(store, lock, db, cap, &req, created_at, started)?;
    saved.pinned_until = Some(until);
    store.commit_manifest(lock, &saved)?;
    Ok(saved.id)
}

/// What makes two snapshots the same state: each file's role and hash.
fn file_identity(files: &[crate::store::FileEntry]) -> Vec<(&str, crate::store::FileHash, &str)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|f| (f.role.as_str(), f.hash_of, f.hash.as_str()))
        .collect();
    v.sort();
    v
}
