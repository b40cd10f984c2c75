//! What the archive records about one WAL generation — one WAL file from
//! its header to the moment it was deleted, truncated or replaced — and the
//! restore points it holds: the segments that hold its bytes (contiguous
//! from offset 0), every commit boundary with the time ducksnap saw it,
//! and why the generation ended. Also the id of a commit restore point
//! (`<generation>@<offset>`). Pure: nothing here touches a file.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::SnapshotId;

/// The record format this build writes: 3 links each record to the one
/// recorded before it ([`Link`], [`super::chain`]); 2 sealed commit
/// boundaries into pages ([`CommitPage`]). It also reads formats 1 (every
/// boundary in the record itself) and 2 (no link).
pub const GENERATION_FORMAT: u32 = 3;

/// Commit boundaries per sealed page: the record rewritten at every pass
/// holds at most this many boundaries besides its pages, so a pass costs
/// the same at the generation's 100th commit as at its 100,000th.
pub const PAGE_COMMITS: usize = 1024;

/// Longest segment the archive writes (and accepts from a record).
pub const MAX_SEGMENT: u64 = 16 << 20;

/// One WAL generation as archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    pub format: u32,
    /// When ducksnap first saw this WAL, in the form of a snapshot id (the
    /// first half of every point id in it).
    pub id: SnapshotId,
    /// Which file: `wal` (`<db>.wal`) or `wal.checkpoint` when first seen.
    pub file: String,
    /// (device, inode) of the WAL file.
    pub inode: (u64, u64),
    /// The WAL's header bytes, hex: it binds the WAL to one database file
    /// (and, from storage 66 on, one checkpoint iteration).
    pub header: String,
    /// The database header iteration this WAL applies to: the WAL header's
    /// own where it has one, else the database's active header read when
    /// the WAL was first seen.
    pub db_iteration: u64,
    /// The database file's identifier (main header bytes 124..140, hex),
    /// from the WAL header where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_identifier: Option<String>,
    /// (device, inode) of the database file when the WAL was first seen: a
    /// snapshot taken after the file was replaced (a restore, a database
    /// made anew) is never one of this generation's bases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_inode: Option<(u64, u64)>,
    pub started_at: DateTime<Utc>,
    /// The archived bytes, in order, contiguous from 0.
    pub segments: Vec<Segment>,
    /// Every commit boundary archived, in order. In the record file,
    /// only those after the ones sealed in `pages`; as read
    /// ([`super::disk::Archive::generations`]) and in memory, all of them.
    pub commits: Vec<CommitMark>,
    /// The first boundaries, sealed in immutable page files, in order:
    /// they cover a prefix of `commits`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<CommitPage>,
    /// Snapshots whose database image belongs to this generation (same
    /// database header), in the order they were offered: each serves every
    /// boundary whose last optimistic commit it holds.
    #[serde(default)]
    pub bases: Vec<BaseMark>,
    /// Named restore points asked for (a `pre-delete` request over the
    /// socket): a marker at a boundary instead of a snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    /// Set once nothing more will be added, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed>,
    /// The generation recorded just before this one (format 3): its id,
    /// and the hash of its history once it closed. `None`: the first
    /// record of its archive, or a record of an earlier format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Link>,
}

/// A record's link to the one recorded before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub id: SnapshotId,
    /// [`Generation::history_hash`] of that generation once it closed
    /// (`None` while it was open when this record was last written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// Bytes `[from, to)` of the WAL, stored as one file named by the BLAKE3 of
/// those bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub hash: String,
    pub from: u64,
    pub to: u64,
}

/// A commit boundary: the WAL cut at `end` replays every commit up to this
/// one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitMark {
    pub end: u64,
    /// When ducksnap saw the commit in the WAL (it was made at or before).
    pub at: DateTime<Utc>,
    /// Its rows are in blocks written to the database file before it
    /// committed: only a base image taken after it can replay it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optimistic: bool,
    /// DuckDB's own checkpoint marker, not an app's transaction.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpoint: bool,
}

/// `count` commit boundaries stored as one file (zstd JSON, a list of
/// [`CommitMark`]) named by the BLAKE3 of its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitPage {
    pub hash: String,
    pub count: u64,
    /// The end of its last boundary: a page that no longer matches the
    /// boundaries in memory (a checkpoint marker cut off) is dropped.
    pub last_end: u64,
}

