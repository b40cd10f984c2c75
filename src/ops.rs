//! The operations behind the subcommands, as plain functions named like them:
//! [`snapshot`], [`list`], [`show`]. The CLI (and later the daemon) call these;
//! they never print. Each returns a typed outcome, with the documented
//! "disabled" result in cloud mode.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capture::{self, CaptureError, CaptureOptions, Captured};
use crate::check;
use crate::config::{Config, ConfigError};
use crate::dbpath;
use crate::duckfile::{self, Header};
use crate::environment::{self, Detection};
use crate::id::{InvalidId, SnapshotId};
use crate::oslock::{self, LockKind};
use crate::restore::{self, RecoverError};
use crate::retention::{self, Candidate, Plan};
use crate::store::{
    BadEntry, CheckStatus, DatabaseInfo, MANIFEST_FORMAT, Manifest, Store, StoreError, StoreLock,
    Summary,
};

/// Everything an operation needs: the checked config and the environment decision.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Config,
    pub detection: Detection,
}

/// Errors of an operation, each mapped to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "not enough free space in {path}: {available} bytes available, {needed} needed ({what})"
    )]
    NoSpace {
        path: PathBuf,
        available: u64,
        needed: u64,
        what: &'static str,
    },
    #[error("snapshot {id} is damaged: {missing} chunk(s) missing from the store")]
    Damaged { id: SnapshotId, missing: usize },
    #[error("{reason}")]
    Disabled { reason: String },
    #[error("{path} exists; pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error(
        "{path} is in use{}: close the application's DuckDB connection (or stop the app) and try again",
        pid.map(|p| format!(" by process {p} (it holds DuckDB's lock)")).unwrap_or_else(|| " (another process holds a lock on it)".into())
    )]
    InUse { path: PathBuf, pid: Option<i32> },
    #[error("restore failed: {reason}")]
    RestoreFailed { reason: String },
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error("not confirmed: {0}")]
    NotConfirmed(String),
    #[error("verification found problems in {problems} of {checked} snapshot(s)")]
    VerifyFailed { checked: usize, problems: usize },
}

impl OpError {
    /// The process exit code for this error (see README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            OpError::Config(_) | OpError::InvalidId(_) | OpError::InvalidArgument { .. } => 2,
            OpError::Capture(CaptureError::Missing { .. })
            | OpError::Capture(CaptureError::NotAFile { .. })
            | OpError::Capture(CaptureError::Header(_)) => 3,
            OpError::Capture(CaptureError::Inconsistent { .. }) => 4,
            OpError::Store(StoreError::NotFound { .. })
            | OpError::Store(StoreError::InvalidId(_)) => 5,
            OpError::Damaged { .. }
            | OpError::VerifyFailed { .. }
            | OpError::Store(StoreError::GcRefused { .. })
            | OpError::Store(StoreError::Link { .. })
            | OpError::Store(StoreError::BadManifest { .. }) => 6,
            OpError::Disabled { .. } => 7,
            OpError::InUse { .. } => 8,
            OpError::Exists { .. } | OpError::NotConfirmed(_) => 2,
            _ => 1,
        }
    }
}

/// What `snapshot` was asked for.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    pub reason: String,
    pub label: Option<String>,
    pub pin: bool,
    /// Do not commit when the captured files equal the newest snapshot's
    /// (scheduled snapshots).
    pub skip_unchanged: bool,
}

impl SnapshotRequest {
    /// Checks reason and label (they come from outside).
    pub fn validate(&self) -> Result<(), OpError> {
        let r = &self.reason;
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(OpError::InvalidArgument {
                what: "reason",
                reason: format!(
                    "{r:?}: use 1 to 64 characters of letters, digits, '-', '_' or '.'"
                ),
            });
        }
        if let Some(l) = &self.label
            && (l.chars().count() > 256 || l.chars().any(char::is_control))
        {
            return Err(OpError::InvalidArgument {
                what: "label",
                reason: "at most 256 characters, no control characters".into(),
            });
        }
        Ok(())
    }
}

/// Result of `snapshot`.
#[derive(Debug, Clone)]
pub enum SnapshotOutcome {
    /// Cloud mode: no snapshot, and why.
    Disabled {
        reason: String,
    },
    Created(Box<Manifest>),
    /// `skip_unchanged` and the database equals snapshot `since`.
    Unchanged {
        since: SnapshotId,
    },
}

