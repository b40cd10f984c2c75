//! Putting a snapshot back in place of the live database, crash-safely.
//!
//! The swap is a short sequence of renames in the database's directory,
//! ordered so that at every instant the database path holds either the old
//! database (with its own WAL, or with none) or the restored one (with its
//! own WAL, or with none), never one database with the other's WAL:
//!
//! 1. hard-link the old database to `.<name>.ducksnap-old-<n>` (rollback copy);
//! 2. move the old `.wal`, `.wal.checkpoint` and `.wal.recovery` aside;
//! 3. rename the staged database over the database path;
//! 4. rename the staged `.wal` and `.wal.checkpoint` (those the snapshot
//!    holds) into place.
//!
//! A journal (`.<name>.ducksnap-restore.json`, written and fsynced before
//! step 1) records the paths and inodes. If the process dies before the
//! restore is confirmed, [`recover`] (run at the start of every local
//! operation) rolls back to the old database. Rolling back never touches a
//! database file that neither of the two inodes explains.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::database::duckfile::{wal_checkpoint_path, wal_path};
use crate::database::oslock::{self, LockKind};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("restore recovery: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "restore journal {path} is unreadable ({reason}); inspect the files beside it and remove it by hand"
    )]
    BadJournal { path: PathBuf, reason: String },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecoverError + 'a {
    move |source| RecoverError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// Files may be partly swapped; roll back.
    Swapping,
    /// The restore was verified at the final path; only clean-up remains.
    Committed,
}

/// What an in-progress restore has done, for recovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub state: JournalState,
    pub db: PathBuf,
    /// Inode of the old database (if there was one) and its hard link.
    pub old_ino: Option<u64>,
    pub old_link: Option<PathBuf>,
    /// Where the old WAL, WAL checkpoint and recovery files were moved.
    pub old_wal_aside: Option<PathBuf>,
    pub old_ckpt_aside: Option<PathBuf>,
    #[serde(default)]
    pub old_recovery_aside: Option<PathBuf>,
    /// Inodes and staging paths of the restored files.
    pub new_ino: u64,
    pub new_db_staged: PathBuf,
    pub new_wal_ino: Option<u64>,
    pub new_wal_staged: Option<PathBuf>,
    #[serde(default)]
    pub new_ckpt_ino: Option<u64>,
    #[serde(default)]
    pub new_ckpt_staged: Option<PathBuf>,
}

impl Journal {
    /// (original path, where it was moved) of each old side file moved aside.
    pub fn asides(&self) -> Vec<(PathBuf, &PathBuf)> {
        let db = &self.db;
        [
            (wal_path(db), &self.old_wal_aside),
            (wal_checkpoint_path(db), &self.old_ckpt_aside),
            (recovery_path(db), &self.old_recovery_aside),
        ]
        .into_iter()
        .filter_map(|(orig, aside)| aside.as_ref().map(|a| (orig, a)))
        .collect()
    }

    /// (final path, inode, staged path) of each restored side file.
    pub fn new_sides(&self) -> Vec<(PathBuf, u64, &PathBuf)> {
        let db = &self.db;
        [
            (wal_path(db), self.new_wal_ino, &self.new_wal_staged),
            (
                wal_checkpoint_path(db),
                self.new_ckpt_ino,
                &self.new_ckpt_staged,
            ),
        ]
        .into_iter()
        .filter_map(|(at, ino, staged)| Some((at, ino?, staged.as_ref()?)))
        .collect()
    }
}

fn recovery_path(db: &Path) -> PathBuf {
    crate::database::duckfile::side_path(db, ".wal.recovery")
}

/// `<dir>/.<name>.ducksnap-restore.json`
pub fn journal_path(db: &Path) -> PathBuf {
    sibling(db, "ducksnap-restore.json")
}

/// `<dir>/.<name>.<suffix>`
pub fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}.{suffix}"))
}

pub fn dir_of(db: &Path) -> &Path {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn ino(p: &Path) -> Option<u64> {
    fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// Writes the journal durably.
pub fn write_journal(j: &Journal) -> Result<(), RecoverError> {
    let path = journal_path(&j.db);
    let tmp = sibling(&j.db, "ducksnap-restore.json.tmp");
    {
        // A leftover of a crash is ours to remove; the new file is created
        // where nothing is (O_EXCL) and never through a link (O_NOFOLLOW).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &tmp)(e));
            }
            _ => {}
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        serde_json::to_writer_pretty(&f, j)
            .map_err(|e| io_err("write", &tmp)(io::Error::from(e)))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err("rename into", &path))?;
    fsync(dir_of(&j.db))
}

fn fsync(dir: &Path) -> Result<(), RecoverError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn remove_if_exists(p: &Path) -> Result<(), RecoverError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", p)(e)),
    }
}

