//! Restore points read from the archive: every archived commit boundary
//! that a base snapshot can replay ([`timeline`]), the stretches none can
//! (unprotected windows, with their cause), a point checked and read
//! ([`prepare`]: what `show`, `diff` and `export` reassemble), and a point
//! made into a snapshot-shaped manifest that the restore paths take as they
//! take any snapshot ([`materialize`]).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::database::wal;
use crate::id::SnapshotId;
use crate::store::{
    CheckInfo, CheckStatus, ChunkRef, FileEntry, FileHash, Manifest, Store, StoreError, StoreLock,
    chunk_list_hash,
};

use super::disk::Archive;
use super::record::{CloseReason, Generation, PointId};

/// One commit a restore can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitPoint {
    pub id: String,
    /// When ducksnap saw the commit (it was made at or before).
    pub at: DateTime<Utc>,
    /// The snapshot whose database image it is replayed onto.
    pub base: SnapshotId,
    /// `commit`, or `checkpoint`: the state a checkpoint wrote (the WAL
    /// cut at its header) — where commits that skipped the WAL (a large
    /// commit that triggered the checkpoint) become reachable.
    pub kind: &'static str,
    /// A marker here (a `pre-delete` request answered by a restore point):
    /// its reason and label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the marker was recorded, and whether it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

impl CommitPoint {
    /// The point at boundary `end` of `g`, with its marker if it has one.
    fn of(
        g: &Generation,
        end: u64,
        at: DateTime<Utc>,
        base: &SnapshotId,
        kind: &'static str,
    ) -> CommitPoint {
        let mark = g.marks.iter().rev().find(|m| m.end == end);
        CommitPoint {
            id: g.point(end).to_string(),
            at,
            base: base.clone(),
            kind,
            reason: mark.map(|m| m.reason.clone()),
            label: mark.and_then(|m| m.label.clone()),
            marked_at: mark.map(|m| m.at),
            pinned: mark.is_some_and(|m| m.pinned),
        }
    }
}

/// A stretch of commits no restore can reach, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Commits inside it that ducksnap saw (0: it did not see them).
    pub commits: u64,
    pub cause: String,
}

/// Every restore point and every unprotected window, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub points: Vec<CommitPoint>,
    pub unprotected: Vec<Window>,
}

/// The restore points and unprotected windows of `gens`. `snapshots`
/// (each one's time and the checkpoint iteration of the database image it
/// captured) are the evidence of checkpoints after the newest generation.
pub fn timeline(gens: &[Generation], snapshots: &[(DateTime<Utc>, u64)]) -> Timeline {
    let mut t = Timeline::default();
    // In the order ducksnap saw them (ids are times to the second only).
    let mut gens: Vec<&Generation> = gens.iter().collect();
    gens.sort_by_key(|g| (g.started_at, g.id.clone()));
    // Checkpoint iterations no followed WAL belonged to: the WAL of each
    // lived and went (a checkpoint) between two passes of the tailer, or
    // there was none (a checkpoint with nothing to write). Either way no
    // commit of it can be restored on its own: only the state after.
    let mut by_iteration: Vec<&Generation> = gens.clone();
    by_iteration.sort_by_key(|g| (g.db_iteration, g.started_at));
    for w in by_iteration.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.db_iteration > a.db_iteration + 1
            && let Some(closed) = &a.closed
        {
            t.unprotected.push(unseen(
                closed.at,
                b.started_at,
                a.db_iteration,
                b.db_iteration,
            ));
        }
    }
    // After the newest: no later record says so, but a snapshot of a
    // later checkpoint's image does (the app's last WAL went between two
    // passes, and the daemon took an image of the state after it).
    if let Some(a) = by_iteration.last()
        && let Some(closed) = &a.closed
        && let Some((at, it)) = snapshots
            .iter()
            .filter(|(at, it)| *it > a.db_iteration + 1 && *at >= closed.at)
            .min_by_key(|(at, _)| *at)
    {
        t.unprotected
            .push(unseen(closed.at, *at, a.db_iteration, *it));
    }
    for &g in &gens {
        let mut open: Option<Window> = None;
        // Seen when the WAL of the iteration before went (that
        // checkpoint), if ducksnap followed it, else when this one
        // appeared; never before the last commit it holds.
        let before = gens
            .iter()
            .rev()
            .find(|p| p.db_iteration + 1 == g.db_iteration && p.started_at <= g.started_at);
        let mut at = before
            .and_then(|p| p.closed.as_ref())
            .map_or(g.started_at, |c| c.at.min(g.started_at));
        if let Some(last) = before.and_then(|p| p.commits.last()) {
            at = at.max(last.at);
        }
        match g.base_for(g.header_len()) {
            Some(b) => t.points.push(CommitPoint::of(
                g,
                g.header_len(),
                at,
                &b.snapshot,
                "checkpoint",
            )),
            // The state the checkpoint wrote has no image: what it alone
            // holds (a commit that skipped the WAL, commits the tailer had
            // not read when the WAL went) cannot be restored.
            None => t.unprotected.push(Window {
                from: before
                    .and_then(|p| p.commits.last())
                    .map_or(at, |c| c.at),
                to: g.started_at,
                commits: 0,
                cause: format!(
                    "no snapshot was taken of the state checkpoint iteration {} wrote: commits only it holds cannot be restored",
                    g.db_iteration
                ),
            }),
        }
        // The last optimistic commit so far, tracked here rather than
        // looked up per boundary (which costs the generation's length).
        let mut need = 0;
        for c in &g.commits {
            if c.optimistic {
                need = c.end;
            }
            if c.checkpoint {
                continue;
            }
            match g.base_after(need) {
                Some(b) => {
                    t.unprotected.extend(open.take());
                    t.points
                        .push(CommitPoint::of(g, c.end, c.at, &b.snapshot, "commit"));
                }
                None => {
                    let w = open.get_or_insert_with(|| Window {
                        from: c.at,
                        to: c.at,
                        commits: 0,
                        cause: cause(g, c.end),
                    });
                    w.to = c.at;
                    w.commits += 1;
                }
            }
        }
        t.unprotected.extend(open.take());
        t.unprotected.extend(closing_window(g));
    }
    t.points.sort_by_key(|a| a.at);
    t.unprotected.sort_by_key(|a| a.from);
    t
}

