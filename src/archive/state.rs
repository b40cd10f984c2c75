//! How the archive stands against the live WAL, read from the records and
//! the WAL files alone (no daemon needed): what `status`, `status --check`
//! and the metrics file report. The live WAL's commits past what the
//! archive holds are counted by walking its bytes; how long they have
//! waited is bounded below by the file's modification time (every one of
//! them was written at or before it).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::disk::BadRecord;
use super::points::{self, Timeline};
use super::{Archive, Generation};
use crate::database::{duckfile, wal};
use crate::store::{Result, Store};

/// The archive's records, with the bases its store no longer holds left
/// out, and the timeline they give.
pub struct Read {
    pub archive: Archive,
    pub generations: Vec<Generation>,
    pub bad: Vec<BadRecord>,
    pub timeline: Timeline,
}

/// Reads `store`'s archive.
pub fn read(store: &Store, level: i32) -> Result<Read> {
    let archive = Archive::of(store, level);
    let (mut generations, bad) = archive.generations()?;
    let catalog = store.catalog()?;
    let present: std::collections::HashSet<_> = catalog.iter().map(|s| &s.id).collect();
    for g in &mut generations {
        g.bases.retain(|b| present.contains(&b.snapshot));
    }
    let images: Vec<_> = catalog
        .iter()
        .filter_map(|s| Some((s.created_at, s.db_iteration?)))
        .collect();
    let timeline = points::timeline(&generations, &images);
    Ok(Read {
        archive,
        generations,
        bad,
        timeline,
    })
}

/// The live WAL's bytes and commits the archive does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behind {
    /// Bytes past the archived offset (a WAL no record follows: all of
    /// them).
    pub bytes: u64,
    /// Complete commits among them (`None`: the bytes cannot be walked —
    /// not a WAL ducksnap reads).
    pub commits: Option<u64>,
    /// Every one of those commits was written at or before this (the WAL
    /// file's modification time); `None` when there is none.
    pub since: Option<DateTime<Utc>>,
    /// Why the live WAL cannot be archived at all (encrypted, a version
    /// this build does not read): its commits are protected by snapshots
    /// only.
    pub refused: Option<String>,
}

/// How the archive stands.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// When the newest archived commit was seen.
    pub last_commit: Option<DateTime<Utc>>,
    /// `None`: no WAL file is there.
    pub behind: Option<Behind>,
    pub unprotected_windows: usize,
    /// When the newest unprotected window ended.
    pub last_unprotected: Option<DateTime<Utc>>,
    /// Archive records that cannot be read.
    pub damaged_records: usize,
}

/// How `r` stands against the live WAL files of database `db`.
pub fn standing(r: &Read, db: &Path) -> Standing {
    let real = crate::database::dbpath::real_path(db).unwrap_or_else(|_| db.to_path_buf());
    let mut behind: Option<Behind> = None;
    for (role, path) in [
        ("wal", duckfile::wal_path(&real)),
        ("wal.checkpoint", duckfile::wal_checkpoint_path(&real)),
    ] {
        let Some(b) = behind_of(r, role, &path) else {
            continue;
        };
        let acc = behind.get_or_insert_with(Behind::default);
        acc.bytes += b.bytes;
        acc.commits = match (acc.commits, b.commits) {
            (Some(x), Some(y)) => Some(x + y),
            _ => None,
        };
        acc.since = acc.since.into_iter().chain(b.since).min();
        acc.refused = acc.refused.take().or(b.refused);
    }
    Standing {
        last_commit: r
            .generations
            .iter()
            .filter_map(|g| g.commits.last().map(|c| c.at))
            .max(),
        behind,
        unprotected_windows: r.timeline.unprotected.len(),
        last_unprotected: r.timeline.unprotected.iter().map(|w| w.to).max(),
        damaged_records: r.bad.len(),
    }
}

/// What the WAL file at `path` holds past the archive (`None`: no file).
fn behind_of(r: &Read, role: &str, path: &Path) -> Option<Behind> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let open = r
        .generations
        .iter()
        .find(|g| g.closed.is_none() && g.file == role && g.inode == (meta.dev(), meta.ino()));
    let from = open.map_or(0, |g| g.archived_to());
    let bytes = meta.len().saturating_sub(from);
    let mut b = Behind {
        bytes,
        commits: Some(0),
        since: None,
        refused: None,
    };
    if bytes == 0 {
        return Some(b);
    }
    let all = std::fs::read(path).ok();
    // Only the commits past the archived offset count: walked from the
    // header (a WAL no record follows) or from that offset.
    let start = match (open, &all) {
        (Some(_), _) => Some(from),
        (None, Some(all)) => match wal::scan(all) {
            Ok(s) => Some(s.header.len),
            // A header still being written is not a refusal.
            Err(e @ (wal::WalError::Encrypted | wal::WalError::Version(_))) => {
                b.refused = Some(e.to_string());
                None
            }
            Err(wal::WalError::Short(_) | wal::WalError::Header(_)) => None,
        },
        (None, None) => None,
    };
    b.commits = all.zip(start).map(|(all, start)| {
        let walked = wal::entries(&all, start.min(all.len() as u64), 0);
        walked.commits.len() as u64
    });
    if b.commits != Some(0) {
        b.since = meta.modified().ok().map(DateTime::<Utc>::from);
    }
    Some(b)
}