/// The database file the app opens: the configured path with links and
/// `..` resolved (see [`dbpath::real_path`]). When its directory does not
/// exist the configured path is returned, for the operations to report.
pub fn database_path(ctx: &Ctx) -> Result<PathBuf, OpError> {
    let p = &ctx.config.database.path;
    match dbpath::real_path(p) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(p).is_err() => {
            Ok(p.clone())
        }
        Err(e) => Err(OpError::InvalidArgument {
            what: "database.path",
            reason: format!("{}: {e}", p.display()),
        }),
    }
}

fn open_store(ctx: &Ctx, create: bool) -> Result<Store, OpError> {
    // A restore that a crash interrupted is undone before anything else
    // looks at the database.
    restore::recover(&database_path(ctx)?)?;
    Ok(Store::open(
        &ctx.config.store.dir,
        create,
        ctx.config.store.compression_level,
    )?)
}

/// The store of a local-mode operation on an existing snapshot: the disabled
/// error in cloud mode, not-found when no store exists yet.
fn store_for(ctx: &Ctx, id: &SnapshotId) -> Result<Store, OpError> {
    if ctx.detection.is_cloud() {
        return Err(OpError::Disabled {
            reason: environment::disabled_message(&ctx.detection),
        });
    }
    if !ctx.config.store.dir.join("STORE").exists() {
        return Err(StoreError::NotFound {
            id: id.clone(),
            store: ctx.config.store.dir.clone(),
        }
        .into());
    }
    open_store(ctx, false)
}

/// Takes a snapshot of the configured database.
pub fn snapshot(ctx: &Ctx, req: &SnapshotRequest) -> Result<SnapshotOutcome, OpError> {
    req.validate()?;
    if ctx.detection.is_cloud() {
        tracing::debug!(event = "snapshot.disabled", reason = %ctx.detection.reason, "snapshot skipped: cloud mode");
        return Ok(SnapshotOutcome::Disabled {
            reason: environment::disabled_message(&ctx.detection),
        });
    }
    let db = &database_path(ctx)?;
    restore::recover(db)?;
    // Check the database before the store is created or locked, so that a
    // wrong path leaves the store untouched.
    let meta = match fs::metadata(db) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CaptureError::Missing { path: db.clone() }.into());
        }
        Err(source) => {
            return Err(CaptureError::Io {
                op: "stat",
                path: db.clone(),
                source,
            }
            .into());
        }
    };
    if !meta.is_file() {
        return Err(CaptureError::NotAFile { path: db.clone() }.into());
    }
    Header::read_path(db).map_err(CaptureError::from)?;

    let store = open_store(ctx, true)?;
    let lock = store.lock()?;
    check_space_at(
        store.root(),
        snapshot_space(db, meta.len()) + ctx.config.store.min_free_space.0,
        "the database and its side files, twice when a writer holds it (the staged copy DuckDB checks), \
         plus store.min_free_space",
    )?;

    let started = Instant::now();
    let created_at = Utc::now();
    tracing::debug!(event = "snapshot.started", reason = %req.reason, database = %db.display(), "snapshot started");
    let staging = store.staging_dir(&lock, "snapshot")?;
    let opts = CaptureOptions {
        attempts: ctx.config.capture.attempts,
        backoff: ctx.config.capture.backoff.0,
        timeout: ctx.config.capture.timeout.0,
    };
    let result = capture::capture(&store, &lock, db, &opts, &staging);
    let _ = fs::remove_dir_all(&staging);
    let cap = match result {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(event = "snapshot.failed", database = %db.display(), error = %e, "snapshot failed");
            return Err(e.into());
        }
    };

    if req.skip_unchanged {
        let files = |fs: &[crate::store::FileEntry]| {
            fs.iter()
                .map(|f| (f.role.clone(), f.hash_of, f.hash.clone()))
                .collect::<Vec<_>>()
        };
        if let Some(newest) = store.catalog()?.first()
            && let Ok(m) = store.load_manifest(&newest.id)
            && files(&m.files) == files(&cap.files)
        {
            tracing::info!(event = "snapshot.skipped", since = %m.id, reason = %req.reason, "database unchanged since the newest snapshot; nothing stored");
            return Ok(SnapshotOutcome::Unchanged { since: m.id });
        }
    }
    let captured = started.elapsed();
    let manifest = commit_capture(&store, &lock, db, cap, req, created_at, started)?;
    tracing::debug!(
        event = "snapshot.timing",
        capture_ms = captured.as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - captured).as_secs_f64() * 1e3,
        "capture and commit finished"
    );
    Ok(SnapshotOutcome::Created(Box::new(manifest)))
}