/// Undoes a partly done swap: puts the old database and its WAL back.
/// Idempotent: safe to run again after a crash in the middle of it.
pub fn roll_back(j: &Journal) -> Result<(), RecoverError> {
    let db = &j.db;
    // The restored side files go first, so the old database never sees them.
    for (at, new_ino, _) in j.new_sides() {
        if ino(&at) == Some(new_ino) {
            remove_if_exists(&at)?;
        }
    }
    match (&j.old_link, ino(db)) {
        (Some(link), cur) if (cur == Some(j.new_ino) || cur.is_none()) && link.exists() => {
            fs::rename(link, db).map_err(io_err("put back the old database at", db))?;
        }
        (None, cur) if cur == Some(j.new_ino) => {
            // There was no database before the restore.
            remove_if_exists(db)?;
        }
        _ => {}
    }
    let db_is_old = j.old_ino.is_some() && ino(db) == j.old_ino;
    for (orig, aside) in j.asides() {
        if aside.exists() && db_is_old && !orig.exists() {
            fs::rename(aside, &orig).map_err(io_err("put back", &orig))?;
        }
    }
    fsync(dir_of(db))?;
    remove_if_exists(&j.new_db_staged)?;
    for (_, _, staged) in j.new_sides() {
        remove_if_exists(staged)?;
    }
    if let Some(link) = &j.old_link
        && db_is_old
    {
        remove_if_exists(link)?;
    }
    Ok(())
}

/// Removes the rollback copies after a restore was confirmed.
pub fn clean_up(j: &Journal) -> Result<(), RecoverError> {
    let asides = j.asides().into_iter().map(|(_, a)| a);
    let staged = j.new_sides().into_iter().map(|(_, _, s)| s);
    for p in j
        .old_link
        .iter()
        .chain(asides)
        .chain(std::iter::once(&j.new_db_staged))
        .chain(staged)
    {
        remove_if_exists(p)?;
    }
    remove_if_exists(&journal_path(&j.db))?;
    fsync(dir_of(&j.db))
}

const STAGED: &str = "ducksnap-staged-";

/// Creates the staging file for a restore to `target` in its directory and
/// holds an OFD read lock on it for as long as the returned `File` lives:
/// the lock tells [`remove_orphans`] the owner is alive, and still lets the
/// bundled DuckDB open the file read-only for its check.
pub fn claim_staging(target: &Path) -> Result<(PathBuf, File), RecoverError> {
    remove_orphans(target)?;
    let staged = sibling(target, &format!("{STAGED}{}", std::process::id()));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&staged)
        .map_err(io_err("create", &staged))?;
    oslock::try_lock(&f, LockKind::Read).map_err(io_err("lock", &staged))?;
    Ok((staged, f))
}

/// Whether a live process holds a lock on `p` (the owner of a restore).
fn owner_alive(p: &Path) -> bool {
    match fs::OpenOptions::new().read(true).write(true).open(p) {
        Ok(f) => !oslock::try_lock(&f, LockKind::Write).unwrap_or(false),
        Err(_) => false,
    }
}

/// Removes staging files of restores to `target` whose process died before
/// writing a journal. Files a live restore holds are left alone.
pub fn remove_orphans(target: &Path) -> Result<(), RecoverError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.{STAGED}");
    let dir = dir_of(target);
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut live = false;
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        if !fname.starts_with(&prefix)
            || crate::database::duckfile::SIDE_FILES
                .iter()
                .any(|s| fname.ends_with(s.suffix))
        {
            continue;
        }
        let p = e.path();
        if owner_alive(&p) {
            live = true;
            continue;
        }
        for f in crate::database::duckfile::all_paths(&p) {
            remove_if_exists(&f)?;
        }
        tracing::info!(event = "restore.orphan_removed", path = %p.display(), "removed the staging file of an interrupted restore");
    }
    if !live {
        remove_if_exists(&sibling(target, "ducksnap-restore.json.tmp"))?;
    }
    Ok(())
}

/// Finishes or undoes a restore that a crash interrupted. Returns a message
/// when there was something to do. A restore still running in another
/// process (it holds a lock on the restored file) is left alone.
pub fn recover(db: &Path) -> Result<Option<String>, RecoverError> {
    let path = journal_path(db);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            remove_orphans(db)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let j: Journal = serde_json::from_slice(&text).map_err(|e| RecoverError::BadJournal {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if j.db != db {
        return Err(RecoverError::BadJournal {
            path,
            reason: format!("it names {}", j.db.display()),
        });
    }
    let new_at = if ino(db) == Some(j.new_ino) {
        db.to_path_buf()
    } else {
        j.new_db_staged.clone()
    };
    if owner_alive(&new_at) {
        return Ok(None);
    }
    let msg = match j.state {
        JournalState::Swapping => {
            roll_back(&j)?;
            let left: Vec<String> = j
                .old_link
                .iter()
                .chain(j.asides().into_iter().map(|(_, a)| a))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            remove_if_exists(&path)?;
            fsync(dir_of(db))?;
            if left.is_empty() {
                format!(
                    "an interrupted restore of {} was rolled back: the previous database is in place; run the restore again",
                    db.display()
                )
            } else {
                format!(
                    "an interrupted restore of {} was rolled back, but the database was changed meanwhile; \
                     the previous files were kept beside it: {}",
                    db.display(),
                    left.join(", ")
                )
            }
        }
        JournalState::Committed => {
            clean_up(&j)?;
            format!("finished cleaning up after the restore of {}", db.display())
        }
    };
    tracing::warn!(event = "restore.recovered", database = %db.display(), state = match j.state { JournalState::Swapping => "swapping", JournalState::Committed => "committed" }, "{msg}");
    remove_orphans(db)?;
    Ok(Some(msg))
}