/// The window of checkpoint iterations strictly between `a` and `b`, seen
/// to have gone by between `from` and `to`.
fn unseen(from: DateTime<Utc>, to: DateTime<Utc>, a: u64, b: u64) -> Window {
    Window {
        from,
        to,
        commits: 0,
        cause: format!(
            "checkpoint iterations {}..{} had no WAL ducksnap could read (it went before the archiver read it, none was written, or its archive record is gone): commits made then are only in the state after",
            a + 1,
            b - 1
        ),
    }
}

/// What a closed generation lost at its end, if anything: from its last
/// archived commit (or its start) to when it closed.
fn closing_window(g: &Generation) -> Option<Window> {
    let closed = g.closed.as_ref()?;
    let from = g.commits.last().map_or(g.started_at, |c| c.at);
    let cause = if closed.why == CloseReason::Lost {
        // Nobody followed the WAL from the last commit archived until
        // ducksnap came back and found it changed.
        "ducksnap was not following the WAL (the daemon was not running, or archiving was off): commits made then are only in the states after".into()
    } else if matches!(closed.why, CloseReason::Gone | CloseReason::Truncated)
        && !g.commits.last().is_some_and(|c| c.checkpoint)
    {
        // A WAL ends with DuckDB's checkpoint marker when a checkpoint
        // removes it: without one archived, the tailer did not read its
        // end before it went (the commits after the last one archived
        // are only in the state after).
        format!(
            "the WAL went before ducksnap read its end ({}): commits after the last one archived are only in the state after",
            closed.why
        )
    } else if closed.unarchived > 0 {
        format!(
            "{} bytes of the WAL were not archived before it ended ({})",
            closed.unarchived, closed.why
        )
    } else {
        return None;
    };
    Some(Window {
        from,
        to: closed.at,
        commits: 0,
        cause,
    })
}

fn cause(g: &Generation, end: u64) -> String {
    let need = g.needs_image_after(end);
    if need == 0 {
        "no snapshot of the database image this WAL belongs to was taken before the next checkpoint"
            .into()
    } else {
        "a bulk insert wrote its rows into the database file (an optimistic write), and no snapshot was taken after it before the next checkpoint"
            .into()
    }
}

/// The committed part of snapshot `m`'s WAL: up to the end of its last
/// complete commit. What lies past it (an entry torn when the app was
/// killed, an uncommitted tail) is not part of the image's history — the
/// app's next open may cut it and write other bytes there — so it is
/// neither compared with the archive nor counted as what the base holds.
pub(crate) fn base_wal(store: &Store, m: &Manifest) -> Result<Vec<u8>, StoreError> {
    let mut wal = Vec::new();
    for c in m.file("wal").map(|f| &f.chunks[..]).unwrap_or_default() {
        wal.extend(store.read_chunk(c)?);
    }
    if let Ok(s) = wal::scan(&wal) {
        wal.truncate(s.committed_to() as usize);
    }
    Ok(wal)
}

