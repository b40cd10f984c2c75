//! The tailer: follows `<db>.wal` and `<db>.wal.checkpoint` as the app
//! commits and archives every byte up to the end of the last complete
//! commit ([`Engine`]), on a thread of its own woken by inotify on the
//! WAL's directory (no polling) and by snapshots offered as base images
//! ([`Tailer`]).
//!
//! It only ever opens DuckDB's files read-only and takes no lock on them:
//! the app cannot feel it. Each WAL file is one generation, told apart by
//! inode and header; a WAL that disappears, shrinks below what was
//! archived, or whose archived bytes change closes its generation (with
//! why), and whatever appears next starts a new one — histories are never
//! mixed. A damaged entry closes the generation after the commits before
//! it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};

use crate::database::duckfile::{self, Header};
use crate::database::wal::{self, End};
use crate::id::SnapshotId;
use crate::store::{Store, StoreError};

use super::disk::Archive;
use super::record::{
    BaseMark, CloseReason, Closed, CommitMark, GENERATION_FORMAT, Generation, Mark, PointId,
    Segment,
};

/// Segments are filled up to this many bytes; the last, partly filled one
/// is rewritten as commits arrive, so a commit a second does not leave a
/// small file per commit.
pub const SEGMENT_TARGET: u64 = 256 << 10;
/// Bytes before the archived offset compared on every pass: a WAL
/// rewritten below it is caught.
const GUARD: u64 = 4096;

/// What the tailer tells whoever runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A snapshot now: a generation started, or an optimistic commit was
    /// archived and only an image taken after it can replay it.
    Base,
    /// Archiving began to fail, or works again: what the daemon reports
    /// of itself changed.
    Health,
}

/// A named restore point asked for (`Tailer::mark`).
#[derive(Debug, Clone)]
pub struct MarkRequest {
    pub reason: String,
    pub label: Option<String>,
    pub pinned: bool,
}

/// A marker recorded: its point, and the snapshot it is replayed onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub point: PointId,
    pub at: DateTime<Utc>,
    pub base: SnapshotId,
}

/// What the tailer has done, for `status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Commit boundaries archived since the tailer started.
    pub commits: u64,
    /// When the last one was archived.
    pub last_commit: Option<DateTime<Utc>>,
    /// Bytes of the live WAL not yet archived at the last pass (an open
    /// transaction's, or not yet read).
    pub behind: u64,
    /// The last error (archiving stopped until the next pass succeeds).
    pub error: Option<String>,
    /// Since when passes have failed (with `error`).
    pub failing_since: Option<DateTime<Utc>>,
}

impl Progress {
    /// Notes a pass's outcome at `now`.
    fn note(&mut self, outcome: Result<(), String>, now: DateTime<Utc>) {
        match outcome {
            Ok(()) => {
                self.error = None;
                self.failing_since = None;
            }
            Err(e) => {
                self.failing_since.get_or_insert(now);
                self.error = Some(e);
            }
        }
    }
}

/// One WAL file being followed.
struct Followed {
    g: Generation,
    file: File,
    ino: (u64, u64),
    /// Size at the last pass.
    seen: u64,
    /// The last segment's bytes, while it is shorter than the target.
    open: Option<Vec<u8>>,
    /// The header bytes and the bytes `[archived_to - GUARD, archived_to)`.
    header: Vec<u8>,
    guard: Vec<u8>,
    /// The record has been written at least once.
    written: bool,
    /// When a pass first saw each commit boundary not archived yet (a
    /// pass that could not archive it — a full disk — still saw it: its
    /// time is that pass's, not the later one that archives it).
    first_seen: std::collections::BTreeMap<u64, DateTime<Utc>>,
}

/// A snapshot without a WAL offered before its generation appeared.
struct Pending {
    snapshot: SnapshotId,
    iteration: u64,
    db_ino: Option<(u64, u64)>,
}

/// The archiving state machine, driven by [`Engine::pass`].
pub struct Engine {
    db: PathBuf,
    store: Store,
    archive: Archive,
    following: Vec<Followed>,
    /// Closed generations kept for bases offered late.
    recent: Vec<Generation>,
    pending: Option<Pending>,
    /// Inodes refused (encrypted or an unknown version), not read again.
    refused: Vec<(u64, u64)>,
    resumed: bool,
    /// The database file and its header's checkpoint iteration at the
    /// last pass, and whether this pass asked for a base already.
    db_seen: Option<((u64, u64), u64)>,
    asked_base: bool,
    pub progress: Progress,
    want: Box<dyn FnMut(Want) + Send>,
}

