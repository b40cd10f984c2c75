//! `snapshot`: capture the database, check the copy with DuckDB, commit it
//! to the store (or note that it equals the newest snapshot).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::capture::{self, CaptureError, CaptureOptions, Captured};
use crate::database::duckfile::{self, Header};
use crate::database::oslock::{self, LockKind};
use crate::environment;
use crate::id::SnapshotId;
use crate::ops::context::{Ctx, OpError, check_space_at, database_path, open_store};
use crate::ops::restore::journal;
use crate::store::{DatabaseInfo, MANIFEST_FORMAT, Manifest, Store, StoreLock};

/// What `snapshot` is asked for: the CLI's arguments, the wire request's
/// fields and the operation's input, in one type.
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Why: manual, pre-delete, scheduled, ... (letters, digits, - _ .).
    #[arg(long, default_value = "manual")]
    #[serde(default = "manual")]
    pub reason: String,
    /// Free text shown in listings.
    #[arg(long)]
    #[serde(default)]
    pub label: Option<String>,
    /// Keep this snapshot whatever the retention policy says.
    #[arg(long)]
    #[serde(default)]
    pub pin: bool,
    /// Do not commit when the captured files equal the newest snapshot's
    /// (the daemon's scheduled snapshots; not an argument from outside).
    #[arg(skip)]
    #[serde(skip)]
    pub skip_unchanged: bool,
    /// Never take the database's read lock, even when no app holds it:
    /// copy it as if one did (the daemon's background snapshots while it
    /// archives the WAL, taken when the app has just closed the database
    /// and may open it again at any moment; not an argument from outside).
    #[arg(skip)]
    #[serde(skip)]
    pub never_lock: bool,
}

fn manual() -> String {
    "manual".into()
}

/// What `snapshot` answers: the manifest, or why there is none.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnapshotReply {
    /// The new snapshot's manifest, without its chunk lists.
    pub snapshot: Option<Box<Manifest>>,
    /// Cloud mode: backups are disabled (`reason` says why).
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The database equals snapshot `since`: nothing was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<SnapshotId>,
    /// With continuous archiving, a `pre-delete` request is answered by a
    /// marker: a named restore point at the last archived commit, instead
    /// of a snapshot (`snapshot` is then null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<MarkerReply>,
    /// Why a marker could not be recorded and a snapshot was taken instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_fallback: Option<String>,
}

/// A marker: a restore point id usable wherever a snapshot id is (for
/// `restore`), when it was recorded, and the snapshot it replays onto.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MarkerReply {
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub base: SnapshotId,
}

impl From<SnapshotOutcome> for SnapshotReply {
    fn from(o: SnapshotOutcome) -> SnapshotReply {
        let mut r = SnapshotReply {
            snapshot: None,
            disabled: false,
            reason: None,
            unchanged: false,
            since: None,
            marker: None,
            marker_fallback: None,
        };
        match o {
            SnapshotOutcome::Disabled { reason } => {
                r.disabled = true;
                r.reason = Some(reason);
            }
            // The chunk lists stay in the store: a client waiting for its
            // pre-delete snapshot would otherwise receive (and parse)
            // megabytes of chunk names for a large database.
            SnapshotOutcome::Created(m) => r.snapshot = Some(Box::new(m.without_chunks())),
            SnapshotOutcome::Unchanged { since } => {
                r.unchanged = true;
                r.since = Some(since);
            }
        }
        r
    }
}

