//! The in-place restore: the journal written first, the forward swap, and
//! on any failure the rollback ([`super::journal::roll_back`]) beside it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::request::Restored;
use super::staged::{
    Ownership, carry_ownership, compare_tables, lock_out_the_app, safety_snapshot, stage_restore,
};
use crate::capture::CaptureError;
use crate::database::check;
use crate::database::duckfile::{self, Header};
use crate::database::oslock::{self, LockKind};
use crate::ops::context::{Ctx, OpError, check_space_at};
use crate::ops::restore::journal;
use crate::store::{CheckStatus, Manifest, Store, StoreLock};

/// The journal of an in-place restore of `m` from `staged` over `db`.
fn journal_for(
    db: &Path,
    m: &Manifest,
    staged: &Path,
    old: Option<&File>,
) -> Result<journal::Journal, OpError> {
    let pid = std::process::id();
    let aside = |suffix: &str| {
        let live = duckfile::side_path(db, suffix);
        fs::symlink_metadata(&live)
            .is_ok()
            .then(|| journal::sibling(db, &format!("ducksnap-old-{pid}{suffix}")))
    };
    let new = |role: &str| -> Result<(Option<u64>, Option<PathBuf>), OpError> {
        if m.file(role).is_none() {
            return Ok((None, None));
        }
        let p = duckfile::role_path(staged, role).expect("known role");
        let ino = fs::metadata(&p)
            .map_err(|source| OpError::Io {
                op: "stat",
                path: p.clone(),
                source,
            })?
            .ino();
        Ok((Some(ino), Some(p)))
    };
    let (new_wal_ino, new_wal_staged) = new("wal")?;
    let (new_ckpt_ino, new_ckpt_staged) = new("wal_checkpoint")?;
    Ok(journal::Journal {
        state: journal::JournalState::Swapping,
        db: db.to_path_buf(),
        old_ino: old.and_then(|f| f.metadata().ok()).map(|md| md.ino()),
        old_link: old.map(|_| journal::sibling(db, &format!("ducksnap-old-{pid}"))),
        old_wal_aside: aside(".wal"),
        old_ckpt_aside: aside(".wal.checkpoint"),
        old_recovery_aside: aside(".wal.recovery"),
        new_ino: fs::metadata(staged)
            .map_err(|source| OpError::Io {
                op: "stat",
                path: staged.to_path_buf(),
                source,
            })?
            .ino(),
        new_db_staged: staged.to_path_buf(),
        new_wal_ino,
        new_wal_staged,
        new_ckpt_ino,
        new_ckpt_staged,
    })
}

/// The swap itself (see [`restore`]'s module docs), then DuckDB's check at
/// the final path. Returns whether DuckDB verified it.
fn swap(j: &journal::Journal, m: &Manifest, new_file: &File) -> Result<bool, OpError> {
    let db = &j.db;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| OpError::Io { op, path, source }
    };
    if let Some(link) = &j.old_link {
        let _ = fs::remove_file(link);
        fs::hard_link(db, link).map_err(io("keep a rollback link of", db))?;
    }
    for (orig, aside) in j.asides() {
        fs::rename(&orig, aside).map_err(io("move aside", &orig))?;
    }
    fs::rename(&j.new_db_staged, db).map_err(io("rename the restored database to", db))?;
    for (at, _, staged) in j.new_sides() {
        fs::rename(staged, &at).map_err(io("rename the restored side file to", &at))?;
    }
    crate::store::fsync_dir(journal::dir_of(db))?;
    // Let DuckDB open it read-only for the final check; writers stay out.
    oslock::try_lock(new_file, LockKind::Read).map_err(io("downgrade lock on", db))?;
    let header = Header::read_path(db).map_err(CaptureError::from)?;
    let got = check::check_copy(db, &header, false).map_err(|e| OpError::RestoreFailed {
        reason: format!(
            "the restored database does not open at {}: {e}",
            db.display()
        ),
    })?;
    compare_tables(m, &got).map_err(|reason| OpError::RestoreFailed { reason })?;
    Ok(got.status == CheckStatus::Verified)
}

pub(super) fn restore_in_place(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
    db: &Path,
) -> Result<Restored, OpError> {
    check_dir(db)?;
    // Keep the app out for the whole restore.
    let old = lock_out_the_app(db)?;
    replace_locked(ctx, store, lock, m, db, old, "pre-restore", None)
}