/// A record whose link could not be given its predecessor's hash now.
fn link_failed(id: &SnapshotId, e: &StoreError) {
    tracing::warn!(event = "archive.link_failed", generation = %id, error = %e, "could not write the hash of the generation before this one yet; it goes out with this record's next write");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ino_of(f: &File) -> std::io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

fn read_at(f: &File, from: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    let n = crate::store::read_full_at(f, &mut buf, from)?;
    buf.truncate(n);
    Ok(buf)
}

impl Engine {
    /// An engine for the database at `db` (its real path: the WAL is beside
    /// the real file), archiving into `store`'s archive.
    pub fn new(db: &Path, store: Store, level: i32, want: Box<dyn FnMut(Want) + Send>) -> Engine {
        let db = crate::database::dbpath::real_path(db).unwrap_or_else(|_| db.to_path_buf());
        Engine {
            archive: Archive::of(&store, level),
            db,
            store,
            following: Vec::new(),
            recent: Vec::new(),
            pending: None,
            refused: Vec::new(),
            resumed: false,
            db_seen: None,
            asked_base: false,
            progress: Progress::default(),
            want,
        }
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// This engine started over (after a panic: nothing it held in memory
    /// is trusted; the next pass resumes from the records).
    fn fresh(self) -> Engine {
        Engine {
            following: Vec::new(),
            recent: Vec::new(),
            pending: None,
            refused: Vec::new(),
            resumed: false,
            db_seen: None,
            ..self
        }
    }

    /// The WAL files followed, by role and path.
    fn paths(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("wal", duckfile::wal_path(&self.db)),
            ("wal.checkpoint", duckfile::wal_checkpoint_path(&self.db)),
        ]
    }

    /// Reads whatever the WAL files gained and archives every complete
    /// commit; notices generations that ended and ones that began.
    pub fn pass(&mut self, now: DateTime<Utc>) {
        let outcome = self.try_pass(now).map_err(|e| e.to_string());
        if let Err(e) = &outcome
            && self.progress.error.as_ref() != Some(e)
        {
            tracing::error!(event = "archive.failed", error = %e, "WAL archiving failed; it is retried at the next change, and every few seconds");
        }
        if outcome.is_ok() && self.progress.error.is_some() {
            tracing::info!(event = "archive.recovered", "WAL archiving works again");
        }
        let was_failing = self.progress.error.is_some();
        self.progress.note(outcome, now);
        if was_failing != self.progress.error.is_some() {
            (self.want)(Want::Health);
        }
    }

    fn want_base(&mut self) {
        self.asked_base = true;
        (self.want)(Want::Base);
    }

    /// A checkpoint whose WAL ducksnap never saw (it came and went
    /// between two passes) still changes the database header: its state
    /// gets an image (the only one that holds its commits), and that image
    /// is what reports the iteration as unprotected when no later WAL does
    /// (`points::timeline`).
    fn notice_checkpoint(&mut self) {
        let now = File::open(&self.db).ok().and_then(|f| {
            let ino = ino_of(&f).ok()?;
            Some((ino, Header::read_at(&f, &self.db).ok()?.iteration))
        });
        let Some(now) = now else { return };
        let before = self.db_seen.replace(now);
        // A followed WAL's close asks for one itself (the header is
        // written before the WAL goes: this pass may see it first).
        if before.is_some_and(|b| b != now) && self.following.is_empty() && !self.asked_base {
            self.want_base();
        }
    }

    fn try_pass(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.asked_base = false;
        let lock = self.archive.lock()?;
        if !self.resumed {
            self.resumed = true;
            self.resume(&lock, now)?;
        }
        // Files at the WAL paths now.
        let mut present = Vec::new();
        for (role, path) in self.paths() {
            let Ok(f) = File::open(&path) else { continue };
            let Ok(ino) = ino_of(&f) else { continue };
            present.push(ino);
            if self.following.iter().any(|o| o.ino == ino) || self.refused.contains(&ino) {
                continue;
            }
            self.start(&lock, role, f, ino, now)?;
        }
        // Every followed file is read even when one cannot be archived (a
        // full disk): each commit's time is when a pass first saw it.
        let mut failed = None;
        let mut i = 0;
        while i < self.following.len() {
            let gone = !present.contains(&self.following[i].ino);
            // A deleted WAL is still read through the open descriptor: its
            // last commits are archived before it is closed.
            let closed = match self.advance(&lock, i, now) {
                Ok(c) => c,
                Err(e) => {
                    failed.get_or_insert(e);
                    i += 1;
                    continue;
                }
            };
            let why = closed.or(gone.then_some(CloseReason::Gone));
            let Some(why) = why else {
                i += 1;
                continue;
            };
            if let Err(e) = self.close(&lock, i, why, now) {
                failed.get_or_insert(e);
                i += 1;
            }
        }
        self.notice_checkpoint();
        self.progress.behind = self
            .following
            .iter()
            .map(|o| o.seen.saturating_sub(o.g.archived_to()))
            .sum();
        failed.map_or(Ok(()), Err)
    }

    /// At the first pass: generations left open by an earlier run are
    /// followed again when their file is still there with every archived
    /// byte unchanged, and closed as lost otherwise.
    fn resume(
        &mut self,
        lock: &super::disk::ArchiveLock,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (gens, _) = self.archive.generations()?;
        // The hashes the open records' links still lack.
        let lacking: Vec<&SnapshotId> = gens
            .iter()
            .filter(|g| g.closed.is_none())
            .filter_map(|g| g.prev.as_ref().filter(|l| l.hash.is_none()))
            .map(|l| &l.id)
            .collect();
        let mut closed: std::collections::HashMap<SnapshotId, String> = gens
            .iter()
            .filter(|g| g.closed.is_some() && lacking.contains(&&g.id))
            .map(|g| (g.id.clone(), g.history_hash()))
            .collect();
        for g in gens.into_iter().filter(|g| g.closed.is_none()) {
            let path = match g.file.as_str() {
                "wal" => duckfile::wal_path(&self.db),
                _ => duckfile::wal_checkpoint_path(&self.db),
            };
            let again = File::open(&path).ok().and_then(|f| {
                let ino = ino_of(&f).ok()?;
                (ino == g.inode).then_some((f, ino))
            });
            let mut g = g;
            if let Some((file, ino)) = again {
                let hlen = g.header_len();
                let header = read_at(&file, 0, hlen).unwrap_or_default();
                let to = g.archived_to();
                let from = to.saturating_sub(GUARD).max(hlen.min(to));
                let guard = read_at(&file, from, to - from).unwrap_or_default();
                let archived = self.archive.wal_prefix(&g, to).unwrap_or_default();
                if hex(&header) == g.header
                    && archived.len() as u64 == to
                    && archived[from as usize..] == guard[..]
                {
                    let open = g
                        .segments
                        .last()
                        .filter(|s| s.to - s.from < SEGMENT_TARGET)
                        .map(|s| archived[s.from as usize..].to_vec());
                    tracing::info!(event = "archive.resumed", generation = %g.id, offset = to, "following the WAL again where the archive left it");
                    self.following.push(Followed {
                        g,
                        file,
                        ino,
                        seen: to,
                        open,
                        header,
                        guard,
                        written: true,
                        first_seen: Default::default(),
                    });
                    continue;
                }
            }
            g.closed = Some(Closed {
                at: now,
                why: CloseReason::Lost,
                unarchived: 0,
            });
            self.archive.write_generation(lock, &mut g)?;
            tracing::warn!(event = "archive.lost", generation = %g.id, "a WAL archived by an earlier run changed while ducksnap was not following it: commits in between are not archived");
            self.seal_links(lock, &g);
            closed.insert(g.id.clone(), g.history_hash());
        }
        // A link left without its hash by a run that stopped between a
        // close and the next write.
        for o in self.following.iter_mut() {
            if let Some(l) = &mut o.g.prev
                && l.hash.is_none()
                && let Some(h) = closed.get(&l.id)
            {
                l.hash = Some(h.clone());
                if let Err(e) = self.archive.write_generation(lock, &mut o.g) {
                    link_failed(&o.g.id, &e);
                }
            }
        }
        Ok(())
    }

    /// Starts following a WAL file not seen before.
    fn start(
        &mut self,
        _lock: &super::disk::ArchiveLock,
        role: &str,
        file: File,
        ino: (u64, u64),
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let head = read_at(&file, 0, 256).unwrap_or_default();
        let header = match wal::header(&head) {
            Ok(h) => h,
            // Not written yet: the next change reads it again.
            Err(wal::WalError::Short(_)) => return Ok(()),
            Err(wal::WalError::Header(_)) if head.len() < 256 => return Ok(()),
            Err(e) => {
                tracing::warn!(event = "archive.refused", wal = role, error = %e, "this WAL cannot be archived; snapshots still protect the database");
                self.refused.push(ino);
                return Ok(());
            }
        };
        // The database header read on both sides of checking that the WAL
        // is still the one at its path: a checkpoint in between is retried.
        let db_file = File::open(&self.db).ok();
        let read_db = || {
            db_file
                .as_ref()
                .and_then(|f| Header::read_at(f, &self.db).ok())
        };
        let db_ino = db_file.as_ref().and_then(|f| ino_of(f).ok());
        let before = read_db();
        let path = self
            .paths()
            .into_iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| p);
        let still = path
            .and_then(|p| File::open(p).ok())
            .and_then(|f| ino_of(&f).ok())
            == Some(ino);
        let after = read_db();
        let db_iteration = match header.iteration {
            Some(i) => i,
            None => match (before, after) {
                (Some(a), Some(b)) if a.iteration == b.iteration && still => a.iteration,
                _ => return Ok(()),
            },
        };
        let g = Generation {
            format: GENERATION_FORMAT,
            id: SnapshotId::generate(now),
            file: role.to_string(),
            inode: ino,
            header: hex(&head[..header.len as usize]),
            db_iteration,
            db_identifier: header.db_identifier.map(|d| hex(&d)),
            db_inode: db_ino,
            started_at: now,
            segments: Vec::new(),
            commits: Vec::new(),
            pages: Vec::new(),
            bases: Vec::new(),
            marks: Vec::new(),
            closed: None,
            prev: None,
        };
        let mut g = g;
        if let Some(p) = self.pending.take()
            && p.iteration == db_iteration
            && p.db_ino == db_ino
        {
            g.bases.push(BaseMark {
                snapshot: p.snapshot,
                wal_len: 0,
            });
        }
        tracing::info!(event = "archive.generation", generation = %g.id, wal = role, db_iteration, "following a new WAL");
        self.following.push(Followed {
            header: head[..header.len as usize].to_vec(),
            g,
            file,
            ino,
            seen: 0,
            open: None,
            guard: Vec::new(),
            written: false,
            first_seen: Default::default(),
        });
        self.want_base();
        Ok(())
    }

    /// Archives what the `i`-th followed WAL gained. Returns why its
    /// generation must close, if it must.
    fn advance(
        &mut self,
        lock: &super::disk::ArchiveLock,
        i: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<CloseReason>, StoreError> {
        let o = &mut self.following[i];
        let size = match o.file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return Ok(Some(CloseReason::Gone)),
        };
        let to = o.g.archived_to().max(o.header.len() as u64);
        if size < o.g.archived_to() {
            if self.undo_checkpoint(lock, i, size)? {
                return Ok(None);
            }
            let o = &self.following[i];
            tracing::info!(event = "archive.truncated", generation = %o.g.id, size, archived_to = o.g.archived_to(), "the WAL shrank below the archived offset");
            return Ok(Some(CloseReason::Truncated));
        }
        // The bytes already archived must still be there.
        let hlen = o.header.len() as u64;
        if read_at(&o.file, 0, hlen).ok().as_deref() != Some(&o.header[..]) {
            return Ok(Some(CloseReason::Rewritten));
        }
        if !o.guard.is_empty() {
            let from = o.g.archived_to() - o.guard.len() as u64;
            if read_at(&o.file, from, o.guard.len() as u64).ok().as_deref() != Some(&o.guard[..]) {
                return Ok(Some(CloseReason::Rewritten));
            }
        }
        o.seen = size;
        if size <= to {
            return Ok(None);
        }
        let file = o.file.try_clone().map_err(|e| StoreError::Io {
            op: "reopen",
            path: self.db.clone(),
            source: e,
        })?;
        let mut close = None;
        let mut from = to;
        while from < size {
            let buf = read_at(&file, from, size - from).map_err(|e| StoreError::Io {
                op: "read",
                path: self.db.clone(),
                source: e,
            })?;
            let walked = wal::entries(&buf, 0, 0);
            let Some(last) = walked.commits.last().map(|c| c.end) else {
                if matches!(walked.end, End::BadChecksum { .. } | End::Malformed { .. }) {
                    close = Some(CloseReason::Damaged);
                }
                break;
            };
            let seen = &mut self.following[i].first_seen;
            let marks: Vec<CommitMark> = walked
                .commits
                .iter()
                .map(|c| CommitMark {
                    end: from + c.end,
                    at: *seen.entry(from + c.end).or_insert(now),
                    optimistic: c.optimistic,
                    checkpoint: c.checkpoint,
                })
                .collect();
            let optimistic = marks.iter().any(|c| c.optimistic);
            self.append(lock, i, from, &buf[..last as usize], marks)?;
            if optimistic {
                self.want_base();
            }
            if matches!(walked.end, End::BadChecksum { .. } | End::Malformed { .. }) {
                close = Some(CloseReason::Damaged);
                break;
            }
            from += last;
        }
        let o = &self.following[i];
        if close == Some(CloseReason::Damaged) {
            tracing::error!(event = "archive.damaged", generation = %o.g.id, offset = o.g.archived_to(), "an entry of the WAL fails its checksum: DuckDB will refuse it; the commits before it are archived");
        }
        Ok(close)
    }

    /// A checkpoint that did not complete (the app was killed during it)
    /// leaves its `CHECKPOINT` marker at the WAL's end, and DuckDB's next
    /// open cuts the marker off (`wal_replay.cpp`). When the WAL shrank to
    /// exactly an archived boundary, only checkpoint markers lie past it
    /// and every byte below is unchanged, the archive is cut back there
    /// too and the generation goes on. Returns whether it did.
    fn undo_checkpoint(
        &mut self,
        lock: &super::disk::ArchiveLock,
        i: usize,
        size: u64,
    ) -> Result<bool, StoreError> {
        let archive = self.archive.clone();
        let o = &mut self.following[i];
        let at_boundary = o.g.commits.iter().any(|c| c.end == size && !c.checkpoint);
        let only_markers =
            o.g.commits
                .iter()
                .filter(|c| c.end > size)
                .all(|c| c.checkpoint);
        if !at_boundary || !only_markers {
            return Ok(false);
        }
        let from = size.saturating_sub(GUARD).max(o.header.len() as u64);
        let below = read_at(&o.file, from, size - from).unwrap_or_default();
        let archived = archive.wal_prefix(&o.g, size)?;
        if archived.len() as u64 != size || archived[from as usize..] != below[..] {
            return Ok(false);
        }
        let before = o.g.segments.clone();
        o.g.commits.retain(|c| c.end <= size);
        // An image taken with the marker in its WAL is not of this history.
        o.g.bases.retain(|b| b.wal_len <= size);
        o.g.segments.retain(|s| s.from < size);
        let last = o.g.segments.pop().expect("size is past the header");
        let seg = archive.put_segment(lock, &o.g.id, last.from, &archived[last.from as usize..])?;
        o.open =
            (seg.to - seg.from < SEGMENT_TARGET).then(|| archived[seg.from as usize..].to_vec());
        o.g.segments.push(seg);
        o.guard = below;
        o.seen = size;
        archive.write_generation(lock, &mut o.g)?;
        for s in before.iter().filter(|s| !o.g.segments.contains(s)) {
            archive.drop_segment(lock, &o.g.id, s);
        }
        tracing::info!(event = "archive.checkpoint_undone", generation = %o.g.id, offset = size, "a checkpoint that did not complete was cut off the WAL; the archive follows");
        Ok(true)
    }

    /// Appends WAL bytes `[from, from + data.len())`, which end at a commit
    /// boundary, and their boundaries; writes the record.
    fn append(
        &mut self,
        lock: &super::disk::ArchiveLock,
        i: usize,
        from: u64,
        data: &[u8],
        marks: Vec<CommitMark>,
    ) -> Result<(), StoreError> {
        let archive = self.archive.clone();
        let o = &mut self.following[i];
        // Changed in place and put back if the record cannot be written: a
        // failure leaves the generation as it was, to be tried again. (Not
        // a clone: that would cost every boundary of the generation at
        // every pass.)
        let g = &mut o.g;
        let (segments, commits, pages) = (g.segments.len(), g.commits.len(), g.pages.len());
        // The first bytes archived are the header's.
        let mut bytes = Vec::new();
        let mut start = from;
        let mut replaced = None;
        if g.segments.is_empty() {
            start = 0;
            bytes.extend_from_slice(&o.header);
        } else if let Some(open) = &o.open {
            let last = g.segments.last().expect("an open segment is the last");
            start = last.from;
            bytes.extend_from_slice(open);
            replaced = Some(last.clone());
        }
        bytes.extend_from_slice(data);
        let mut new: Vec<Segment> = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let take = (bytes.len() - at).min(SEGMENT_TARGET as usize);
            new.push(archive.put_segment(lock, &g.id, start + at as u64, &bytes[at..at + take])?);
            at += take;
        }
        let last = new.last().expect("at least one byte");
        let open = (last.to - last.from < SEGMENT_TARGET)
            .then(|| bytes[(last.from - start) as usize..].to_vec());
        let n = marks.len() as u64;
        if replaced.is_some() {
            g.segments.pop();
        }
        g.segments.extend(new);
        g.commits.extend(marks);
        if let Err(e) = archive.write_generation(lock, g) {
            g.segments
                .truncate(segments - usize::from(replaced.is_some()));
            g.segments.extend(replaced);
            g.commits.truncate(commits);
            g.pages.truncate(pages);
            return Err(e);
        }
        if let Some(r) = replaced.filter(|r| !g.segments.contains(r)) {
            archive.drop_segment(lock, &g.id, &r);
        }
        let to = g.archived_to();
        // The guard ended where these bytes begin.
        let mut guard = std::mem::take(&mut o.guard);
        guard.extend_from_slice(data);
        o.guard = guard[guard.len().saturating_sub(GUARD as usize)..].to_vec();
        o.open = open;
        o.written = true;
        o.first_seen.retain(|end, _| *end > to);
        self.progress.commits += n;
        self.progress.last_commit = o.g.commits.last().map(|c| c.at);
        tracing::debug!(event = "archive.commits", generation = %o.g.id, commits = n, offset = to, "commits archived");
        Ok(())
    }

    fn close(
        &mut self,
        lock: &super::disk::ArchiveLock,
        i: usize,
        why: CloseReason,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Forgotten only once its record says it closed: a failed write
        // leaves it followed, to be closed again at the next pass.
        let o = &self.following[i];
        let mut g = o.g.clone();
        let archived = o.g.archived_to().max(o.header.len() as u64);
        g.closed = Some(Closed {
            at: now,
            why,
            unarchived: o.seen.saturating_sub(archived),
        });
        // A WAL that held commits is recorded even when none of them
        // could be archived (every write failed: a full disk): its record
        // is what reports them as an unprotected window. Only a WAL that
        // never held a commit goes unrecorded.
        let held = o.seen > archived || !o.first_seen.is_empty();
        let recorded = o.written || !o.g.bases.is_empty() || held;
        if recorded {
            self.archive.write_generation(lock, &mut g)?;
        }
        let mut o = self.following.remove(i);
        o.g = g;
        if recorded {
            self.seal_links(lock, &o.g);
        }
        tracing::info!(event = "archive.closed", generation = %o.g.id, why = %why, commits = o.g.commits.len(), "a WAL generation ended");
        self.recent.push(o.g);
        if self.recent.len() > 4 {
            self.recent.remove(0);
        }
        if why != CloseReason::Damaged {
            // The database file has a new header, or another file took
            // its place: it needs an image.
            self.want_base();
        }
        Ok(())
    }

    /// The open records that link to `closed` (recorded while it was
    /// open) get its history's hash now. A closed record's link is left
    /// as it is: its own history, which the record after it holds the
    /// hash of, covers that link. A write that fails is only logged: the
    /// close itself stands, and the hash goes out with the record's next
    /// write.
    fn seal_links(&mut self, lock: &super::disk::ArchiveLock, closed: &Generation) {
        let hash = closed.history_hash();
        let archive = self.archive.clone();
        for o in self.following.iter_mut().filter(|o| o.written) {
            if let Some(l) = &mut o.g.prev
                && l.id == closed.id
                && l.hash.is_none()
            {
                l.hash = Some(hash.clone());
                if let Err(e) = archive.write_generation(lock, &mut o.g) {
                    link_failed(&o.g.id, &e);
                }
            }
        }
    }

    /// Archives everything the WAL holds, then records a named restore
    /// point at the last boundary of the WAL the app writes to now — when
    /// archiving works, that WAL is followed, and a base snapshot that
    /// serves the boundary is in the store. `Err` says why not (the caller
    /// takes a snapshot instead).
    pub fn mark(&mut self, req: &MarkRequest, now: DateTime<Utc>) -> Result<Marked, String> {
        self.pass(now);
        if let Some(e) = &self.progress.error {
            return Err(format!("archiving is failing: {e}"));
        }
        let Some(i) = (0..self.following.len()).max_by_key(|&i| self.following[i].g.started_at)
        else {
            return Err(
                "no WAL is being followed (the database was just checkpointed, or is not open)"
                    .into(),
            );
        };
        let o = &self.following[i];
        let end = o.g.archived_to().max(o.header.len() as u64);
        let Some(base) = o.g.base_for(end).map(|b| b.snapshot.clone()) else {
            return Err(
                "no snapshot of this checkpoint's database image serves the boundary yet".into(),
            );
        };
        if !self.store.manifest_exists(&base) {
            return Err(format!(
                "its base snapshot {base} is no longer in the store"
            ));
        }
        let lock = self.archive.lock().map_err(|e| e.to_string())?;
        let o = &mut self.following[i];
        o.g.marks.push(Mark {
            end,
            at: now,
            reason: req.reason.clone(),
            label: req.label.clone(),
            pinned: req.pinned,
        });
        if let Err(e) = self.archive.write_generation(&lock, &mut o.g) {
            o.g.marks.pop();
            return Err(e.to_string());
        }
        o.written = true;
        Ok(Marked {
            point: o.g.point(end),
            at: now,
            base,
        })
    }

    /// Records snapshot `id` as a base of the generations its database
    /// image belongs to: the same database header iteration, and (when it
    /// holds a WAL) the same WAL header.
    pub fn offer(&mut self, id: &SnapshotId) {
        if let Err(e) = self.try_offer(id) {
            tracing::warn!(event = "archive.base_failed", snapshot = %id, error = %e, "could not record a snapshot as a base of the WAL archive");
        }
    }

    fn try_offer(&mut self, id: &SnapshotId) -> Result<(), StoreError> {
        let m = self.store.load_manifest(id)?;
        // Only its committed part: a torn tail is not of any history.
        let theirs = super::points::base_wal(&self.store, &m)?;
        let wal_len = theirs.len() as u64;
        let lock = self.archive.lock()?;
        let mut matched = false;
        let archive = self.archive.clone();
        // Same database header; and its WAL, if any, is this generation's:
        // the same header, and every byte both hold the same. What it is
        // recorded for is its WAL as far as the archive holds it (it ran
        // a pass just before): bytes past that are not of this history —
        // a checkpoint marker the app was killed after, which DuckDB cut
        // off when it opened the database again and wrote commits over
        // (a_base_whose_wal_runs_past_the_archive_serves_the_points_after_it;
        // found by a_checkpoint_every_100_ms_never_restores_anything_wrong).
        let db_now = File::open(&self.db).ok().and_then(|f| ino_of(&f).ok());
        let fits = |g: &Generation| -> Option<u64> {
            if g.db_iteration != m.database.iteration {
                return None;
            }
            if g.db_inode.is_some() && g.db_inode != db_now {
                return None;
            }
            if wal_len == 0 {
                return Some(0);
            }
            if theirs.get(..g.header_len() as usize).map(hex).as_deref() != Some(g.header.as_str())
            {
                return None;
            }
            let n = wal_len.min(g.archived_to());
            archive
                .wal_prefix(g, n)
                .is_ok_and(|ours| ours.len() as u64 == n && ours[..] == theirs[..n as usize])
                .then_some(n)
        };
        let unheld = |g: &Generation, len: u64| {
            if len < wal_len {
                tracing::debug!(event = "archive.base_partial", snapshot = %id, generation = %g.id, wal_len, archived = len, "a base's WAL is longer than the archive: it serves the points up to what the archive holds");
            }
        };
        for o in self.following.iter_mut() {
            if let Some(len) = fits(&o.g)
                && !o.g.bases.iter().any(|b| &b.snapshot == id)
            {
                unheld(&o.g, len);
                o.g.bases.push(BaseMark {
                    snapshot: id.clone(),
                    wal_len: len,
                });
                if o.written {
                    self.archive.write_generation(&lock, &mut o.g)?;
                }
                matched = true;
            }
        }
        for g in self.recent.iter_mut() {
            if let Some(len) = fits(g)
                && !g.bases.iter().any(|b| &b.snapshot == id)
            {
                unheld(g, len);
                g.bases.push(BaseMark {
                    snapshot: id.clone(),
                    wal_len: len,
                });
                self.archive.write_generation(&lock, g)?;
                matched = true;
            }
        }
        if !matched && wal_len == 0 {
            let db_ino = File::open(&self.db).ok().and_then(|f| ino_of(&f).ok());
            self.pending = Some(Pending {
                snapshot: id.clone(),
                iteration: m.database.iteration,
                db_ino,
            });
        }
        tracing::debug!(event = "archive.base", snapshot = %id, matched, "snapshot offered as a base");
        Ok(())
    }
}

