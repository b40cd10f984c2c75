//! What every operation shares: the [`Ctx`] it runs in, the [`OpError`] it
//! fails with (and its code in the one table), and the helpers that find
//! the database, open the store and check free space.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::code::ErrorCode;
use super::restore::journal::{self, RecoverError};
use crate::capture::CaptureError;
use crate::config::ConfigError;
use crate::database::dbpath;
use crate::environment;
use crate::id::{InvalidId, SnapshotId};
use crate::store::{Owner, Store, StoreError};

/// Everything an operation needs (defined below the operations, where the
/// monitor sees it too).
pub use crate::environment::Ctx;

/// What an operation's result says about its run, for the health record.
pub trait JobResult {
    /// `false` for a call that did no work: cloud mode's "disabled", a dry
    /// run.
    fn ran(&self) -> bool {
        true
    }

    /// A failure the call found while succeeding as a call (a verify that
    /// found damage).
    fn found_failure(&self) -> Option<String> {
        None
    }
}

/// The one place an operation's run is recorded: `run` is timed, and its
/// result noted in the health record as a run of `job` — unless it was
/// none: a call that did no work ([`JobResult::ran`]), cloud mode's
/// "disabled", or a refusal of the caller's input (with `every` — work
/// nobody asked for at that moment, such as the daemon's pushes and
/// scheduled snapshots — a refusal is a failure like any other).
pub fn run_job<T: JobResult>(
    ctx: &Ctx,
    job: crate::monitor::Job,
    every: bool,
    run: impl FnOnce() -> Result<T, OpError>,
) -> Result<T, OpError> {
    use crate::monitor::Outcome;
    let started = std::time::Instant::now();
    let r = run();
    let outcome = match &r {
        Ok(t) if !t.ran() => Outcome::NotARun,
        Ok(t) => t.found_failure().map_or(Outcome::Done, Outcome::Failed),
        Err(OpError::Disabled { .. }) => Outcome::NotARun,
        Err(e) if !every && e.code().is_refusal() => Outcome::NotARun,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    crate::monitor::note(ctx, job, started, outcome);
    r
}

/// Errors of an operation, each mapped to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A file outside the store (the database, a `--to` target, the
    /// private directory beside them) could not be read or written; the
    /// store's own files fail as [`StoreError::Io`].
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
    #[error("no snapshot matches {given} in {store}{hint}")]
    NoMatch {
        given: String,
        store: PathBuf,
        /// What there is instead (`; the reasons there are: …`), or empty.
        hint: String,
    },
    #[error("snapshot {id} is damaged: {missing} chunk(s) missing from the store")]
    Damaged { id: SnapshotId, missing: usize },
    #[error("{reason}")]
    NoSnapshotAtTime { reason: String },
    #[error(
        "snapshot {id}, the newest at that time, is damaged: {missing} chunk(s) missing from the store; {}",
        match instead {
            Some((older, at)) => format!("the next older one, {older} (taken {}), is whole: give its id to use it", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => "no older snapshot is whole".into(),
        }
    )]
    DamagedChoice {
        id: SnapshotId,
        missing: usize,
        instead: Option<(SnapshotId, chrono::DateTime<chrono::Utc>)>,
    },
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
    /// `rescue` cannot make a database that opens (an encrypted one, one
    /// from a newer DuckDB, nothing left to build one from).
    #[error("cannot rescue the database: {reason}")]
    Unrescuable { reason: String },
    /// An in-place restore failed and the previous database was put back.
    #[error("restore failed: {cause}; the previous database was put back")]
    RolledBack {
        #[source]
        cause: Box<OpError>,
    },
    /// An in-place restore failed, and so did putting the previous
    /// database back: the journal says where every file is.
    #[error(
        "restore failed: {cause}; rolling back ALSO failed: {rollback}; the journal {} describes the files",
        journal.display()
    )]
    RollbackFailed {
        cause: Box<OpError>,
        #[source]
        rollback: RecoverError,
        journal: PathBuf,
    },
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error("not confirmed: {0}")]
    NotConfirmed(String),
    #[error(transparent)]
    Offsite(#[from] crate::offsite::OffsiteError),
    #[error(transparent)]
    Compare(#[from] crate::database::compare::CompareError),
    #[error(transparent)]
    Point(crate::archive::points::PointError),
    #[error("verification found problems in {problems} of {checked} snapshot(s)")]
    VerifyFailed { checked: usize, problems: usize },
    #[error(
        "the store {} belongs to the database {}, not to {}: two projects must not share a store — give this project its own store.dir, or, if this project's database moved or was copied here on purpose, make the store this database's with `ducksnap adopt`",
        store.display(), owner.display(), database.display()
    )]
    ForeignStore {
        store: PathBuf,
        owner: PathBuf,
        database: PathBuf,
    },
}

