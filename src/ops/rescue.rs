//! `rescue`: when DuckDB refuses to open the database, a database that
//! opens and holds every commit that can be got back, from, in order: the
//! database file with the longest WAL that verifies ([`salvage`]) — the
//! continuous archive's copy of the WAL where it reaches past the damage,
//! and the live WAL's commits after it that still verify — then, if DuckDB
//! still refuses, the longest prefix of those commits it opens (found by
//! bisection: a replay bug), then the database file alone, and last the
//! newest restore point in the store. The broken files are never written:
//! the result is staged in the store, opened read-only by the bundled
//! DuckDB, stored as a snapshot (reason `rescue`), and then either written
//! `--to` a standalone file or swapped in through the in-place restore,
//! whose pinned safety snapshot (reason `pre-rescue`) keeps the files that
//! were there byte for byte. A database DuckDB opens is left alone.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::{Archive, Generation};
use crate::capture;
use crate::database::check::{self, CheckInfo};
use crate::database::diagnose::{self, Diagnosis, Finding};
use crate::database::duckfile::{self, Header};
use crate::database::salvage::{self, Salvaged};
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError, database_path, open_store};
use crate::ops::restore::{
    RestoreRequest, Restored, check_dir, lock_out_the_app, replace_locked, restore_to,
};
use crate::ops::snapshot::{SnapshotRequest, commit_capture};
use crate::store::{Manifest, Store, StoreLock};

/// What `rescue` is asked for (the CLI's arguments and the wire request's
/// fields).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescueRequest {
    /// Write the rescued database to this path instead of replacing the
    /// database (on the wire: an absolute path).
    #[arg(long, value_name = "PATH")]
    #[serde(default)]
    pub to: Option<PathBuf>,
    /// With --to: overwrite an existing file.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// Where the rescued database came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// DuckDB opens the database as it is: nothing was changed.
    Healthy,
    /// The database file and the live WAL's commits that verify.
    LiveWal,
    /// The database file, the archive's copy of the WAL past the damage,
    /// and the live WAL's commits after it that verify.
    ArchiveAndLiveWal,
    /// The database file without its WAL: no commit of the WAL could be
    /// used.
    DatabaseFile,
    /// The newest restore point in the store: the database file itself
    /// cannot be used.
    RestorePoint,
}

/// What `rescue` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rescued {
    pub source: Source,
    /// Where the result is (the database, or `--to`).
    pub path: PathBuf,
    /// The rescued state as stored (reason `rescue`), or the snapshot
    /// restored (the base of `point`).
    pub snapshot: Option<SnapshotId>,
    /// The commit restore point restored (`Source::RestorePoint`).
    pub point: Option<String>,
    /// The pinned snapshot of the files that were there, byte for byte
    /// (in place only).
    pub pre_rescue: Option<SnapshotId>,
    /// Commits the result's WAL holds (DuckDB's checkpoint markers not
    /// counted), and how many of them only the archive had.
    pub commits: u64,
    pub from_archive: u64,
    /// The live WAL's first damaged entry, as DuckDB names its position.
    pub first_bad: Option<u64>,
    /// Bytes of the live WAL the result does not hold.
    pub dropped_bytes: u64,
    /// When ducksnap saw the last commit the result holds (the archive
    /// knows it; `None` for commits only the live WAL had).
    pub last_commit_at: Option<DateTime<Utc>>,
    /// What was found, as `doctor` reports it.
    pub findings: Vec<Finding>,
    /// What the result leaves out, and why, for people.
    pub notes: Vec<String>,
}