/// A running tailer: the engine on its own thread.
pub struct Tailer {
    shared: Arc<Mutex<Shared>>,
    poke: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    offered: Vec<SnapshotId>,
    marks: Vec<(MarkRequest, std::sync::mpsc::Sender<Result<Marked, String>>)>,
    progress: Progress,
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tailer {
    /// Starts following `db`'s WAL into `store`'s archive; returns once the
    /// thread watches and has made its first pass.
    pub fn start(
        db: &Path,
        store: Store,
        level: i32,
        want: Box<dyn FnMut(Want) + Send>,
    ) -> std::io::Result<Tailer> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (poke, wake) = UnixStream::pair()?;
        let engine = Engine::new(db, store, level, want);
        let s = shared.clone();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ducksnap-archive".into())
            .spawn(move || watch::run(engine, &s, &wake, ready))?;
        let _ = started.recv();
        Ok(Tailer {
            shared,
            poke: Some(poke),
            thread: Some(thread),
        })
    }

    /// Offers snapshot `id` as a base image (see [`Engine::offer`]).
    pub fn offer(&self, id: &SnapshotId) {
        lock(&self.shared).offered.push(id.clone());
        if let Some(p) = &self.poke {
            use std::io::Write;
            let _ = (&*p).write(&[1]);
        }
    }