impl OpError {
    /// The error's code in the one table ([`ErrorCode`]): its wire code and
    /// its exit code.
    pub fn code(&self) -> ErrorCode {
        match self {
            OpError::Config(_)
            | OpError::InvalidId(_)
            | OpError::InvalidArgument { .. }
            | OpError::Exists { .. }
            | OpError::NotConfirmed(_) => ErrorCode::InvalidArgument,
            OpError::Capture(e) => capture_code(e),
            OpError::Store(e) => store_code(e),
            OpError::NoMatch { .. } => ErrorCode::NotFound,
            OpError::NoSnapshotAtTime { .. } => ErrorCode::NoSnapshotAtTime,
            OpError::Damaged { .. }
            | OpError::DamagedChoice { .. }
            | OpError::VerifyFailed { .. } => ErrorCode::Damaged,
            OpError::NoSpace { .. } => ErrorCode::NoSpace,
            OpError::Offsite(e) => offsite_code(e),
            OpError::Point(e) => match e {
                crate::archive::points::PointError::NotFound(_) => ErrorCode::NotFound,
                crate::archive::points::PointError::Unprotected { .. } => {
                    ErrorCode::NoSnapshotAtTime
                }
                crate::archive::points::PointError::Damaged { .. } => ErrorCode::Damaged,
                crate::archive::points::PointError::Store(e) => store_code(e),
            },
            OpError::Compare(e) => compare_code(e),
            OpError::Disabled { .. } => ErrorCode::Disabled,
            OpError::InUse { .. } => ErrorCode::InUse,
            OpError::Unrescuable { .. } => ErrorCode::Unrescuable,
            OpError::ForeignStore { .. } => ErrorCode::WrongDatabase,
            OpError::Io { .. }
            | OpError::RestoreFailed { .. }
            | OpError::RolledBack { .. }
            | OpError::RollbackFailed { .. }
            | OpError::Recover(_) => ErrorCode::Failed,
        }
    }

    /// The process exit code (README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        self.code().exit_code()
    }
}

/// Offsite failures in the one table: setup and key problems are the
/// config's (2), an object that fails its seal or checks is damage (6), the
/// network and the server are failures (1).
fn capture_code(e: &CaptureError) -> ErrorCode {
    match e {
        CaptureError::Missing { .. } | CaptureError::NotAFile { .. } | CaptureError::Header(_) => {
            ErrorCode::DatabaseMissing
        }
        CaptureError::Inconsistent { .. } => ErrorCode::Busy,
        CaptureError::NoSpace { .. } => ErrorCode::NoSpace,
        CaptureError::Io { .. } | CaptureError::Store(_) | CaptureError::Check { .. } => {
            ErrorCode::Failed
        }
    }
}

fn store_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::NotFound { .. } => ErrorCode::NotFound,
        StoreError::GcRefused { .. }
        | StoreError::Link { .. }
        | StoreError::ChunkMissing { .. }
        | StoreError::ChunkCorrupt { .. }
        | StoreError::BadManifest { .. } => ErrorCode::Damaged,
        StoreError::Io { .. } | StoreError::Format { .. } => ErrorCode::Failed,
    }
}

fn compare_code(e: &crate::database::compare::CompareError) -> ErrorCode {
    use crate::database::compare::CompareError as E;
    match e {
        E::DuckDb { .. } => ErrorCode::Failed,
        E::NoSuchTable { .. }
        | E::AmbiguousTable { .. }
        | E::NoSuchColumn { .. }
        | E::Key { .. } => ErrorCode::InvalidArgument,
    }
}