/// What a capture of `db` (`len` bytes) may write to the store: every file
/// as new chunks, and, when a writer holds the database (an online capture),
/// a staged copy of them as well.
fn snapshot_space(db: &Path, len: u64) -> u64 {
    let sides: u64 = duckfile::SIDE_FILES
        .iter()
        .filter(|s| s.captured)
        .filter_map(|s| fs::metadata(duckfile::side_path(db, s.suffix)).ok())
        .map(|m| m.len())
        .sum();
    let online = File::open(db)
        .ok()
        .and_then(|f| oslock::conflicting(&f, LockKind::Read).ok())
        .flatten()
        .is_some();
    (len + sides) * if online { 2 } else { 1 }
}

/// Turns a successful capture into a committed snapshot.
pub(crate) fn commit_capture(
    store: &Store,
    lock: &StoreLock,
    db: &Path,
    cap: Captured,
    req: &SnapshotRequest,
    created_at: DateTime<Utc>,
    started: Instant,
) -> Result<Manifest, OpError> {
    let mut id = SnapshotId::generate(created_at);
    while store.load_manifest(&id).is_ok() {
        id = SnapshotId::generate(created_at);
    }
    let mut counted = HashSet::new();
    let bytes_new = cap
        .files
        .iter()
        .flat_map(|f| f.chunks.iter())
        .filter(|c| counted.insert(c.hash.as_str()))
        .filter_map(|c| cap.new_chunks.get(&c.hash))
        .sum();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id: id.clone(),
        created_at,
        reason: req.reason.clone(),
        label: req.label.clone(),
        pinned: req.pin,
        pinned_until: None,
        database: DatabaseInfo {
            path: db.display().to_string(),
            header_version: cap.header.header_version,
            storage_version: cap.header.storage_version,
            block_size: cap.header.block_size,
            block_count: cap.header.block_count,
            iteration: cap.header.iteration,
        },
        files: cap.files,
        capture: crate::store::CaptureInfo {
            method: cap.method,
            attempts: cap.attempts,
            duration_ms: started.elapsed().as_millis() as u64,
        },
        check: cap.check,
        bytes_new,
        ducksnap_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    store.commit_manifest(lock, &manifest)?;
    tracing::info!(
        event = "snapshot.created",
        id = %manifest.id,
        reason = %manifest.reason,
        method = ?manifest.capture.method,
        attempts = manifest.capture.attempts,
        db_bytes = manifest.db_size(),
        bytes_new = manifest.bytes_new,
        duration_ms = manifest.capture.duration_ms,
        "snapshot created"
    );
    Ok(manifest)
}

/// One row of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    #[serde(flatten)]
    pub summary: Summary,
    /// Chunks the manifest names that the store does not have.
    pub missing_chunks: usize,
}

/// Result of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub disabled: bool,
    /// Newest first.
    pub snapshots: Vec<ListEntry>,
    /// Manifest files that could not be read.
    pub unreadable: Vec<BadEntry>,
}

/// Lists the snapshots, newest first, each checked for missing chunks.
pub fn list(ctx: &Ctx) -> Result<Listing, OpError> {
    if ctx.detection.is_cloud() {
        return Ok(Listing {
            disabled: true,
            snapshots: Vec::new(),
            unreadable: Vec::new(),
        });
    }
    if !ctx.config.store.dir.join("STORE").exists() {
        return Ok(Listing {
            disabled: false,
            snapshots: Vec::new(),
            unreadable: Vec::new(),
        });
    }
    let store = open_store(ctx, false)?;
    let summaries = store.catalog()?;
    let (manifests, unreadable) = store.manifests()?;
    let present = store.chunk_set()?;
    let snapshots = summaries
        .into_iter()
        .map(|summary| {
            let missing_chunks = manifests
                .iter()
                .find(|m| m.id == summary.id)
                .map(|m| Store::missing_chunks(m, &present).len())
                .unwrap_or(0);
            ListEntry {
                summary,
                missing_chunks,
            }
        })
        .collect();
    Ok(Listing {
        disabled: false,
        snapshots,
        unreadable,
    })
}

