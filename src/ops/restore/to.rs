//! `restore --to`: a standalone copy, never the database by any spelling
//! (unless no file of the database exists: a fresh machine restoring to the
//! configured path), never inside the store, replacing only regular files;
//! reassembled in a private directory beside it and renamed into place
//! ([`crate::ops::outfile`]).

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::journal;
use super::request::{RestoreRequest, Restored};
use super::staged::{file_set, remove_if_exists, rename, stage_restore};
use crate::database::duckfile::{self};
use crate::database::oslock::{self, LockKind};
use crate::ops::context::{Ctx, OpError, check_space_at};
use crate::ops::outfile::{self, PrivateDir};
use crate::store::{Manifest, Store};

/// Writes a standalone copy of `m` at `to` ([`outfile::target`]); stale
/// side files there are refused without `force`.
pub(crate) fn restore_to(
    ctx: &Ctx,
    store: &Store,
    m: &Manifest,
    db: &Path,
    to: &Path,
    req: &RestoreRequest,
) -> Result<Restored, OpError> {
    let to = outfile::target(ctx, to, req.force, true)?;
    if let Ok(f) = File::open(&to)
        && let Some(h) = oslock::conflicting(&f, LockKind::Write).map_err(|source| OpError::Io {
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
    let private = PrivateDir::beside(&to)?;
    let staged = private.path().join("restore.duckdb");
    let result = stage_restore(store, m, &staged, req.check).and_then(|verified| {
        for (_, p) in file_set(&staged, m) {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|source| {
                OpError::Io {
                    op: "set the mode of",
                    path: p.clone(),
                    source,
                }
            })?;
        }
        put_in_place(&staged, &to, m)?;
        Ok(verified)
    });
    drop(private);
    let (verified, checked) = result?;
    tracing::info!(event = "restore.copied", id = %m.id, path = %to.display(), "snapshot written to a standalone file");
    Ok(Restored {
        id: m.id.clone(),
        path: to,
        pre_restore: None,
        verified,
        checked,
        wal: m.side_size() > 0,
        point: None,
        as_of: None,
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
