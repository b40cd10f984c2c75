//! Commit restore points (`archive::points`) where operations take a
//! snapshot (`restore`, and as a [`State`] `show`, `diff` and `export`): a
//! point id (`GENERATION@OFFSET`, from `list --commits`), or
//! `--as-of TIME` when the newest commit the archive can restore at or
//! before TIME is newer than the newest snapshot then — and the listing of
//! `list --commits`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::archive::points::{self, CommitPoint, PointError, Timeline, Window};
use crate::archive::{Archive, Generation, PointId, state};
use crate::ops::context::{Ctx, OpError, open_store};
use crate::ops::select::{Selector, resolve_in};
use crate::store::{Manifest, Store, StoreLock};

/// A commit restore point chosen by what the user gave.
pub(crate) struct Chosen {
    pub archive: Archive,
    pub generation: Generation,
    pub point: PointId,
}

impl Chosen {
    /// The point as a manifest the restore paths take.
    pub fn manifest(&self, store: &Store, lock: &StoreLock) -> Result<Manifest, OpError> {
        Ok(points::materialize(
            store,
            lock,
            &self.archive,
            &self.generation,
            &self.point,
        )?)
    }
}

/// The archive's timeline of `store`, counting only bases still in it.
fn read_timeline(
    ctx: &Ctx,
    store: &Store,
) -> Result<(Archive, Vec<Generation>, Timeline), OpError> {
    let r = state::read(store, ctx.config.store.compression_level)?;
    Ok((r.archive, r.generations, r.timeline))
}

/// The generation `p` names, or why not: a generation whose record (or
/// one of its pages) cannot be read is damaged, not missing.
fn find_point(store: &Store, ctx: &Ctx, p: &PointId) -> Result<(Archive, Generation), OpError> {
    let r = state::read(store, ctx.config.store.compression_level)?;
    match points::find(&r.generations, p) {
        Ok(g) => Ok((r.archive, g.clone())),
        Err(e) => {
            let file = format!("{}.json.zst", p.generation);
            match r.bad.into_iter().find(|b| b.file == file) {
                Some(b) => Err(points::PointError::Damaged {
                    point: p.to_string(),
                    reason: format!(
                        "the record of its WAL generation cannot be read: {}",
                        b.reason
                    ),
                    newest_good: None,
                }
                .into()),
                None => Err(e.into()),
            }
        }
    }
}

/// The commit point `given` selects in `store`, if it selects one.
pub(crate) fn choose(ctx: &Ctx, store: &Store, given: &str) -> Result<Option<Chosen>, OpError> {
    if let Some(p) = PointId::parse(given) {
        let p = p.map_err(|reason| OpError::InvalidArgument {
            what: "restore point",
            reason,
        })?;
        let (archive, g) = find_point(store, ctx, &p)?;
        return Ok(Some(Chosen {
            archive,
            generation: g,
            point: p,
        }));
    }
    let Ok(Selector::AsOf(at)) = Selector::parse(given) else {
        return Ok(None);
    };
    let archive = Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() {
        return Ok(None);
    }
    let (archive, gens, t) = read_timeline(ctx, store)?;
    let Some(best) = t.points.iter().rev().find(|p| p.at <= at) else {
        return Ok(None);
    };
    let snapshot_at = resolve_in(store, &Selector::AsOf(at), given)
        .ok()
        .and_then(|id| store.load_manifest(&id).ok())
        .map(|m| m.created_at);
    if snapshot_at.is_some_and(|s| s >= best.at) {
        return Ok(None);
    }
    let p = PointId::parse(&best.id)
        .expect("a point id")
        .expect("a valid point id");
    let g = points::find(&gens, &p)?.clone();
    Ok(Some(Chosen {
        archive,
        generation: g,
        point: p,
    }))
}

/// One state of the database an operation reads (`show`, `diff`,
/// `export`): a snapshot, or a commit restore point checked and read from
/// the archive.
pub(crate) enum State {
    Snapshot(Manifest),
    Point(points::Prepared),
}