/// Why a restore point cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error(
        "no restore point {0}: no archived WAL generation has a commit ending there (see `ducksnap list --commits`)"
    )]
    NotFound(String),
    #[error("restore point {point} is inside an unprotected window: {cause}")]
    Unprotected { point: String, cause: String },
    #[error(
        "restore point {point} cannot be rebuilt: {reason}{}",
        newest_good.as_ref().map(|p| format!("; the newest good point before it is {p}")).unwrap_or_default()
    )]
    Damaged {
        point: String,
        reason: String,
        newest_good: Option<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The generation and boundary `p` names.
pub fn find<'a>(gens: &'a [Generation], p: &PointId) -> Result<&'a Generation, PointError> {
    gens.iter()
        .find(|g| {
            g.id == p.generation
                && (p.end == g.header_len()
                    || g.commits.iter().any(|c| c.end == p.end && !c.checkpoint))
        })
        .ok_or_else(|| PointError::NotFound(p.to_string()))
}

/// A restore point checked and read: its base snapshot's manifest and the
/// WAL bytes up to the boundary.
pub struct Prepared {
    pub point: PointId,
    /// The base snapshot the WAL is replayed onto.
    pub base: Manifest,
    pub wal: Vec<u8>,
    /// When ducksnap saw the commit (the generation's start for the state
    /// right after a checkpoint).
    pub at: DateTime<Utc>,
}

/// Checks and reads restore point `p`: every segment against its name, the
/// WAL walked to the boundary (each entry's checksum), and the first base
/// whose own WAL bytes agree with the archive's.
pub fn prepare(
    store: &Store,
    archive: &Archive,
    g: &Generation,
    p: &PointId,
) -> Result<Prepared, PointError> {
    let shown = p.to_string();
    let Some(base) = g.base_for(p.end) else {
        return Err(PointError::Unprotected {
            point: shown,
            cause: cause(g, p.end),
        });
    };
    let damaged = |reason: String| PointError::Damaged {
        point: shown.clone(),
        reason,
        newest_good: newest_good_before(archive, g, p.end),
    };
    let bytes = archive
        .wal_prefix(g, p.end)
        .map_err(|e| damaged(e.to_string()))?;
    let scan = wal::scan(&bytes).map_err(|e| damaged(format!("its WAL header: {e}")))?;
    let boundary = p.end == scan.header.len || scan.walked.commits.iter().any(|c| c.end == p.end);
    if !boundary || scan.walked.end != wal::End::Clean {
        return Err(damaged(format!(
            "the archived WAL does not walk to a commit boundary at {} ({:?})",
            p.end, scan.walked.end
        )));
    }
    // The first base that serves the boundary and whose own WAL bytes
    // agree with the archive's (one that does not is not of this history).
    let need = g.needs_image_after(p.end);
    let mut m = None;
    for b in g.bases.iter().filter(|b| b.wal_len >= need) {
        let cand = store.load_manifest(&b.snapshot)?;
        let theirs = base_wal(store, &cand)?;
        // As far as it was recorded for: past that, its WAL may hold what
        // the archive's history does not (a cut checkpoint marker).
        let n = theirs.len().min(bytes.len()).min(b.wal_len as usize);
        if theirs[..n] == bytes[..n] {
            m = Some(cand);
            break;
        }
        tracing::warn!(event = "restore.base_mismatch", snapshot = %b.snapshot, point = %shown, "a base snapshot's WAL differs from the archived WAL; trying another");
    }
    let Some(m) = m else {
        return Err(damaged(format!(
            "the WAL of every base snapshot that could serve it (first {}) differs from the archived WAL",
            base.snapshot
        )));
    };
    let at = g
        .commits
        .iter()
        .find(|c| c.end == p.end)
        .map_or(g.started_at, |c| c.at);
    Ok(Prepared {
        point: p.clone(),
        base: m,
        wal: bytes,
        at,
    })
}

impl Prepared {
    /// The database file of this state at `dir/name`, with its WAL beside
    /// it (what DuckDB replays when it opens it), for reading.
    pub fn reassemble(&self, store: &Store, dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
        let db = dir.join(name);
        let f = self
            .base
            .file("db")
            .ok_or_else(|| StoreError::BadManifest {
                path: store.manifest_path(&self.base.id),
                reason: "no database file".into(),
            })?;
        store.reassemble_file(f, &db)?;
        let wal = crate::database::duckfile::wal_path(&db);
        let io = |source| StoreError::Io {
            op: "write",
            path: wal.clone(),
            source,
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&wal)
            .map_err(io)?;
        out.write_all(&self.wal).map_err(io)?;
        Ok(db)
    }