/// A snapshot that can serve as this generation's base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseMark {
    pub snapshot: SnapshotId,
    /// Bytes of this WAL the snapshot holds and the archive held the same
    /// when it was recorded (0: none): its database image was taken after
    /// every commit ending at or before this offset. Its WAL past this is
    /// never compared or used.
    pub wal_len: u64,
}

/// A named restore point at a boundary of this generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub end: u64,
    pub at: DateTime<Utc>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Kept whatever the recovery window and the reason's rules say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closed {
    pub at: DateTime<Utc>,
    pub why: CloseReason,
    /// WAL bytes past the archived offset that were seen but never
    /// archived (commits the archive does not hold), as far as known.
    #[serde(default)]
    pub unarchived: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseReason {
    /// The WAL was deleted or replaced by another file (a checkpoint).
    Gone,
    /// The WAL became shorter than what was archived (a checkpoint
    /// truncated it, or a crash recovery rewrote it).
    Truncated,
    /// Bytes below the archived offset changed.
    Rewritten,
    /// An entry failed its checksum or did not parse: DuckDB will refuse it.
    Damaged,
    /// The daemon stopped following it (stopped, or archiving turned off)
    /// and found it changed when it came back.
    Lost,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Gone => "the WAL was deleted or replaced (a checkpoint)",
            CloseReason::Truncated => "the WAL was truncated below what was archived",
            CloseReason::Rewritten => "bytes below the archived offset changed",
            CloseReason::Damaged => "an entry failed its checksum",
            CloseReason::Lost => "ducksnap was not following the WAL when it changed",
        })
    }
}