impl State {
    /// The snapshot's manifest, or the base snapshot's a point replays onto.
    pub fn manifest(&self) -> &Manifest {
        match self {
            State::Snapshot(m) => m,
            State::Point(p) => &p.base,
        }
    }

    /// The point's id, for a commit restore point.
    pub fn point(&self) -> Option<String> {
        match self {
            State::Snapshot(_) => None,
            State::Point(p) => Some(p.point.to_string()),
        }
    }

    /// When the snapshot was taken, or ducksnap saw the commit.
    pub fn taken_at(&self) -> DateTime<Utc> {
        match self {
            State::Snapshot(m) => m.created_at,
            State::Point(p) => p.at,
        }
    }

    /// Bytes it takes reassembled.
    pub fn size(&self) -> u64 {
        match self {
            State::Snapshot(m) => m.total_size(),
            State::Point(p) => p.size(),
        }
    }

    /// Whether `other` is the very same state: a snapshot by its files'
    /// hashes, a point by its id.
    pub fn same(&self, other: &State) -> bool {
        match (self, other) {
            (State::Snapshot(a), State::Snapshot(b)) => a.same_files(b),
            (State::Point(a), State::Point(b)) => a.point == b.point,
            (State::Snapshot(_), State::Point(_)) | (State::Point(_), State::Snapshot(_)) => false,
        }
    }

    /// Its database file at `dir/name` (with the files DuckDB opens beside
    /// it), for reading.
    pub fn reassemble(
        &self,
        store: &Store,
        dir: &std::path::Path,
        name: &str,
    ) -> Result<std::path::PathBuf, OpError> {
        Ok(match self {
            State::Snapshot(m) => store.reassemble(m, dir, name)?,
            State::Point(p) => p.reassemble(store, dir, name)?,
        })
    }
}

/// The state `given` names in `store`: a commit restore point (its id, or
/// `as-of:` reaching a commit newer than the newest snapshot then), else a
/// snapshot.
pub(crate) fn state(ctx: &Ctx, store: &Store, given: &str) -> Result<State, OpError> {
    if let Some(c) = choose(ctx, store, given)? {
        let p = points::prepare(store, &c.archive, &c.generation, &c.point)?;
        return Ok(State::Point(p));
    }
    let sel = crate::ops::select::Selector::parse(given)?;
    let id = resolve_in(store, &sel, given)?;
    Ok(State::Snapshot(store.load_manifest(&id)?))
}

/// The commit point `given` selects, if it selects one: its id, when
/// ducksnap saw the commit, and its base snapshot (what the CLI names
/// before it asks, and then gives the daemon as the exact point).
pub fn decide(
    ctx: &Ctx,
    given: &str,
) -> Result<Option<(String, DateTime<Utc>, crate::id::SnapshotId)>, OpError> {
    let store = crate::ops::context::store_for(ctx, given)?;
    let Some(c) = choose(ctx, &store, given)? else {
        return Ok(None);
    };
    let at = c
        .generation
        .commits
        .iter()
        .find(|m| m.end == c.point.end)
        .map(|m| m.at)
        .unwrap_or(c.generation.started_at);
    let base = c
        .generation
        .base_for(c.point.end)
        .map(|b| b.snapshot.clone())
        .ok_or_else(|| {
            OpError::from(PointError::Unprotected {
                point: c.point.to_string(),
                cause: "no base snapshot holds it".into(),
            })
        })?;
    Ok(Some((c.point.to_string(), at, base)))
}