/// Rescues the configured database (see the module docs).
pub fn rescue(ctx: &Ctx, req: &RescueRequest) -> Result<Rescued, OpError> {
    if ctx.detection.is_cloud() {
        return Err(OpError::Disabled {
            reason: crate::environment::disabled_message(&ctx.detection),
        });
    }
    let db = database_path(ctx)?;
    check_dir(&db)?;
    let store = open_store(ctx, true)?;
    let lock = store.lock()?;
    // The app is kept out, and the files still, for the whole rescue.
    let guard = match Header::read_path(&db) {
        Ok(_) => lock_out_the_app(&db)?,
        Err(_) => None,
    };
    let mut diag = diagnose::examine(&db).map_err(|source| OpError::Io {
        op: "read",
        path: db.clone(),
        source,
    })?;
    if guard.is_some() {
        // Our own lock, seen from another open file description: nobody
        // else holds one, or `lock_out_the_app` would have said so.
        diag.findings
            .retain(|f| !matches!(f, Finding::Locked { .. }));
    }
    for f in &diag.findings {
        match f {
            Finding::Locked { pid, .. } => {
                return Err(OpError::InUse {
                    path: db.clone(),
                    pid: *pid,
                });
            }
            Finding::Encrypted | Finding::NewerStorage { .. } => {
                return Err(OpError::Unrescuable {
                    reason: format!("{} ({})", f.message(), f.fix()),
                });
            }
            _ => {}
        }
    }
    let Some(header) = diag.header else {
        return from_point(ctx, &store, &lock, &db, req, None, &diag, Vec::new());
    };
    let staging = store.staging_dir(&lock, "rescue")?;
    let staged = staging.join("rescue.duckdb");
    let out = from_files(ctx, &store, &lock, &db, req, guard, &diag, &header, &staged);
    let _ = fs::remove_dir_all(&staging);
    out
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OpError {
    let path = path.to_path_buf();
    move |source| OpError::Io { op, path, source }
}

/// The rescue from the database's own files, staged at `staged`.
#[allow(clippy::too_many_arguments)]
fn from_files(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    req: &RescueRequest,
    guard: Option<File>,
    diag: &Diagnosis,
    header: &Header,
    staged: &Path,
) -> Result<Rescued, OpError> {
    let ignored = diag
        .findings
        .iter()
        .any(|f| matches!(f, Finding::CheckpointWalIgnored { .. }));
    // DuckDB's own verdict on the files as they are, when nothing found
    // says it would refuse them.
    let mut refusal = None;
    if diag.opens() && !ignored {
        match as_they_are(db, header, staged)? {
            Ok(()) => return Ok(healthy(db, diag)),
            Err(e) => refusal = Some(e),
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        diag.findings
            .iter()
            .filter(|f| f.severity() != diagnose::Severity::Note)
            .map(|f| f.message())
            .collect::<Vec<_>>()
            .join("; ")
    });
    let mut notes = Vec::new();
    let (live, salvaged) = wal_to_use(ctx, store, db, diag, &mut notes)?;
    // The .wal.checkpoint is replayed only after the very .wal that ends in
    // its marker.
    let keep_ckpt = salvaged
        .as_ref()
        .is_some_and(|(s, _)| live.as_deref() == Some(s.wal.as_slice()))
        && diag
            .findings
            .iter()
            .any(|f| matches!(f, Finding::CheckpointWalReplayed { .. }));
    checkpoint_notes(diag, keep_ckpt, &mut notes);
    fs::copy(db, staged).map_err(io_error("copy", db))?;
    let staged_ckpt = duckfile::wal_checkpoint_path(staged);
    let _ = fs::remove_file(&staged_ckpt);
    if keep_ckpt {
        fs::copy(duckfile::wal_checkpoint_path(db), &staged_ckpt).map_err(io_error("copy", db))?;
    }
    let salvage = salvaged.as_ref().map(|(s, _)| s);
    let Some((k, checked)) = longest_opening(staged, header, salvage, &mut notes)? else {
        return from_point(ctx, store, lock, db, req, guard, diag, notes);
    };
    let a = Account::of(salvaged.as_ref(), live.as_deref(), k);
    let source = match (k, a.from_archive) {
        (0, _) => Source::DatabaseFile,
        (_, 0) => Source::LiveWal,
        _ => Source::ArchiveAndLiveWal,
    };
    // Stored first: a rescue that fails later has still kept its result.
    let saved = store_rescued(store, lock, db, staged, checked, &a)?;
    let done = apply(ctx, store, lock, db, req, &saved, guard, &refusal)?;
    Ok(Rescued {
        source,
        path: done.path,
        snapshot: Some(saved.id),
        point: None,
        pre_rescue: done.pre_restore,
        commits: a.app_commits,
        from_archive: a.from_archive,
        first_bad: a.first_bad,
        dropped_bytes: a.dropped,
        last_commit_at: a.last_at,
        findings: diag.findings.clone(),
        notes,
    })
}

/// What DuckDB says of a staged copy of the files as they are:
/// `Ok(Err(why))` when it refuses them.
fn as_they_are(db: &Path, header: &Header, staged: &Path) -> Result<Result<(), String>, OpError> {
    for (from, to) in side_pairs(db, staged) {
        copy_optional(&from, &to).map_err(io_error("copy", &from))?;
    }
    Ok(check::check_copy(staged, header, false)
        .map(|_| ())
        .map_err(|e| e.message))
}

/// The answer for a database DuckDB opens: nothing changed.
fn healthy(db: &Path, diag: &Diagnosis) -> Rescued {
    Rescued {
        source: Source::Healthy,
        path: db.to_path_buf(),
        snapshot: None,
        point: None,
        pre_rescue: None,
        commits: diag.wal_commits,
        from_archive: 0,
        first_bad: None,
        dropped_bytes: 0,
        last_commit_at: None,
        findings: diag.findings.clone(),
        notes: Vec::new(),
    }
}

/// The live WAL's bytes, and what of it (with the archive's copy) can be
/// used — nothing when it belongs to another database or iteration, or
/// cannot be read as a WAL (said in `notes`).
#[allow(clippy::type_complexity)]
fn wal_to_use(
    ctx: &Ctx,
    store: &Store,
    db: &Path,
    diag: &Diagnosis,
    notes: &mut Vec<String>,
) -> Result<(Option<Vec<u8>>, Option<(Salvaged, Option<Generation>)>), OpError> {
    let foreign = diag.findings.iter().find(|f| {
        matches!(
            f,
            Finding::WalOtherDatabase { .. } | Finding::WalIteration { .. }
        )
    });
    let live = read_optional(&duckfile::wal_path(db)).map_err(io_error("read", db))?;
    let salvaged = match (&live, foreign) {
        (Some(bytes), None) if !bytes.is_empty() => {
            let archived = archived_copy(ctx, store, db);
            let copy = archived.as_ref().map(|(b, _)| b.as_slice());
            match salvage::salvage(bytes, copy) {
                Ok(s) => Some((s, archived.map(|(_, g)| g))),
                Err(e) => {
                    notes.push(format!("the .wal cannot be read ({e}): left out"));
                    None
                }
            }
        }
        (Some(bytes), Some(f)) => {
            notes.push(format!(
                "the .wal ({} bytes) was left out: {}",
                bytes.len(),
                f.message()
            ));
            None
        }
        _ => None,
    };
    Ok((live, salvaged))
}

/// What becomes of a `.wal.checkpoint`, for people.
fn checkpoint_notes(diag: &Diagnosis, keep_ckpt: bool, notes: &mut Vec<String>) {
    for f in &diag.findings {
        match f {
            Finding::CheckpointWalIgnored { commits, bytes } => notes.push(format!(
                "the .wal.checkpoint ({bytes} bytes, {commits} commit(s)) is one DuckDB does not read: left out"
            )),
            Finding::CheckpointWalReplayed { bytes } if !keep_ckpt => notes.push(format!(
                "the .wal.checkpoint ({bytes} bytes) is replayed only after the whole .wal: left out with the .wal's damaged end"
            )),
            _ => {}
        }
    }
}

/// How many of the salvaged WAL's commits DuckDB opens beside the staged
/// database file, with its check: all of them, or the longest prefix it
/// opens (bisected: a replay bug), or none (no WAL at all). `None` when it
/// refuses the database file itself.
fn longest_opening(
    staged: &Path,
    header: &Header,
    salvaged: Option<&Salvaged>,
    notes: &mut Vec<String>,
) -> Result<Option<(usize, CheckInfo)>, OpError> {
    let staged_wal = duckfile::wal_path(staged);
    let (wal, commits): (&[u8], Vec<u64>) = match salvaged {
        Some(s) => (&s.wal, s.commits.iter().map(|c| c.end).collect()),
        None => (&[], Vec::new()),
    };
    // The WAL cut after its first `k` commits (none: no WAL at all).
    let try_k = |k: usize| -> Result<CheckInfo, String> {
        let _ = fs::remove_file(&staged_wal);
        if k > 0 {
            fs::write(&staged_wal, &wal[..commits[k - 1] as usize]).map_err(|e| e.to_string())?;
        }
        check::check_copy(staged, header, false).map_err(|e| e.message)
    };
    let n = commits.len();
    let full = match try_k(n) {
        Ok(c) => return Ok(Some((n, c))),
        Err(full) => full,
    };
    if n == 0 || try_k(0).is_err() {
        notes.push(format!("DuckDB refuses the database file itself: {full}"));
        return Ok(None);
    }
    // DuckDB opens the first `lo` commits and not the first `hi`.
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if try_k(mid).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    notes.push(format!(
        "DuckDB refuses to replay commit {hi} of the WAL ({full}): it and every later one are left out"
    ));
    let c = try_k(lo).map_err(|reason| OpError::RestoreFailed { reason })?;
    Ok(Some((lo, c)))
}

/// What a rescue that kept the first `k` commits of the salvaged WAL
/// recovered, and left out.
struct Account {
    app_commits: u64,
    from_archive: u64,
    first_bad: Option<u64>,
    last_at: Option<DateTime<Utc>>,
    dropped: u64,
}

impl Account {
    fn of(
        salvaged: Option<&(Salvaged, Option<Generation>)>,
        live: Option<&[u8]>,
        k: usize,
    ) -> Account {
        let live_len = live.map_or(0, |l| l.len() as u64);
        let Some((s, g)) = salvaged else {
            return Account {
                app_commits: 0,
                from_archive: 0,
                first_bad: None,
                last_at: None,
                dropped: live_len,
            };
        };
        let kept_to = if k == 0 { 0 } else { s.commits[k - 1].end };
        let kept = || s.commits.iter().take(k).filter(|c| !c.checkpoint);
        Account {
            app_commits: kept().count() as u64,
            from_archive: kept()
                .filter(|c| c.end > s.live_to && s.archived_to.is_some_and(|a| c.end <= a))
                .count() as u64,
            first_bad: s.first_bad,
            last_at: g
                .as_ref()
                .and_then(|g| g.commits.iter().find(|c| c.end == kept_to).map(|c| c.at)),
            dropped: live_len.saturating_sub(kept_to),
        }
    }
}

/// Stores the staged result as a snapshot with reason `rescue`.
fn store_rescued(
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    staged: &Path,
    checked: CheckInfo,
    a: &Account,
) -> Result<Manifest, OpError> {
    let started = Instant::now();
    let f = File::open(staged).map_err(io_error("open", staged))?;
    let cap = capture::capture_as_is(store, lock, staged, &f, checked)?;
    drop(f);
    commit_capture(
        store,
        lock,
        db,
        cap,
        &SnapshotRequest {
            reason: "rescue".into(),
            label: Some(format!(
                "rescued: {} commit(s) of the WAL{}",
                a.app_commits,
                match a.first_bad {
                    Some(p) => format!(", damaged from byte {p}"),
                    None => String::new(),
                }
            )),
            pin: false,
            skip_unchanged: false,
            never_lock: false,
        },
        Utc::now(),
        started,
    )
}

/// Writes `m` `--to` the standalone file, or swaps it in over the database
/// (the app kept out through `guard`), keeping what was there.
#[allow(clippy::too_many_arguments)]
fn apply(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    req: &RescueRequest,
    m: &Manifest,
    guard: Option<File>,
    refusal: &str,
) -> Result<Restored, OpError> {
    match &req.to {
        Some(to) => {
            drop(guard);
            let r = RestoreRequest {
                id: Some(m.id.to_string()),
                as_of: None,
                to: Some(to.clone()),
                force: req.force,
                check: false,
            };
            restore_to(ctx, store, m, db, to, &r)
        }
        None => replace_locked(ctx, store, lock, m, db, guard, "pre-rescue", Some(refusal)),
    }
}

/// The rescue from the newest restore point: the database file cannot be
/// used (missing, not a DuckDB file, refused even without its WAL).
#[allow(clippy::too_many_arguments)]
fn from_point(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    req: &RescueRequest,
    guard: Option<File>,
    diag: &Diagnosis,
    mut notes: Vec<String>,
) -> Result<Rescued, OpError> {
    let stranger = diag
        .findings
        .iter()
        .find(|f| matches!(f, Finding::NotDuckDb { .. } | Finding::NotAFile));
    if let (Some(f), None) = (stranger, &req.to) {
        return Err(OpError::Unrescuable {
            reason: format!(
                "{}: ducksnap keeps no copy of a file it cannot read as a database, so it will not replace it; move it away first, or give --to PATH",
                f.message()
            ),
        });
    }
    let given = "as-of:now";
    let (m, point) = match crate::ops::point::choose(ctx, store, given)? {
        Some(c) => (c.manifest(store, lock)?, Some(c.point.to_string())),
        None => {
            let sel = crate::ops::select::Selector::parse(given)?;
            let id = crate::ops::select::resolve_in(store, &sel, given).map_err(|_| {
                OpError::Unrescuable {
                    reason:
                        "the database file cannot be used and the store holds no snapshot of it"
                            .into(),
                }
            })?;
            (store.load_manifest(&id)?, None)
        }
    };
    notes.push(match &point {
        Some(p) => format!("restored the newest restore point, commit {p}"),
        None => format!("restored the newest snapshot, {}", m.id),
    });
    let refusal = "the database file cannot be used";
    let done = apply(ctx, store, lock, db, req, &m, guard, refusal)?;
    Ok(Rescued {
        source: Source::RestorePoint,
        path: done.path,
        snapshot: Some(m.id.clone()),
        point,
        pre_rescue: done.pre_restore,
        commits: 0,
        from_archive: 0,
        first_bad: None,
        dropped_bytes: 0,
        last_commit_at: Some(m.created_at),
        findings: diag.findings.clone(),
        notes,
    })
}

/// The archive's verified copy of the live WAL's beginning, when a WAL
/// generation followed this very file (its inode, and its header's
/// database binding) and archived a commit: the longest such copy.
fn archived_copy(ctx: &Ctx, store: &Store, db: &Path) -> Option<(Vec<u8>, Generation)> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(duckfile::wal_path(db)).ok()?;
    let archive = Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() {
        return None;
    }
    let (gens, _) = archive.generations().ok()?;
    // The same file; `salvage` uses the copy only where it agrees with
    // every live byte before the damage.
    let g = gens
        .into_iter()
        .filter(|g| g.file == "wal" && g.inode == (md.dev(), md.ino()))
        .filter(|g| !g.commits.is_empty())
        .max_by_key(|g| g.commits.last().map_or(0, |c| c.end))?;
    let end = g.commits.last()?.end;
    let bytes = archive.wal_prefix(&g, end).ok()?;
    Some((bytes, g))
}

/// The database's files and where they go in the staging directory.
fn side_pairs(db: &Path, staged: &Path) -> Vec<(PathBuf, PathBuf)> {
    vec![
        (db.to_path_buf(), staged.to_path_buf()),
        (duckfile::wal_path(db), duckfile::wal_path(staged)),
        (
            duckfile::wal_checkpoint_path(db),
            duckfile::wal_checkpoint_path(staged),
        ),
    ]
}

/// Copies `from` to `to` when it is a regular file; removes `to` otherwise.
fn copy_optional(from: &Path, to: &Path) -> std::io::Result<()> {
    let _ = fs::remove_file(to);
    match fs::symlink_metadata(from) {
        Ok(m) if m.is_file() => fs::copy(from, to).map(|_| ()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => fs::read(path).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