impl Generation {
    /// The offset archived up to (the end of the last segment).
    pub fn archived_to(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.to)
    }

    /// The header's length in bytes.
    pub fn header_len(&self) -> u64 {
        self.header.len() as u64 / 2
    }

    /// The point id of the commit ending at `end`.
    pub fn point(&self, end: u64) -> PointId {
        PointId {
            generation: self.id.clone(),
            end,
        }
    }

    /// The end of the last optimistic commit at or before `end`: a base
    /// image must have been taken after it.
    pub fn needs_image_after(&self, end: u64) -> u64 {
        self.commits
            .iter()
            .take_while(|c| c.end <= end)
            .filter(|c| c.optimistic)
            .map(|c| c.end)
            .last()
            .unwrap_or(0)
    }

    /// The first base that serves the boundary at `end`.
    pub fn base_for(&self, end: u64) -> Option<&BaseMark> {
        self.base_after(self.needs_image_after(end))
    }

    /// The first base whose image was taken after the commit ending at
    /// `need` (0: any): what [`Generation::base_for`] looks up, for a
    /// caller that walks the boundaries in order and tracks `need` itself.
    pub fn base_after(&self, need: u64) -> Option<&BaseMark> {
        self.bases.iter().find(|b| b.wal_len >= need)
    }

    /// How many boundaries, from the first, the pages hold.
    pub fn sealed(&self) -> usize {
        self.pages
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.count as usize))
    }

    /// Drops the pages that no longer hold a prefix of `commits` (after
    /// boundaries were cut off the end).
    pub fn trim_pages(&mut self) {
        let mut at = 0usize;
        let keep = self
            .pages
            .iter()
            .take_while(|p| {
                at = at.saturating_add(p.count as usize);
                p.count > 0 && at <= self.commits.len() && self.commits[at - 1].end == p.last_end
            })
            .count();
        self.pages.truncate(keep);
    }

    /// Whether this build reads the record's format (checked before its
    /// pages are read).
    pub fn check_format(&self) -> Result<(), String> {
        match self.format {
            1 if !self.pages.is_empty() => Err("format 1 has no pages".into()),
            1 | 2 if self.prev.is_some() => Err(format!("format {} has no link", self.format)),
            1 | 2 | GENERATION_FORMAT => Ok(()),
            f => Err(format!(
                "format {f} is not supported (expected 1 to {GENERATION_FORMAT})"
            )),
        }
    }

    /// The BLAKE3 of everything the generation recorded that never
    /// changes once it closed: the WAL's identity, every segment and
    /// boundary, why it ended and its own link — not its bases or marks,
    /// which retention and `pin` change later. The next record keeps it
    /// ([`Link::hash`]), so a closed record that is altered, or replaced
    /// by an older copy of itself, no longer matches.
    pub fn history_hash(&self) -> String {
        #[derive(Serialize)]
        struct History<'a> {
            id: &'a SnapshotId,
            file: &'a str,
            inode: (u64, u64),
            header: &'a str,
            db_iteration: u64,
            db_identifier: &'a Option<String>,
            db_inode: Option<(u64, u64)>,
            started_at: DateTime<Utc>,
            segments: &'a [Segment],
            commits: &'a [CommitMark],
            closed: &'a Option<Closed>,
            prev: &'a Option<Link>,
        }
        let h = History {
            id: &self.id,
            file: &self.file,
            inode: self.inode,
            header: &self.header,
            db_iteration: self.db_iteration,
            db_identifier: &self.db_identifier,
            db_inode: self.db_inode,
            started_at: self.started_at,
            segments: &self.segments,
            commits: &self.commits,
            closed: &self.closed,
            prev: &self.prev,
        };
        let json = serde_json::to_vec(&h).expect("a history serializes");
        blake3::hash(&json).to_hex().to_string()
    }

    /// Everything a record must satisfy before anything trusts it.
    pub fn validate(&self) -> Result<(), String> {
        self.check_format()?;
        if !matches!(self.file.as_str(), "wal" | "wal.checkpoint") {
            return Err(format!("unknown WAL file {:?}", self.file));
        }
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if self.header.is_empty() || !self.header.len().is_multiple_of(2) || !hex(&self.header) {
            return Err("the WAL header is not hex".into());
        }
        if let Some(d) = &self.db_identifier
            && (d.len() != 32 || !hex(d))
        {
            return Err("the database identifier is not 16 bytes of hex".into());
        }
        let mut at = 0;
        for s in &self.segments {
            if s.from != at {
                return Err(format!(
                    "segment {} starts at {} where {at} was expected",
                    s.hash, s.from
                ));
            }
            if s.to <= s.from || s.to - s.from > MAX_SEGMENT {
                return Err(format!("segment {} has an implausible length", s.hash));
            }
            if !crate::store::is_hash(&s.hash) {
                return Err(format!(
                    "segment name {:?} is not a BLAKE3 hex hash",
                    s.hash
                ));
            }
            at = s.to;
        }
        if !self.segments.is_empty() && self.segments[0].to < self.header_len() {
            return Err("the first segment does not hold the header".into());
        }
        let mut last = self.header_len();
        for c in &self.commits {
            if c.end <= last || c.end > at {
                return Err(format!(
                    "commit boundary {} is out of order or past the archived {at}",
                    c.end
                ));
            }
            last = c.end;
        }
        // In order now: a boundary is found by bisection.
        let boundary = |end: u64| self.commits.binary_search_by_key(&end, |c| c.end).is_ok();
        for m in &self.marks {
            if !crate::id::valid_reason(&m.reason) {
                return Err(format!("mark at {} has an invalid reason", m.end));
            }
            if m.end != self.header_len() && !boundary(m.end) {
                return Err(format!("mark at {} is not at a commit boundary", m.end));
            }
        }
        if let Some(l) = &self.prev {
            if l.id == self.id {
                return Err("its link names itself".into());
            }
            if l.hash.as_deref().is_some_and(|h| !crate::store::is_hash(h)) {
                return Err("its link's hash is not a BLAKE3 hex hash".into());
            }
        }
        let mut at = 0usize;
        for p in &self.pages {
            if !crate::store::is_hash(&p.hash) {
                return Err(format!("page name {:?} is not a BLAKE3 hex hash", p.hash));
            }
            at = at.saturating_add(p.count as usize);
            if p.count == 0 || at > self.commits.len() || self.commits[at - 1].end != p.last_end {
                return Err(format!(
                    "page {} does not hold the boundaries up to {}",
                    p.hash, p.last_end
                ));
            }
        }
        Ok(())
    }
}

/// A commit restore point: a generation and the offset of a commit
/// boundary in it, written `<generation>@<offset>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PointId {
    pub generation: SnapshotId,
    pub end: u64,
}

impl PointId {
    /// Reads `<generation>@<offset>`; `None` when `s` has no `@` (then it
    /// is not meant as a point id), an error when it has one but is not
    /// one.
    pub fn parse(s: &str) -> Option<Result<PointId, String>> {
        let (g, off) = s.split_once('@')?;
        Some((|| {
            let generation = SnapshotId::parse(g).map_err(|e| e.to_string())?;
            if off.is_empty() || off.len() > 19 || !off.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "invalid restore point {s:?}: expected GENERATION@OFFSET, the offset in digits"
                ));
            }
            let end = off
                .parse()
                .map_err(|_| format!("invalid offset in {s:?}"))?;
            Ok(PointId { generation, end })
        })())
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.generation, self.end)
    }
}