/// Result of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub manifest: Manifest,
    pub missing_chunks: Vec<String>,
}

/// One snapshot's manifest, with the chunks it names that are missing.
pub fn show(ctx: &Ctx, id: &str) -> Result<Shown, OpError> {
    let id = SnapshotId::parse(id)?;
    let store = store_for(ctx, &id)?;
    let manifest = store.load_manifest(&id)?;
    let present = store.chunk_set()?;
    let missing_chunks = Store::missing_chunks(&manifest, &present);
    Ok(Shown {
        manifest,
        missing_chunks,
    })
}

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

fn compare_tables(expected: &Manifest, got: &crate::store::CheckInfo) -> Result<(), String> {
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
    let dir = restore::dir_of(dest);
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
        restore::dir_of(&to),
        m.total_size(),
        "the snapshot's database and side files",
    )?;
    // The copy is as private as the database it is a copy of.
    let mode = fs::metadata(db)
        .map(|md| md.mode() & 0o777)
        .unwrap_or(0o600);
    let (staged, _guard) = restore::claim_staging(&to)?;
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
    crate::store::fsync_dir(restore::dir_of(to))?;
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

/// The journal of an in-place restore of `m` from `staged` over `db`.
fn journal_for(
    db: &Path,
    m: &Manifest,
    staged: &Path,
    old: Option<&File>,
) -> Result<restore::Journal, OpError> {
    let pid = std::process::id();
    let aside = |suffix: &str| {
        let live = duckfile::side_path(db, suffix);
        fs::symlink_metadata(&live)
            .is_ok()
            .then(|| restore::sibling(db, &format!("ducksnap-old-{pid}{suffix}")))
    };
    let new = |role: &str| -> Result<(Option<u64>, Option<PathBuf>), OpError> {
        if m.file(role).is_none() {
            return Ok((None, None));
        }
        let p = duckfile::role_path(staged, role).expect("known role");
        let ino = fs::metadata(&p)
            .map_err(|source| StoreError::Io {
                op: "stat",
                path: p.clone(),
                source,
            })?
            .ino();
        Ok((Some(ino), Some(p)))
    };
    let (new_wal_ino, new_wal_staged) = new("wal")?;
    let (new_ckpt_ino, new_ckpt_staged) = new("wal_checkpoint")?;
    Ok(restore::Journal {
        state: restore::JournalState::Swapping,
        db: db.to_path_buf(),
        old_ino: old.and_then(|f| f.metadata().ok()).map(|md| md.ino()),
        old_link: old.map(|_| restore::sibling(db, &format!("ducksnap-old-{pid}"))),
        old_wal_aside: aside(".wal"),
        old_ckpt_aside: aside(".wal.checkpoint"),
        old_recovery_aside: aside(".wal.recovery"),
        new_ino: fs::metadata(staged)
            .map_err(|source| StoreError::Io {
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
fn swap(j: &restore::Journal, m: &Manifest, new_file: &File) -> Result<bool, OpError> {
    let db = &j.db;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| OpError::Store(StoreError::Io { op, path, source })
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
    crate::store::fsync_dir(restore::dir_of(db))?;
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

fn restore_in_place(
    ctx: &Ctx,
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
    db: &Path,
) -> Result<Restored, OpError> {
    let dir = restore::dir_of(db).to_path_buf();
    if !dir.is_dir() {
        return Err(OpError::InvalidArgument {
            what: "database.path",
            reason: format!("directory {} does not exist", dir.display()),
        });
    }
    // Keep the app out for the whole restore.
    let old = lock_out_the_app(db)?;
    let db_own = match &old {
        Some(f) => Ownership::of(&f.metadata().map_err(|source| StoreError::Io {
            op: "stat",
            path: db.to_path_buf(),
            source,
        })?),
        None => Ownership {
            mode: 0o600,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        },
    };
    check_space_at(
        &dir,
        m.total_size() + ctx.config.store.min_free_space.0,
        "the snapshot's database and side files, plus store.min_free_space",
    )?;
    // Nothing is moved aside before this snapshot of all of it is committed.
    let pre_restore = match &old {
        Some(f) => Some(safety_snapshot(ctx, store, lock, m, db, f)?),
        None => None,
    };

    let (staged, new_file) = restore::claim_staging(db)?;
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
    if !oslock::try_lock(&new_file, LockKind::Write).map_err(|source| StoreError::Io {
        op: "lock",
        path: staged.clone(),
        source,
    })? {
        unstage();
        return Err(OpError::InUse {
            path: staged.clone(),
            pid: None,
        });
    }
    let mut journal = journal_for(db, m, &staged, old.as_ref())?;
    restore::write_journal(&journal)?;
    let verified = match swap(&journal, m, &new_file) {
        Ok(v) => v,
        Err(e) => return Err(roll_back_after(&journal, m, e)),
    };
    journal.state = restore::JournalState::Committed;
    restore::write_journal(&journal)?;
    restore::clean_up(&journal)?;
    drop(new_file);
    drop(old);
    tracing::info!(event = "restore.completed", id = %m.id, database = %db.display(), pre_restore = ?pre_restore.as_ref().map(|i| i.to_string()), "database restored");
    Ok(Restored {
        id: m.id.clone(),
        path: db.to_path_buf(),
        pre_restore,
        verified,
        checked: true,
        wal: m.side_size() > 0,
    })
}

/// Rolls a failed swap back and says what happened.
fn roll_back_after(journal: &restore::Journal, m: &Manifest, e: OpError) -> OpError {
    tracing::error!(event = "restore.failed", id = %m.id, error = %e, "restore failed; rolling back");
    let db = &journal.db;
    match restore::roll_back(journal) {
        Ok(()) => {
            let _ = fs::remove_file(restore::journal_path(db));
            OpError::RestoreFailed {
                reason: format!("{e}; the previous database was put back"),
            }
        }
        Err(rb) => OpError::RestoreFailed {
            reason: format!(
                "{e}; rolling back ALSO failed: {rb}; the journal {} describes the files",
                restore::journal_path(db).display()
            ),
        },
    }
}

/// Fails unless `dir`'s file system has `needed` bytes free; `what` says
/// what they are for (the message names exactly what was counted).
fn check_space_at(dir: &Path, needed: u64, what: &'static str) -> Result<(), OpError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| {
        OpError::Store(StoreError::Io {
            op: "query free space of",
            path: dir.to_path_buf(),
            source: e.into(),
        })
    })?;
    let available = st.blocks_available() as u64 * st.fragment_size() as u64;
    if available < needed {
        return Err(OpError::NoSpace {
            path: dir.to_path_buf(),
            available,
            needed,
            what,
        });
    }
    Ok(())
}

/// One snapshot's verification.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SnapshotCheck {
    pub id: String,
    pub ok: bool,
    pub chunks: usize,
    pub missing_chunks: Vec<String>,
    pub corrupt_chunks: Vec<String>,
    /// `--deep`: the reassembled file opened with DuckDB, every column read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of `verify`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub disabled: bool,
    pub checked: usize,
    pub problems: usize,
    pub snapshots: Vec<SnapshotCheck>,
}

/// Re-hashes every chunk of one snapshot (`id`) or of all; `deep` also
/// reassembles each and reads every column with DuckDB.
pub fn verify(ctx: &Ctx, id: Option<&str>, deep: bool) -> Result<VerifyReport, OpError> {
    let id = id.map(SnapshotId::parse).transpose()?;
    let empty = |disabled| VerifyReport {
        disabled,
        checked: 0,
        problems: 0,
        snapshots: Vec::new(),
    };
    if ctx.detection.is_cloud() {
        return Ok(empty(true));
    }
    if !ctx.config.store.dir.join("STORE").exists() {
        return match id {
            Some(id) => Err(StoreError::NotFound {
                id,
                store: ctx.config.store.dir.clone(),
            }
            .into()),
            None => Ok(empty(false)),
        };
    }
    let store = open_store(ctx, false)?;
    // Lists the chunk directories without following links: a link there is
    // damage to report, not a place to read from.
    store.chunk_set()?;
    let mut results = Vec::new();
    let manifests = verify_targets(&store, id.as_ref(), &mut results)?;
    let lock = if deep { Some(store.lock()?) } else { None };
    // A chunk shared by many snapshots is read once.
    let mut seen: HashMap<String, Result<(), bool>> = HashMap::new();
    for m in &manifests {
        let mut r = check_chunks(&store, m, &mut seen);
        if let Some(lock) = lock.as_ref().filter(|_| r.ok) {
            match deep_check(&store, lock, m)? {
                Ok(msg) => r.deep = Some(msg),
                Err(e) => {
                    r.ok = false;
                    r.error = Some(e);
                }
            }
        }
        if !r.missing_chunks.is_empty() && id.is_none() && !store.manifest_exists(&m.id) {
            // A prune beside us removed this snapshot (and then its chunks)
            // after we listed it: that is no damage.
            tracing::debug!(event = "verify.removed_meanwhile", id = %m.id, "snapshot removed while it was being verified");
            continue;
        }
        results.push(r);
    }
    let problems = results.iter().filter(|r| !r.ok).count();
    for r in results.iter().filter(|r| !r.ok) {
        tracing::error!(event = "verify.problem", id = %r.id, missing = r.missing_chunks.len(), corrupt = r.corrupt_chunks.len(), error = ?r.error, "snapshot failed verification");
    }
    Ok(VerifyReport {
        disabled: false,
        checked: results.len(),
        problems,
        snapshots: results,
    })
}

/// A failed check of a snapshot that has no chunks to look at.
fn unusable(id: String, error: String) -> SnapshotCheck {
    SnapshotCheck {
        id,
        ok: false,
        chunks: 0,
        missing_chunks: Vec::new(),
        corrupt_chunks: Vec::new(),
        deep: None,
        error: Some(error),
    }
}

/// The manifests `verify` checks (one, or all); those that fail the
/// validation restore applies (`load_manifest`) go into `results` as
/// problems, so verify fails exactly what restore would refuse.
fn verify_targets(
    store: &Store,
    id: Option<&SnapshotId>,
    results: &mut Vec<SnapshotCheck>,
) -> Result<Vec<Manifest>, OpError> {
    let Some(id) = id else {
        let (ms, bad) = store.manifests()?;
        for b in bad {
            results.push(unusable(
                b.file.trim_end_matches(".json").to_string(),
                b.reason,
            ));
        }
        return Ok(ms);
    };
    match store.load_manifest(id) {
        Ok(m) => Ok(vec![m]),
        Err(StoreError::BadManifest { reason, .. }) => {
            results.push(unusable(
                id.to_string(),
                format!("manifest unusable: {reason}"),
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Re-hashes every chunk `m` names (`seen` remembers chunks already read:
/// `Err(true)` missing, `Err(false)` corrupt).
fn check_chunks(
    store: &Store,
    m: &Manifest,
    seen: &mut HashMap<String, Result<(), bool>>,
) -> SnapshotCheck {
    let mut r = SnapshotCheck {
        id: m.id.to_string(),
        ok: true,
        chunks: 0,
        missing_chunks: Vec::new(),
        corrupt_chunks: Vec::new(),
        deep: None,
        error: None,
    };
    for c in m.files.iter().flat_map(|f| f.chunks.iter()) {
        r.chunks += 1;
        let res = seen
            .entry(c.hash.clone())
            .or_insert_with(|| match store.read_chunk(c) {
                Ok(_) => Ok(()),
                Err(StoreError::ChunkMissing { .. }) => Err(true),
                Err(_) => Err(false),
            });
        let list = match res {
            Ok(()) => continue,
            Err(true) => &mut r.missing_chunks,
            Err(false) => &mut r.corrupt_chunks,
        };
        if !list.contains(&c.hash) {
            list.push(c.hash.clone());
        }
    }
    r.ok = r.missing_chunks.is_empty() && r.corrupt_chunks.is_empty();
    r
}

/// `--deep`: reassembles `m` in staging, has DuckDB open it and read every
/// column, and compares tables and row counts. The inner result is the
/// snapshot's verdict; the outer one an error of the store itself.
fn deep_check(
    store: &Store,
    lock: &StoreLock,
    m: &Manifest,
) -> Result<Result<String, String>, OpError> {
    let dir = store.staging_dir(lock, "verify")?;
    let outcome = (|| -> Result<String, String> {
        let db = store
            .reassemble(m, &dir, "db.duckdb")
            .map_err(|e| e.to_string())?;
        let header = Header::read_path(&db).map_err(|e| e.to_string())?;
        let got = check::check_copy(&db, &header, true).map_err(|e| e.to_string())?;
        compare_tables(m, &got)?;
        Ok(match got.status {
            CheckStatus::Verified => format!(
                "opened and read every column of {} table(s)",
                got.tables.len()
            ),
            CheckStatus::NotVerified => got.reason.unwrap_or_default(),
        })
    })();
    let _ = fs::remove_dir_all(&dir);
    Ok(outcome)
}

/// Result of `prune`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PruneReport {
    pub disabled: bool,
    pub dry_run: bool,
    pub plan: Option<Plan>,
    pub removed: usize,
    /// Chunk files deleted and their bytes on disk.
    pub chunks_deleted: usize,
    pub bytes_freed: u64,
}

fn candidates(store: &Store, manifests: &[Manifest]) -> Vec<Candidate> {
    let mut sizes: HashMap<String, u64> = HashMap::new();
    manifests
        .iter()
        .map(|m| Candidate {
            id: m.id.clone(),
            created_at: m.created_at,
            pinned: m.pinned,
            pinned_until: m.pinned_until,
            reason: m.reason.clone(),
            verified: m.check.status == CheckStatus::Verified,
            chunks: m
                .chunk_hashes()
                .map(|h| {
                    let size = *sizes.entry(h.to_string()).or_insert_with(|| {
                        fs::metadata(store.chunk_path(h))
                            .map(|m| m.len())
                            .unwrap_or(0)
                    });
                    (h.to_string(), size)
                })
                .collect(),
        })
        .collect()
}

/// Applies retention, then deletes chunks no manifest names.
pub fn prune(ctx: &Ctx, dry_run: bool) -> Result<PruneReport, OpError> {
    let empty = |disabled| PruneReport {
        disabled,
        dry_run,
        plan: None,
        removed: 0,
        chunks_deleted: 0,
        bytes_freed: 0,
    };
    if ctx.detection.is_cloud() {
        return Ok(empty(true));
    }
    if !ctx.config.store.dir.join("STORE").exists() {
        return Ok(empty(false));
    }
    let store = open_store(ctx, false)?;
    let lock = store.lock()?;
    let (manifests, bad) = store.manifests()?;
    let plan = retention::plan(
        &candidates(&store, &manifests),
        &ctx.config.retention,
        Utc::now(),
    );
    if dry_run {
        return Ok(PruneReport {
            plan: Some(plan),
            ..empty(false)
        });
    }
    if !bad.is_empty() {
        // Chunks an unusable manifest names cannot be told apart from
        // garbage, and retention cannot weigh a snapshot it cannot read:
        // delete nothing, and say which manifests stopped it.
        let e = StoreError::GcRefused {
            manifests: bad
                .into_iter()
                .map(|b| format!("{} ({})", b.file, b.reason))
                .collect(),
        };
        tracing::error!(event = "prune.refused", error = %e, "prune refused");
        return Err(e.into());
    }
    let mut removed = 0;
    for d in plan.forgotten() {
        let path = store
            .root()
            .join("snapshots")
            .join(format!("{}.json", d.id));
        fs::remove_file(&path).map_err(|source| StoreError::Io {
            op: "remove manifest",
            path: path.clone(),
            source,
        })?;
        removed += 1;
        tracing::info!(event = "prune.removed", id = %d.id, reason = %d.reasons.join("; "), "snapshot removed by retention");
    }
    crate::store::fsync_dir(&store.root().join("snapshots"))?;
    release_expired_pins(&store, &lock, &manifests, &plan);
    // Delete before writing anything: on a full disk, the catalog rewrite
    // is what needs the space being freed (and it is rebuilt when stale).
    let (chunks_deleted, bytes_freed) = store.collect_garbage(&lock)?;
    if let Err(e) = store.rebuild_catalog() {
        tracing::warn!(event = "store.catalog_failed", error = %e, "could not rewrite the catalog; it will be rebuilt on next read");
    }
    tracing::info!(
        event = "prune.completed",
        removed,
        chunks_deleted,
        bytes_freed,
        "prune completed"
    );
    Ok(PruneReport {
        disabled: false,
        dry_run,
        plan: Some(plan),
        removed,
        chunks_deleted,
        bytes_freed,
    })
}

/// Clears the pins whose time has passed on the snapshots retention keeps
/// (it already treated them as unpinned), so that `list` tells the truth. A
/// failure is logged: the plan does not depend on it.
fn release_expired_pins(store: &Store, lock: &StoreLock, manifests: &[Manifest], plan: &Plan) {
    let now = Utc::now();
    for d in plan.kept() {
        let Some(m) = manifests.iter().find(|m| m.id == d.id) else {
            continue;
        };
        if !(m.pinned && m.pinned_until.is_some_and(|t| t <= now)) {
            continue;
        }
        let mut m = m.clone();
        m.pinned = false;
        m.pinned_until = None;
        match store.commit_manifest(lock, &m) {
            Ok(()) => {
                tracing::info!(event = "prune.pin_expired", id = %m.id, "released an expired pin")
            }
            Err(e) => {
                tracing::warn!(event = "prune.pin_release_failed", id = %m.id, error = %e, "could not release an expired pin")
            }
        }
    }
}

/// Sets or clears a snapshot's pin.
pub fn pin(ctx: &Ctx, id: &str, pinned: bool) -> Result<Summary, OpError> {
    let id = SnapshotId::parse(id)?;
    let store = store_for(ctx, &id)?;
    let lock = store.lock()?;
    let mut m = store.load_manifest(&id)?;
    // A pin by hand has no expiry (it also makes a pre-restore pin permanent).
    if m.pinned != pinned || m.pinned_until.is_some() {
        m.pinned = pinned;
        m.pinned_until = None;
        store.commit_manifest(&lock, &m)?;
    }
    Ok(Summary::from(&m))
}

/// What only a running daemon knows, for `status`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
    /// The daemon's own last failure (a scheduled or requested snapshot
    /// that could not be taken, retention, a config reload); cleared when
    /// the same kind of work next succeeds. Requests it refused (bad
    /// arguments, an unknown id, a database in use) are the caller's
    /// answer, not the daemon's error.
    pub last_error: Option<LastError>,
    pub last_run: Option<String>,
}

/// One failure of the daemon's work, with when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LastError {
    pub at: DateTime<Utc>,
    /// `snapshot`, `retention` or `reload`.
    pub what: String,
    pub message: String,
}

/// Result of `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StatusReport {
    pub mode: crate::environment::Mode,
    pub mode_reason: String,
    pub signals_fired: Vec<String>,
    pub database: PathBuf,
    pub database_exists: bool,
    pub database_bytes: Option<u64>,
    pub store: PathBuf,
    pub snapshots: usize,
    pub store_bytes: u64,
    pub last_snapshot: Option<Summary>,
    pub last_snapshot_age_seconds: Option<i64>,
    /// From the daemon; `None` when no daemon runs (nothing is scheduled then).
    pub next_run: Option<DateTime<Utc>>,
    pub daemon: Option<DaemonInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
}

/// Mode and why, database, last snapshot and its age, next run, store size
/// and count; `daemon` adds what only the daemon knows.
pub fn status(ctx: &Ctx, daemon: Option<DaemonInfo>) -> Result<StatusReport, OpError> {
    let now = Utc::now();
    let db = &ctx.config.database.path;
    let meta = fs::metadata(db).ok().filter(|m| m.is_file());
    let cloud = ctx.detection.is_cloud();
    let (summaries, store_bytes) = if !cloud && ctx.config.store.dir.join("STORE").exists() {
        let store = Store::open(
            &ctx.config.store.dir,
            false,
            ctx.config.store.compression_level,
        )?;
        (store.catalog()?, store.stored_bytes()?)
    } else {
        (Vec::new(), 0)
    };
    let last = summaries.first().cloned();
    // Only a running daemon runs the schedule.
    let next_run = daemon.as_ref().and_then(|d| d.next_run);
    Ok(StatusReport {
        mode: ctx.detection.mode,
        mode_reason: ctx.detection.reason.clone(),
        signals_fired: ctx
            .detection
            .fired()
            .into_iter()
            .map(String::from)
            .collect(),
        database: db.clone(),
        database_exists: meta.is_some(),
        database_bytes: meta.map(|m| m.len()),
        store: ctx.config.store.dir.clone(),
        snapshots: summaries.len(),
        store_bytes,
        last_snapshot_age_seconds: last.as_ref().map(|s| (now - s.created_at).num_seconds()),
        last_snapshot: last,
        next_run,
        daemon,
        disabled: cloud.then(|| environment::disabled_message(&ctx.detection)),
    })
}