/// The base snapshots of every commit restore point inside the recovery
/// window (`[continuous] window` back from `now`): retention keeps them.
pub fn bases_in_window(
    ctx: &Ctx,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<crate::id::SnapshotId>, OpError> {
    let archive = Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() {
        return Ok(Default::default());
    }
    let r = state::read(store, ctx.config.store.compression_level)?;
    let from = now
        - chrono::Duration::from_std(ctx.config.continuous.window.0)
            .unwrap_or(chrono::Duration::MAX);
    let mut keep: std::collections::HashSet<_> = r
        .timeline
        .points
        .into_iter()
        .filter(|p| {
            p.at >= from
                || p.marked_at
                    .is_some_and(|m| mark_lives(ctx, &p.reason, p.pinned, m, now))
        })
        .map(|p| p.base)
        .collect();
    // A damaged record's points cannot be listed, but its segments may
    // yet be rescued: every base it names is kept, and when it cannot
    // say which, the caller keeps every snapshot.
    for b in r.bad {
        match b.bases {
            Some(bases) => keep.extend(bases),
            None => {
                return Err(OpError::Store(crate::store::StoreError::BadManifest {
                    path: archive.root().join("generations").join(&b.file),
                    reason: b.reason,
                }));
            }
        }
    }
    Ok(keep)
}

/// Whether a marker recorded at `at` for `reason` is still kept: pinned,
/// inside the recovery window, or inside its reason's `keep_within`
/// (`pre-delete`: 14 days by default), as a snapshot of that reason.
fn mark_lives(
    ctx: &Ctx,
    reason: &Option<String>,
    pinned: bool,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let span =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let within = reason
        .as_ref()
        .and_then(|r| ctx.config.retention.reasons.get(r))
        .and_then(|r| r.keep_within)
        .map(|d| span(d.0));
    let window = span(ctx.config.continuous.window.0);
    pinned || now - at < within.map_or(window, |w| w.max(window))
}

/// Removes the archived WAL generations whose every commit is older than
/// the recovery window, and then the segments no record names. Returns
/// how many generations went.
pub fn expire(ctx: &Ctx, store: &Store, now: DateTime<Utc>) -> Result<usize, OpError> {
    let archive = Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() {
        return Ok(0);
    }
    let from = now
        - chrono::Duration::from_std(ctx.config.continuous.window.0)
            .unwrap_or(chrono::Duration::MAX);
    let lock = archive.lock()?;
    let (gens, _) = archive.generations()?;
    let mut n = 0;
    for g in gens {
        let Some(closed) = &g.closed else { continue };
        let marked = g
            .marks
            .iter()
            .any(|m| mark_lives(ctx, &Some(m.reason.clone()), m.pinned, m.at, now));
        if closed.at < from && !marked {
            archive.remove_generation(&lock, &g, now)?;
            n += 1;
        }
    }
    archive.collect(&lock)?;
    Ok(n)
}

/// Continuous archiving in `status`: read from the archive's records and
/// the live WAL, whether or not a daemon runs; with what the daemon's
/// archiver says of itself when the daemon answers.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ContinuousStatus {
    /// `[continuous] enabled`.
    pub enabled: bool,
    /// `[continuous] max_lag`, in seconds.
    #[serde(default)]
    pub max_lag_seconds: u64,
    /// When the newest archived commit was seen.
    pub last_commit: Option<DateTime<Utc>>,
    /// Bytes of the live WAL past what is archived (an open transaction's,
    /// or not read yet); `None` when no WAL is there.
    pub behind_bytes: Option<u64>,
    /// Complete commits among them (`None`: not counted — no WAL, or one
    /// ducksnap cannot walk).
    #[serde(default)]
    pub behind_commits: Option<u64>,
    /// Every one of those commits was written at or before this: it has
    /// waited at least since then.
    #[serde(default)]
    pub behind_since: Option<DateTime<Utc>>,
    /// Why the live WAL is not archived at all (encrypted, or a WAL version
    /// this build does not read): snapshots alone protect the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub unprotected_windows: usize,
    /// When the newest unprotected window ended.
    pub last_unprotected: Option<DateTime<Utc>>,
    /// Archive records that cannot be read.
    pub damaged_records: usize,
    /// The daemon's archiver, when a daemon answered `status`: `None`
    /// otherwise.
    #[serde(default)]
    pub archiver: Option<ArchiverState>,
}