impl SnapshotRequest {
    /// Checks reason and label (they come from outside).
    pub fn validate(&self) -> Result<(), OpError> {
        let r = &self.reason;
        if !crate::id::valid_reason(r) {
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
    Created(std::sync::Arc<Manifest>),
    /// `skip_unchanged` and the database equals snapshot `since`.
    Unchanged {
        since: SnapshotId,
    },
}

/// A snapshot in cloud mode did no work.
impl super::context::JobResult for SnapshotOutcome {
    fn ran(&self) -> bool {
        match self {
            SnapshotOutcome::Created(_) | SnapshotOutcome::Unchanged { .. } => true,
            SnapshotOutcome::Disabled { .. } => false,
        }
    }
}

/// The chain a long-running process (the daemon) keeps for the configured
/// database, so that its online snapshots read only what changed however
/// many checkpoints lie between them (`capture::chain`).
#[derive(Default)]
pub struct Following(Option<(PathBuf, std::sync::Arc<capture::chain::Chain>)>);

impl Following {
    /// Follows the database `ctx` names (local mode, `capture.incremental`
    /// on), and stops following one it no longer names.
    pub fn update(&mut self, ctx: &Ctx) {
        let want = (!ctx.detection.is_cloud() && ctx.config.capture.incremental)
            .then(|| database_path(ctx).ok())
            .flatten();
        if self.0.as_ref().map(|(p, _)| p) == want.as_ref() {
            return;
        }
        self.0 = want.and_then(|p| match capture::chain::follow(&p) {
            Ok(c) => Some((p, c)),
            Err(e) => {
                tracing::warn!(event = "capture.chain_failed", error = %e, "cannot follow the database's checkpoints; snapshots after several read the whole file");
                None
            }
        });
    }
}

/// Takes a snapshot of the configured database (its result goes into the
/// health record).
pub fn snapshot(ctx: &Ctx, req: &SnapshotRequest) -> Result<SnapshotOutcome, OpError> {
    let r = super::context::run_job(ctx, crate::monitor::Job::Snapshot, false, || take(ctx, req));
    if let Ok(SnapshotOutcome::Unchanged { since }) = &r {
        crate::monitor::confirm(ctx, Some(since.to_string()));
    }
    r
}

fn take(ctx: &Ctx, req: &SnapshotRequest) -> Result<SnapshotOutcome, OpError> {
    req.validate()?;
    if ctx.detection.is_cloud() {
        tracing::debug!(event = "snapshot.disabled", reason = %ctx.detection.reason, "snapshot skipped: cloud mode");
        return Ok(SnapshotOutcome::Disabled {
            reason: environment::disabled_message(&ctx.detection),
        });
    }
    let db = &database_path(ctx)?;
    journal::recover(db)?;
    // Check the database before the store is created or locked, so that a
    // wrong path leaves the store untouched.
    let meta = database_file(db)?;

    let store = open_store(ctx, true)?;
    let lock = store.lock()?;
    let min_free = ctx.config.store.min_free_space.0;
    if ctx.config.capture.incremental && capture::mirror::recorded(&store) {
        // An incremental capture stores what it reads, little; should it
        // fall back to a full copy, it checks the space for one first.
        check_space_at(
            store.root(),
            side_bytes(db) + min_free,
            "the database's side files (an incremental snapshot reads only what changed), plus store.min_free_space",
        )?;
    } else {
        check_space_at(
            store.root(),
            snapshot_space(db, meta.len(), req.never_lock) + min_free,
            "the database and its side files, twice when a writer holds it (the staged copy DuckDB checks), \
             plus store.min_free_space",
        )?;
    }

    let started = Instant::now();
    let created_at = Utc::now();
    tracing::debug!(event = "snapshot.started", reason = %req.reason, database = %db.display(), "snapshot started");
    let staging = store.staging_dir(&lock, "snapshot")?;
    let opts = CaptureOptions {
        attempts: ctx.config.capture.attempts,
        backoff: ctx.config.capture.backoff.0,
        timeout: ctx.config.capture.timeout.0,
        incremental: ctx.config.capture.incremental,
        min_free_space: min_free,
        full_read_every: ctx.config.capture.full_read_every.0,
        never_lock: req.never_lock,
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

    if req.skip_unchanged
        && let Some(since) = same_as_newest(&store, &cap)?
    {
        tracing::info!(event = "snapshot.skipped", since = %since, reason = %req.reason, "database unchanged since the newest snapshot; nothing stored");
        return Ok(SnapshotOutcome::Unchanged { since });
    }
    let captured = started.elapsed();
    let manifest = commit_capture(&store, &lock, db, cap, req, created_at, started)?;
    tracing::debug!(
        event = "snapshot.timing",
        capture_ms = captured.as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - captured).as_secs_f64() * 1e3,
        "capture and commit finished"
    );
    // The next online capture takes its unread blocks from this snapshot:
    // a long-running process keeps its manifest rather than read it again.
    let manifest = std::sync::Arc::new(manifest);
    capture::mirror::remember(&store, &manifest);
    Ok(SnapshotOutcome::Created(manifest))
}

/// The database file's metadata, or why it cannot be snapshotted: missing,
/// not a regular file, or without a DuckDB header.
fn database_file(db: &Path) -> Result<fs::Metadata, OpError> {
    let meta = match fs::metadata(db) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CaptureError::Missing {
                path: db.to_path_buf(),
            }
            .into());
        }
        Err(source) => {
            return Err(CaptureError::Io {
                op: "stat",
                path: db.to_path_buf(),
                source,
            }
            .into());
        }
    };
    if !meta.is_file() {
        return Err(CaptureError::NotAFile {
            path: db.to_path_buf(),
        }
        .into());
    }
    Header::read_path(db).map_err(CaptureError::from)?;
    Ok(meta)
}

/// The newest snapshot, when the captured files equal its files.
fn same_as_newest(store: &Store, cap: &Captured) -> Result<Option<SnapshotId>, OpError> {
    let files = |fs: &[crate::store::FileEntry]| {
        fs.iter()
            .map(|f| (f.role.clone(), f.hash_of, f.hash.clone()))
            .collect::<Vec<_>>()
    };
    let Some(newest) = store.catalog()?.into_iter().next() else {
        return Ok(None);
    };
    Ok(store
        .load_manifest(&newest.id)
        .ok()
        .filter(|m| files(&m.files) == files(&cap.files))
        .map(|m| m.id))
}

/// The size of the side files a snapshot holds (`.wal`, `.wal.checkpoint`).
fn side_bytes(db: &Path) -> u64 {
    duckfile::SIDE_FILES
        .iter()
        .filter(|s| s.captured)
        .filter_map(|s| fs::metadata(duckfile::side_path(db, s.suffix)).ok())
        .map(|m| m.len())
        .sum()
}

/// What a capture of `db` (`len` bytes) may write to the store: every file
/// as new chunks, and, when the capture is online (a writer holds the
/// database, or `never_lock`), a staged copy of them as well.
fn snapshot_space(db: &Path, len: u64, never_lock: bool) -> u64 {
    let sides = side_bytes(db);
    let online = never_lock
        || File::open(db)
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
            incremental: cap.incremental,
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
        method = %manifest.capture.method,
        attempts = manifest.capture.attempts,
        db_bytes = manifest.db_size(),
        bytes_new = manifest.bytes_new,
        duration_ms = manifest.capture.duration_ms,
        "snapshot created"
    );
    Ok(manifest)
}