fn offsite_code(e: &crate::offsite::OffsiteError) -> ErrorCode {
    use crate::offsite::OffsiteError as E;
    use crate::offsite::seal::SealError;
    match e {
        E::NotConfigured | E::Setup { .. } | E::WrongKey | E::KeyMissing(_) | E::NotInitialized => {
            ErrorCode::InvalidArgument
        }
        E::Seal(SealError::Key { .. }) => ErrorCode::InvalidArgument,
        E::Seal(SealError::Object { .. }) | E::BadRecord { .. } => ErrorCode::Damaged,
        // A missing bucket is the remote's state, as before: exit 1.
        E::Remote { .. }
        | E::Layout(_)
        | E::NoBucket { .. }
        | E::NoDirectory(_)
        | E::NotAnObject { .. } => ErrorCode::Failed,
    }
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

/// One store, one database: checks the store's owner record
/// ([`crate::store::owner`]) against the configured database. No record
/// and the database exists — the store is claimed (stores made before the
/// record existed, and new ones); the record names the database's real
/// path — this project's store; another path but the same device and inode
/// — the project moved with `mv`, the record follows it; anything else —
/// refused, naming both databases (exit 2; `ducksnap adopt` hands the store
/// over on purpose).
pub(crate) fn check_owner(ctx: &Ctx, store: &Store) -> Result<(), OpError> {
    let db = database_path(ctx)?;
    let recorded = store.owner()?;
    match recorded {
        Some(o) if o.same_path(&db) => {
            // A restore replaces the file (a new inode): keep the record
            // current so that a later move is still recognised.
            if !o.same_file(&db)
                && db.is_file()
                && let Ok(now) = Owner::of(&db, Some(o.store_id.clone()))
            {
                write_owner(store, &now);
            }
            Ok(())
        }
        Some(o) if db.is_file() && o.same_file(&db) => {
            tracing::info!(event = "store.owner_moved", store = %store.root().display(), from = %o.database.display(), to = %db.display(), "the database moved; the store follows it");
            if let Ok(now) = Owner::of(&db, Some(o.store_id)) {
                write_owner(store, &now);
            }
            Ok(())
        }
        Some(o) => Err(OpError::ForeignStore {
            store: store.root().to_path_buf(),
            owner: o.database,
            database: db,
        }),
        None if db.is_file() => {
            if let Ok(now) = Owner::of(&db, None) {
                tracing::info!(event = "store.owner_recorded", store = %store.root().display(), database = %db.display(), "the store now records the database it belongs to");
                write_owner(store, &now);
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// A record that cannot be written (a read-only store) leaves the check
/// to the next writer; it never fails the operation.
fn write_owner(store: &Store, owner: &Owner) {
    if let Err(e) = store.set_owner(owner) {
        tracing::debug!(event = "store.owner_write_failed", error = %e, "could not write the store's owner record");
    }
}

pub(crate) fn open_store(ctx: &Ctx, create: bool) -> Result<Store, OpError> {
    // A restore that a crash interrupted is undone before anything else
    // looks at the database.
    journal::recover(&database_path(ctx)?)?;
    let store = Store::open(
        &ctx.config.store.dir,
        create,
        ctx.config.store.compression_level,
    )?;
    check_owner(ctx, &store)?;
    Ok(store)
}

/// The store of a local-mode operation on an existing snapshot: the disabled
/// error in cloud mode, not-found when no store exists yet.
pub(crate) fn store_for(ctx: &Ctx, given: &str) -> Result<Store, OpError> {
    if ctx.detection.is_cloud() {
        return Err(OpError::Disabled {
            reason: environment::disabled_message(&ctx.detection),
        });
    }
    if !crate::store::Store::exists_at(&ctx.config.store.dir) {
        return Err(OpError::NoMatch {
            given: format!("{given:?}"),
            store: ctx.config.store.dir.clone(),
            hint: "; there is no store yet (no snapshot was taken)".into(),
        });
    }
    open_store(ctx, false)
}

/// Fails unless `dir`'s file system has `needed` bytes free; `what` says
/// what they are for (the message names exactly what was counted).
pub(crate) fn check_space_at(dir: &Path, needed: u64, what: &'static str) -> Result<(), OpError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| OpError::Io {
        op: "query free space of",
        path: dir.to_path_buf(),
        source: e.into(),
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