/// The daemon's archiver as it reports itself.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ArchiverState {
    /// It follows the WAL (false: it could not start, see `error`).
    pub running: bool,
    /// Its last error; archiving stays stopped until a pass succeeds.
    pub error: Option<String>,
    /// Since when it has failed.
    pub failing_since: Option<DateTime<Utc>>,
}

/// The archive's state for `status`; `None` with archiving off and no
/// archive.
pub fn status(ctx: &Ctx, store: &Store) -> Result<Option<ContinuousStatus>, OpError> {
    let archive = Archive::of(store, ctx.config.store.compression_level);
    if !archive.exists() && !ctx.config.continuous.enabled {
        return Ok(None);
    }
    let r = state::read(store, ctx.config.store.compression_level)?;
    let s = state::standing(&r, &ctx.config.database.path);
    Ok(Some(ContinuousStatus {
        enabled: ctx.config.continuous.enabled,
        max_lag_seconds: ctx.config.continuous.max_lag.0.as_secs(),
        last_commit: s.last_commit,
        behind_bytes: s.behind.as_ref().map(|b| b.bytes),
        behind_commits: s.behind.as_ref().and_then(|b| b.commits),
        behind_since: s.behind.as_ref().and_then(|b| b.since),
        refused: s.behind.as_ref().and_then(|b| b.refused.clone()),
        unprotected_windows: s.unprotected_windows,
        last_unprotected: s.last_unprotected,
        damaged_records: s.damaged_records,
        archiver: None,
    }))
}

/// What this process's archiver for the configured database says of
/// itself (asked in the daemon, which runs it).
pub fn archiver(ctx: &Ctx) -> ArchiverState {
    match crate::archive::tail::followed(&ctx.config.database.path) {
        Some(t) => {
            let p = t.progress();
            ArchiverState {
                running: true,
                error: p.error,
                failing_since: p.failing_since,
            }
        }
        None => ArchiverState {
            running: false,
            error: Some(
                "the daemon is not following the WAL (its log says why: archive.failed, archive.no_store, archive.no_inotify)".into(),
            ),
            failing_since: None,
        },
    }
}

/// What `list --commits` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CommitListing {
    /// The oldest and newest commit a restore can reach through the
    /// archive.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub points: Vec<CommitPoint>,
    pub unprotected: Vec<Window>,
    /// Archive records that cannot be read (by file name, with why).
    pub damaged: Vec<String>,
}

/// Every commit restore point (since `since`), the recovery window and the
/// unprotected windows.
pub fn commits(ctx: &Ctx, since: Option<DateTime<Utc>>) -> Result<CommitListing, OpError> {
    let store = open_store(ctx, false)?;
    let state::Read {
        bad, timeline: t, ..
    } = state::read(&store, ctx.config.store.compression_level)?;
    let window = t
        .points
        .first()
        .zip(t.points.last())
        .map(|(a, b)| (a.at, b.at));
    let keep = |at: &DateTime<Utc>| since.is_none_or(|s| *at >= s);
    // Snapshots are restore points too (a commit that skipped the WAL, or
    // the last ones before the app closed the database, which checkpoints,
    // are only in the snapshot taken after).
    let mut points = t.points;
    points.extend(store.catalog()?.into_iter().map(|s| CommitPoint {
        id: s.id.to_string(),
        at: s.created_at,
        base: s.id,
        kind: "snapshot",
        reason: Some(s.reason),
        label: s.label,
        marked_at: None,
        pinned: s.pinned,
    }));
    points.sort_by_key(|p| p.at);
    Ok(CommitListing {
        window,
        points: points.into_iter().filter(|p| keep(&p.at)).collect(),
        unprotected: t.unprotected.into_iter().filter(|w| keep(&w.to)).collect(),
        damaged: bad
            .into_iter()
            .map(|b| format!("{}: {}", b.file, b.reason))
            .collect(),
    })
}

impl From<PointError> for OpError {
    fn from(e: PointError) -> OpError {
        match e {
            PointError::Store(e) => OpError::Store(e),
            other => OpError::Point(other),
        }
    }
}