    /// Asks the tailer's thread for a named restore point
    /// ([`Engine::mark`]) and waits for it, at most `timeout`.
    pub fn mark(&self, req: MarkRequest, timeout: std::time::Duration) -> Result<Marked, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&self.shared).marks.push((req, tx));
        if let Some(p) = &self.poke {
            use std::io::Write;
            let _ = (&*p).write(&[2]);
        }
        rx.recv_timeout(timeout)
            .map_err(|_| "the archiver did not answer in time".to_string())?
    }

    pub fn progress(&self) -> Progress {
        lock(&self.shared).progress.clone()
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        drop(self.poke.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

mod watch {
    //! The tailer's thread: inotify on the WAL's directory (any change to
    //! a file there wakes it; names are not trusted to filter), and the
    //! poke socket (offers; hang-up stops it).

    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::sync::Mutex;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

    use super::{Engine, Shared, lock};

    pub(super) fn run(
        mut engine: Engine,
        shared: &Mutex<Shared>,
        wake: &UnixStream,
        ready: std::sync::mpsc::SyncSender<()>,
    ) {
        let dir = engine
            .db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // Two queues on the directory: every change (what wakes an idle
        // tailer), and files appearing, renamed or removed only (what ends
        // a busy tailer's gathering at once). While the app is busy only
        // the second is watched, so its writes do not wake the tailer.
        let watch = |mask: AddWatchFlags| {
            let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                .map_err(|e| format!("inotify: {e}"))?;
            ino.add_watch(&dir, mask)
                .map_err(|e| format!("inotify on the database's directory: {e}"))?;
            Ok::<_, String>(ino)
        };
        let files = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE;
        let queues = watch(files | AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE)
            .and_then(|all| Ok((all, watch(files)?)));
        let (ino, named) = match queues {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(event = "archive.no_inotify", error = %e, "cannot follow the WAL: archiving is off");
                lock(shared).progress.note(Err(e), chrono::Utc::now());
                let _ = ready.send(());
                return;
            }
        };
        let _ = wake.set_nonblocking(true);
        let mut ready = Some(ready);
        loop {
            // Events are taken before the pass, never after it: one that
            // arrives during the pass (the header of a WAL just created,
            // written after the pass found it empty) wakes the next poll.
            let _ = ino.read_events();
            let _ = named.read_events();
            let offered = std::mem::take(&mut lock(shared).offered);
            let marks = std::mem::take(&mut lock(shared).marks);
            let last_pass = std::time::Instant::now();
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.pass(chrono::Utc::now());
                for id in &offered {
                    engine.offer(id);
                }
                for (req, tx) in &marks {
                    let _ = tx.send(engine.mark(req, chrono::Utc::now()));
                }
            }));
            if ran.is_err() {
                tracing::error!(
                    event = "archive.panicked",
                    "WAL archiving hit a bug; it starts over from the archive's records"
                );
                engine = engine.fresh();
                engine.progress.note(
                    Err("the archiver panicked and started over".into()),
                    chrono::Utc::now(),
                );
            }
            lock(shared).progress = engine.progress.clone();
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            let mut fds = [
                PollFd::new(ino.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            // A failed pass (a full disk, a store that went away) is tried
            // again after a while even if nothing changes: no event says
            // that the disk has room again.
            let wait = match engine.progress.error {
                Some(_) => PollTimeout::from(RETRY_MS),
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, wait) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
            let poked = fds[1].any().unwrap_or(true);
            if poked {
                let mut b = [0u8; 64];
                match (&*wake).read(&mut b) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            } else if !gather(&named, wake, last_pass) {
                return;
            }
        }
    }

    /// The app is busy (the last pass began less than `GATHER` ago): its
    /// writes until then go into one pass (one segment and record write,
    /// not one per commit), and do not wake the tailer meanwhile (`named`
    /// sees no writes). A poke (a marker asked for, a snapshot offered,
    /// stopping), or a file created, renamed or deleted there (a WAL that
    /// may live only a moment: a checkpoint) ends the wait at once; a
    /// commit after a quiet spell is read at once. False: stop.
    fn gather(named: &Inotify, wake: &UnixStream, last_pass: std::time::Instant) -> bool {
        if let Some(rest) = GATHER.checked_sub(last_pass.elapsed()) {
            let mut fds = [
                PollFd::new(named.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            let ms = u16::try_from(rest.as_millis()).unwrap_or(u16::MAX).max(1);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// How long after a failed pass the next is tried when nothing wakes
    /// the tailer sooner.
    const RETRY_MS: u16 = 5000;

    /// While the app is busy, passes are at least this far apart: the
    /// archive's lag is at most this plus one pass. (250 ms was tried: a
    /// DuckDB 1.4 WAL reused in place — no file event — could then come
    /// and go unseen more often; docs/BENCHMARKS.md (l).)
    const GATHER: std::time::Duration = std::time::Duration::from_millis(100);
}

/// The tailers this process runs, by database path (as configured).
static FOLLOWED: Mutex<Vec<(PathBuf, std::sync::Weak<Tailer>)>> = Mutex::new(Vec::new());

/// Registers `t` as the tailer of `db` for as long as it lives.
pub fn register(db: &Path, t: &Arc<Tailer>) {
    let mut f = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    f.retain(|(_, w)| w.strong_count() > 0);
    f.push((db.to_path_buf(), Arc::downgrade(t)));
}

/// The tailer this process runs for `db`, if any.
pub fn followed(db: &Path) -> Option<Arc<Tailer>> {
    let f = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    f.iter()
        .filter(|(p, _)| p == db)
        .find_map(|(_, w)| w.upgrade())
}