    /// Bytes the state takes when reassembled.
    pub fn size(&self) -> u64 {
        self.base.file("db").map_or(0, |f| f.size) + self.wal.len() as u64
    }
}

/// Restore point `p` as a manifest the restore paths take: the base
/// snapshot's database file, and as its WAL the archived bytes up to the
/// boundary, stored as chunks (the caller holds the store lock, so garbage
/// collection cannot take them before the restore reads them), after the
/// checks of [`prepare`].
pub fn materialize(
    store: &Store,
    lock: &StoreLock,
    archive: &Archive,
    g: &Generation,
    p: &PointId,
) -> Result<Manifest, PointError> {
    let shown = p.to_string();
    let Prepared {
        base: m,
        wal: bytes,
        at,
        ..
    } = prepare(store, archive, g, p)?;
    let base = m.id.clone();
    let batch = store.batch(lock);
    let mut z = crate::store::Compressors::default();
    let mut chunks: Vec<ChunkRef> = Vec::new();
    for piece in bytes.chunks(256 << 10) {
        chunks.push(batch.put(piece, &mut z)?.chunk);
    }
    batch.commit()?;
    let wal_entry = FileEntry {
        role: "wal".into(),
        size: bytes.len() as u64,
        hash: chunk_list_hash(&chunks).expect("BLAKE3 names"),
        hash_of: FileHash::ChunkList,
        chunks,
    };
    let mut out = m;
    out.files.retain(|f| f.role == "db");
    out.files.push(wal_entry);
    out.reason = "commit".into();
    out.label = Some(format!("commit {shown} on snapshot {base}"));
    if g.commits.iter().any(|c| c.end == p.end) {
        out.created_at = at;
    }
    out.check = CheckInfo {
        status: CheckStatus::NotVerified,
        reason: Some(
            "a commit restore point: DuckDB checks it only when restored with --check".into(),
        ),
        duckdb_version: out.check.duckdb_version.clone(),
        tables: Vec::new(),
    };
    Ok(out)
}

/// The newest point of `g` before `end` whose segments all read back.
fn newest_good_before(archive: &Archive, g: &Generation, end: u64) -> Option<String> {
    let mut good_to = 0;
    for s in &g.segments {
        if archive.read_segment(&g.id, s).is_err() {
            break;
        }
        good_to = s.to;
    }
    g.commits
        .iter()
        .rev()
        .find(|c| c.end < end && c.end <= good_to && !c.checkpoint && g.base_for(c.end).is_some())
        .map(|c| g.point(c.end).to_string())
}

/// Checks one generation as `verify` does: every segment read back and
/// matched against its name, the WAL walked through every entry's
/// checksum, and every recorded boundary found where the walk ends a
/// commit. The error names the damaged segment (its WAL offsets) and the
/// newest good restore point before it.
pub fn check(archive: &Archive, g: &Generation) -> Result<(), String> {
    let mut bytes = Vec::new();
    for s in &g.segments {
        match archive.read_segment(&g.id, s) {
            Ok(d) => bytes.extend(d),
            Err(e) => {
                return Err(format!(
                    "generation {}: segment {} (WAL bytes {}..{}): {e}{}",
                    g.id,
                    s.hash,
                    s.from,
                    s.to,
                    good_note(archive, g, s.from + 1)
                ));
            }
        }
    }
    if bytes.is_empty() {
        return Ok(());
    }
    let scan =
        wal::scan(&bytes).map_err(|e| format!("generation {}: its WAL header: {e}", g.id))?;
    let ends: std::collections::HashSet<u64> = scan.walked.commits.iter().map(|c| c.end).collect();
    if let Some(c) = g.commits.iter().find(|c| !ends.contains(&c.end)) {
        return Err(format!(
            "generation {}: the archived WAL does not end a commit at {} ({:?}){}",
            g.id,
            c.end,
            scan.walked.end,
            good_note(archive, g, c.end)
        ));
    }
    if scan.walked.end != wal::End::Clean {
        return Err(format!(
            "generation {}: the archived WAL ends {:?}",
            g.id, scan.walked.end
        ));
    }
    Ok(())
}

fn good_note(archive: &Archive, g: &Generation, end: u64) -> String {
    newest_good_before(archive, g, end)
        .map(|p| format!("; the newest good restore point before it is {p}"))
        .unwrap_or_else(|| "; no restore point of this generation before it is good".into())
}