/// The directory the database lives in exists.
pub(crate) fn check_dir(db: &Path) -> Result<(), OpError> {
    let dir = journal::dir_of(db);
    if !dir.is_dir() {
        return Err(OpError::InvalidArgument {
            what: "database.path",
            reason: format!("directory {} does not exist", dir.display()),
        });
    }
    Ok(())
}

/// Replaces the database with `m` while the caller keeps the app out
/// through `old` (the database's open file with DuckDB's lock held, from
/// [`lock_out_the_app`]; `None`: there is no database), first keeping
/// what is there as a pinned safety snapshot with reason `safety`
/// (`refused`: DuckDB refuses to open what is there, and why: it is kept
/// byte for byte without asking DuckDB again).
#[allow(clippy::too_many_arguments)]
pub(crate) fn replace_locked(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
    db: &Path,
    old: Option<File>,
    safety: &str,
    refused: Option<&str>,
) -> Result<Restored, OpError> {
    let dir = journal::dir_of(db).to_path_buf();
    let db_own = ownership_of(db, old.as_ref())?;
    check_space_at(
        &dir,
        m.total_size() + ctx.config.store.min_free_space.0,
        "the snapshot's database and side files, plus store.min_free_space",
    )?;
    // Nothing is moved aside before this snapshot of all of it is committed.
    let pre_restore = match &old {
        Some(f) => Some(safety_snapshot(
            ctx, store, lock, m, db, f, safety, refused,
        )?),
        None => None,
    };

    let (staged, new_file) = journal::claim_staging(db)?;
    let unstage = || {
        for p in duckfile::all_paths(&staged) {
            let _ = fs::remove_file(p);
        }
    };
    // No DuckDB check of the staged file: the swap ends with one at the
    // final path, where the app will open it.
    if let Err(e) = stage_restore(store, m, &staged, false)
        .and_then(|_| carry_ownership(&staged, db, m, db_own))
    {
        unstage();
        return Err(e);
    }
    // Upgrade the guard's read lock: from here on no one opens the new file.
    if let Err(e) = lock_staged(&new_file, &staged) {
        unstage();
        return Err(e);
    }
    let mut journal = journal_for(db, m, &staged, old.as_ref())?;
    journal::write_journal(&journal)?;
    let verified = match swap(&journal, m, &new_file) {
        Ok(v) => v,
        Err(e) => return Err(roll_back_after(&journal, m, e)),
    };
    journal.state = journal::JournalState::Committed;
    journal::write_journal(&journal)?;
    journal::clean_up(&journal)?;
    drop(new_file);
    drop(old);
    tracing::info!(event = "restore.completed", id = %m.id, database = %db.display(), pre_restore = pre_restore.as_ref().map(|i| i.as_str()), "database restored");
    Ok(Restored {
        id: m.id.clone(),
        path: db.to_path_buf(),
        pre_restore,
        verified,
        checked: true,
        wal: m.side_size() > 0,
        point: None,
        as_of: None,
    })
}

/// The mode and owner the restored database gets: those of the database it
/// replaces, or 0600 and ours when there is none.
fn ownership_of(db: &Path, old: Option<&File>) -> Result<Ownership, OpError> {
    Ok(match old {
        Some(f) => Ownership::of(&f.metadata().map_err(|source| OpError::Io {
            op: "stat",
            path: db.to_path_buf(),
            source,
        })?),
        None => Ownership {
            mode: 0o600,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        },
    })
}

/// Takes the write lock on the staged file (whose read lock the staging
/// guard holds): nobody may open the new database before the swap is done.
fn lock_staged(new_file: &File, staged: &Path) -> Result<(), OpError> {
    let locked = oslock::try_lock(new_file, LockKind::Write).map_err(|source| OpError::Io {
        op: "lock",
        path: staged.to_path_buf(),
        source,
    })?;
    if locked {
        Ok(())
    } else {
        Err(OpError::InUse {
            path: staged.to_path_buf(),
            pid: None,
        })
    }
}

/// Rolls a failed swap back and says what happened.
fn roll_back_after(journal: &journal::Journal, m: &Manifest, e: OpError) -> OpError {
    tracing::error!(event = "restore.failed", id = %m.id, error = %e, "restore failed; rolling back");
    let db = &journal.db;
    match journal::roll_back(journal) {
        Ok(()) => {
            let _ = fs::remove_file(journal::journal_path(db));
            OpError::RolledBack { cause: Box::new(e) }
        }
        Err(rollback) => OpError::RollbackFailed {
            cause: Box::new(e),
            rollback,
            journal: journal::journal_path(db),
        },
    }
}
