//! Why DuckDB would refuse to open a database, and what its next open
//! would do, read from the files without DuckDB and without writing a
//! byte: the main header (magic, encryption, storage version), who holds
//! DuckDB's lock, and the WAL read as a stream of commits ([`super::wal`])
//! against DuckDB's replay rules (`src/storage/wal_replay.cpp` at main
//! `044a04a`): `ReplayVersion` (:761-802) refuses a WAL whose database
//! identifier differs from the file's ("WAL does not match database
//! file.") and one whose checkpoint iteration is neither the file's nor one
//! below it (one below only when the WAL ends in a checkpoint marker);
//! `ReplayLog` (:455-600) ignores a torn tail (a serialization error),
//! refuses every other error ("Corrupt WAL file: entry at byte position
//! …"), and reads `.wal.checkpoint` only when `.wal` ends in a complete
//! checkpoint marker. docs/ARCHITECTURE.md, "Diagnosis", lists the
//! messages as PyPI's duckdb 2.0.1 prints them; `tests/it/doctor.rs`
//! damages real files and checks each finding against DuckDB's own refusal.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::duckfile::{
    BUNDLED_STORAGE_VERSION, Header, HeaderError, wal_checkpoint_path, wal_path,
};
use super::oslock::{self, LockKind};
use super::wal::{self, End, WalError};

/// Where the main header keeps the database identifier a WAL is bound to
/// (`MainHeader::DB_IDENTIFIER_LEN` = 16 bytes; measured: the WAL header
/// of a file written by duckdb 2.0.1 carries exactly these bytes).
const DB_IDENTIFIER: std::ops::Range<usize> = 124..140;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing is wrong; said for completeness.
    Note,
    /// DuckDB opens the database, but commits are not in it.
    Loses,
    /// DuckDB will not open the database.
    Blocks,
}

/// One thing found, with what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// No file at the path.
    Missing,
    /// Something other than a regular file at the path.
    NotAFile,
    /// Not a DuckDB database file (DuckDB: "exists, but it is not a valid
    /// DuckDB database file!").
    NotDuckDb { reason: String },
    /// Encrypted (`ENCRYPTION_KEY`): its headers cannot be read without
    /// the key.
    Encrypted,
    /// Written in a storage version newer than the bundled DuckDB reads
    /// (DuckDB: "Trying to read a database file with version number …").
    NewerStorage {
        storage_version: u64,
        newest_readable: u64,
    },
    /// A process holds DuckDB's lock: an app's read-write open fails with
    /// "Could not set lock on file … Conflicting lock is held in … (PID …)".
    Locked {
        pid: Option<i32>,
        program: Option<String>,
    },
    /// The WAL cannot be read as one (too short for its header, a header
    /// that does not parse, a version this build does not read).
    WalUnreadable { reason: String },
    /// The WAL is encrypted: its entries cannot be checked.
    WalEncrypted,
    /// The WAL was written for another database file.
    WalOtherDatabase {
        wal_identifier: String,
        database_identifier: String,
    },
    /// The WAL belongs to another checkpoint iteration of this file.
    WalIteration { wal: u64, database: u64 },
    /// An entry fails its checksum: DuckDB refuses the whole WAL. The
    /// commits before it are intact.
    WalBadChecksum {
        /// The byte position DuckDB's message names (the entry's body).
        position: u64,
        /// 1-based: the entry's number, and how many frames the WAL holds.
        entry: u64,
        entries: u64,
        /// 1-based: the commit the bad entry is part of.
        commit: u64,
        intact_commits: u64,
        /// Bytes from the end of the last intact commit to the WAL's end:
        /// what a WAL cut back to its intact commits leaves out.
        bytes_after: u64,
    },
    /// An entry verified but is not a WAL entry: DuckDB refuses the WAL.
    WalMalformed {
        offset: u64,
        entry: u64,
        commit: u64,
        intact_commits: u64,
        bytes_after: u64,
        reason: String,
    },
    /// The WAL ends in a piece of an entry (a crash mid-write): DuckDB
    /// ignores it; so is the unfinished commit it belonged to.
    WalTornTail {
        offset: u64,
        bytes: u64,
        intact_commits: u64,
    },
    /// A `.wal.checkpoint` (commits made while a checkpoint ran that was
    /// interrupted) that DuckDB replays at the next open: `.wal` ends in
    /// its checkpoint marker.
    CheckpointWalReplayed { bytes: u64 },
    /// A `.wal.checkpoint` that DuckDB will not read (`.wal` does not end
    /// in a checkpoint marker): the commits in it are not in the database.
    CheckpointWalIgnored { bytes: u64, commits: u64 },
    /// A `.wal.recovery` left by a recovery that did not finish.
    RecoveryWal { bytes: u64 },
    /// Nothing above explains it, but the bundled DuckDB refused to open
    /// the database read-only (`ducksnap doctor` tries when nothing blocks
    /// and nobody holds it): a replay bug, damage inside the file.
    Refused { message: String },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::Missing
            | Finding::NotAFile
            | Finding::NotDuckDb { .. }
            | Finding::NewerStorage { .. }
            | Finding::Locked { .. }
            | Finding::WalUnreadable { .. }
            | Finding::WalOtherDatabase { .. }
            | Finding::WalIteration { .. }
            | Finding::WalBadChecksum { .. }
            | Finding::WalMalformed { .. }
            | Finding::Refused { .. } => Severity::Blocks,
            Finding::CheckpointWalIgnored { .. } => Severity::Loses,
            Finding::Encrypted
            | Finding::WalEncrypted
            | Finding::WalTornTail { .. }
            | Finding::CheckpointWalReplayed { .. }
            | Finding::RecoveryWal { .. } => Severity::Note,
        }
    }

    /// What it is, in a sentence or two.
    pub fn message(&self) -> String {
        match self {
            Finding::Missing => "there is no file at this path".into(),
            Finding::NotAFile => "this path is not a regular file".into(),
            Finding::NotDuckDb { reason } => format!(
                "this is not a DuckDB database file ({reason}); DuckDB says \"exists, but it is not a valid DuckDB database file!\""
            ),
            Finding::Encrypted => {
                "the database is encrypted (ENCRYPTION_KEY): its headers and WAL cannot be read without the key, so nothing more can be said".into()
            }
            Finding::NewerStorage {
                storage_version,
                newest_readable,
            } => format!(
                "the file is in DuckDB storage version {storage_version}; ducksnap's DuckDB reads up to {newest_readable}, and an app whose duckdb package is older than the one that wrote it refuses it (\"Trying to read a database file with version number …\")"
            ),
            Finding::Locked { pid, program } => format!(
                "{} holds DuckDB's lock on the file: another process's open fails with \"Could not set lock on file\"",
                holder(*pid, program.as_deref())
            ),
            Finding::WalUnreadable { reason } => format!("the WAL cannot be read: {reason}"),
            Finding::WalEncrypted => {
                "the WAL is encrypted: its entries cannot be checked without the key".into()
            }
            Finding::WalOtherDatabase {
                wal_identifier,
                database_identifier,
            } => format!(
                "the WAL belongs to another database file (its identifier {wal_identifier}, the file's {database_identifier}); DuckDB says \"WAL does not match database file.\""
            ),
            Finding::WalIteration { wal, database } => format!(
                "the WAL was written for checkpoint iteration {wal} of this file, which is at iteration {database}; DuckDB says \"the WAL checkpoint iteration does not match the database file\""
            ),
            Finding::WalBadChecksum {
                position,
                entry,
                entries,
                commit,
                intact_commits,
                bytes_after,
            } => format!(
                "the WAL fails its checksum at byte position {position} (entry {entry} of {entries}, in commit {commit}); DuckDB says \"Corrupt WAL file: entry at byte position {position} …\" and opens nothing. The {intact_commits} commit(s) before it are intact; {bytes_after} byte(s) from there on are not"
            ),
            Finding::WalMalformed {
                offset,
                entry,
                commit,
                intact_commits,
                bytes_after,
                reason,
            } => format!(
                "WAL entry {entry} at byte {offset} (in commit {commit}) passes its checksum but is not a WAL entry ({reason}); DuckDB refuses the WAL. The {intact_commits} commit(s) before it are intact; {bytes_after} byte(s) from there on are not"
            ),
            Finding::WalTornTail {
                offset,
                bytes,
                intact_commits,
            } => format!(
                "the WAL ends in {bytes} byte(s) of an unfinished entry at byte {offset} (a crash while writing): DuckDB ignores them and opens the {intact_commits} commit(s) before"
            ),
            Finding::CheckpointWalReplayed { bytes } => format!(
                "a .wal.checkpoint of {bytes} byte(s) is left by a checkpoint that was interrupted; the .wal ends in its marker, so DuckDB replays it at the next open"
            ),
            Finding::CheckpointWalIgnored { bytes, commits } => format!(
                "a .wal.checkpoint of {bytes} byte(s) holding {commits} commit(s) is left by a checkpoint that was interrupted, but the .wal does not end in its marker: DuckDB will not read it, so those commits are not in the database"
            ),
            Finding::RecoveryWal { bytes } => format!(
                "a .wal.recovery of {bytes} byte(s) is left by a recovery that did not finish; DuckDB does not read it at open"
            ),
            Finding::Refused { message } => {
                format!("DuckDB refuses to open it read-only: {message}")
            }
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> String {
        const KEEP: &str = "first copy the database and its .wal files aside as they are (cp -p), and delete nothing";
        match self {
            Finding::Missing | Finding::NotAFile => {
                "check database.path in the config; `ducksnap restore --as-of now --to PATH` writes the newest snapshot elsewhere".into()
            }
            Finding::NotDuckDb { .. } => {
                "another file took its place: `ducksnap restore --as-of now --to PATH` writes the newest snapshot elsewhere to compare".into()
            }
            Finding::Encrypted | Finding::WalEncrypted => "nothing ducksnap can check".into(),
            Finding::NewerStorage {
                storage_version, ..
            } => format!(
                "upgrade the app's duckdb package to the release that wrote storage version {storage_version} (`ducksnap version` names ducksnap's)"
            ),
            Finding::Locked { pid, .. } => match pid {
                Some(p) => format!(
                    "close that connection or stop the process (PID {p}), then open again; if it is an app that hangs, `kill {p}`"
                ),
                None => "close the other connection, then open again".into(),
            },
            Finding::WalUnreadable { .. }
            | Finding::WalOtherDatabase { .. }
            | Finding::WalIteration { .. }
            | Finding::WalBadChecksum { .. }
            | Finding::WalMalformed { .. }
            | Finding::Refused { .. } => format!(
                "{KEEP}; then restore the newest restore point before the damage (`ducksnap list --commits`, then `ducksnap restore ID --to PATH` to look at it first). Deleting the .wal loses every commit since the last checkpoint"
            ),
            Finding::WalTornTail { .. } | Finding::CheckpointWalReplayed { .. } => {
                "nothing: DuckDB handles this at the next open".into()
            }
            Finding::CheckpointWalIgnored { .. } => format!(
                "{KEEP}; the commits exist only in the .wal.checkpoint and in ducksnap's archive when it was archiving (`ducksnap list --commits`)"
            ),
            Finding::RecoveryWal { .. } => {
                "keep it until the database opens and its data is checked".into()
            }
        }
    }

    /// The exit code `ducksnap doctor` gives for it (README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Finding::Missing
            | Finding::NotAFile
            | Finding::NotDuckDb { .. }
            | Finding::Encrypted => 3,
            Finding::Locked { .. } => 8,
            Finding::NewerStorage { .. }
            | Finding::WalUnreadable { .. }
            | Finding::WalOtherDatabase { .. }
            | Finding::WalIteration { .. }
            | Finding::WalBadChecksum { .. }
            | Finding::WalMalformed { .. }
            | Finding::Refused { .. }
            | Finding::CheckpointWalIgnored { .. } => 10,
            Finding::WalEncrypted
            | Finding::WalTornTail { .. }
            | Finding::CheckpointWalReplayed { .. }
            | Finding::RecoveryWal { .. } => 0,
        }
    }
}

fn holder(pid: Option<i32>, program: Option<&str>) -> String {
    match (pid, program) {
        (Some(p), Some(name)) => format!("process {p} ({name})"),
        (Some(p), None) => format!("process {p}"),
        (None, _) => "another open file description (an OFD lock, no PID)".into(),
    }
}

/// What the files say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
    /// The database file's header, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// Commits in the WAL that verify (0 without a WAL).
    pub wal_commits: u64,
    pub wal_bytes: u64,
}

impl Diagnosis {
    /// Whether nothing found keeps DuckDB from opening the database.
    pub fn opens(&self) -> bool {
        self.findings
            .iter()
            .all(|f| f.severity() != Severity::Blocks)
    }
}

/// Reads `db` and its side files (never writing, never opening them with
/// DuckDB).
pub fn examine(db: &Path) -> std::io::Result<Diagnosis> {
    let mut d = Diagnosis {
        findings: Vec::new(),
        header: None,
        wal_commits: 0,
        wal_bytes: 0,
    };
    let file = match File::open(db) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            d.findings.push(Finding::Missing);
            return Ok(d);
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        d.findings.push(Finding::NotAFile);
        return Ok(d);
    }
    if let Some(h) = oslock::conflicting(&file, LockKind::Write)? {
        d.findings.push(Finding::Locked {
            pid: h.pid,
            program: h.pid.and_then(program_of),
        });
    }
    let header = match Header::read_at(&file, db) {
        Ok(h) => h,
        Err(HeaderError::NotDuckDb { reason, .. }) => {
            d.findings.push(Finding::NotDuckDb { reason });
            return Ok(d);
        }
        Err(HeaderError::Encrypted { .. }) => {
            d.findings.push(Finding::Encrypted);
            return Ok(d);
        }
        Err(HeaderError::Io { source, .. }) => return Err(source),
    };
    d.header = Some(header);
    if header.storage_version > BUNDLED_STORAGE_VERSION {
        d.findings.push(Finding::NewerStorage {
            storage_version: header.storage_version,
            newest_readable: BUNDLED_STORAGE_VERSION,
        });
    }
    let mut main = [0u8; 4096];
    let got = file.read_at(&mut main, 0)?;
    let identifier = (got >= DB_IDENTIFIER.end).then(|| &main[DB_IDENTIFIER]);
    let wal = read_optional(&wal_path(db))?;
    let ends_in_marker = match &wal {
        Some(bytes) => {
            d.wal_bytes = bytes.len() as u64;
            examine_wal(bytes, identifier, header.iteration, &mut d)
        }
        None => false,
    };
    if let Some(bytes) = read_optional(&wal_checkpoint_path(db))? {
        let len = bytes.len() as u64;
        d.findings.push(if ends_in_marker {
            Finding::CheckpointWalReplayed { bytes: len }
        } else {
            let commits = wal::scan(&bytes).map_or(0, |s| s.walked.commits.len() as u64);
            Finding::CheckpointWalIgnored {
                bytes: len,
                commits,
            }
        });
    }
    let recovery = super::duckfile::side_path(db, ".wal.recovery");
    if let Ok(m) = fs::symlink_metadata(&recovery) {
        d.findings.push(Finding::RecoveryWal { bytes: m.len() });
    }
    Ok(d)
}

/// The WAL's findings; returns whether it ends in a checkpoint marker
/// (then DuckDB reads `.wal.checkpoint`).
fn examine_wal(bytes: &[u8], identifier: Option<&[u8]>, iteration: u64, d: &mut Diagnosis) -> bool {
    if bytes.is_empty() {
        // DuckDB deletes an empty WAL at open (`ReplayLog`: "it is empty").
        return false;
    }
    let scan = match wal::scan(bytes) {
        Ok(s) => s,
        Err(WalError::Encrypted) => {
            d.findings.push(Finding::WalEncrypted);
            return false;
        }
        Err(e) => {
            d.findings.push(Finding::WalUnreadable {
                reason: e.to_string(),
            });
            return false;
        }
    };
    let commits = &scan.walked.commits;
    d.wal_commits = commits.len() as u64;
    // DuckDB's marker is a `CHECKPOINT` entry and a flush, last.
    let ends_in_marker = commits.last().is_some_and(|c| c.checkpoint);
    if let (Some(w), Some(f)) = (scan.header.db_identifier, identifier)
        && w[..] != f[..]
    {
        d.findings.push(Finding::WalOtherDatabase {
            wal_identifier: hex(&w),
            database_identifier: hex(f),
        });
        return false;
    }
    if let Some(w) = scan.header.iteration {
        // One below the file's only with a checkpoint marker at the end
        // (a crash after the checkpoint wrote the file, before the WAL
        // was truncated).
        let fits = w == iteration || (w + 1 == iteration && ends_in_marker);
        if !fits {
            d.findings.push(Finding::WalIteration {
                wal: w,
                database: iteration,
            });
        }
    }
    let intact = commits.len() as u64;
    let committed_to = scan.committed_to();
    let len = bytes.len() as u64;
    match &scan.walked.end {
        End::Clean => {}
        End::Torn { offset } => {
            d.findings.push(Finding::WalTornTail {
                offset: *offset,
                bytes: len - offset,
                intact_commits: intact,
            });
        }
        End::BadChecksum { offset, index, .. } => {
            d.findings.push(Finding::WalBadChecksum {
                position: offset + 16,
                entry: index + 1,
                entries: index + frames_from(bytes, *offset),
                commit: intact + 1,
                intact_commits: intact,
                bytes_after: len - committed_to,
            });
        }
        End::Malformed {
            offset,
            index,
            reason,
        } => {
            d.findings.push(Finding::WalMalformed {
                offset: *offset,
                entry: index + 1,
                commit: intact + 1,
                intact_commits: intact,
                bytes_after: len - committed_to,
                reason: reason.clone(),
            });
        }
    }
    ends_in_marker
}

/// How many frames follow one another from `offset` by their size fields
/// alone (checksums not checked): the count past a bad entry is a guess
/// that holds when only entry bodies were damaged.
fn frames_from(bytes: &[u8], mut offset: u64) -> u64 {
    let len = bytes.len() as u64;
    let mut n = 0;
    while len - offset >= 16 {
        let at = offset as usize;
        let size = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if size > len - offset - 16 {
            break;
        }
        offset += 16 + size;
        n += 1;
    }
    n.max(1)
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            if !f.metadata()?.is_file() {
                return Ok(None);
            }
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The program a process runs (`/proc/PID/comm`), when it can be read.
fn program_of(pid: i32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::frames_from;

    #[test]
    fn frames_are_counted_by_their_sizes() {
        let mut b = Vec::new();
        for size in [3u64, 0, 5] {
            b.extend(size.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend(vec![7u8; size as usize]);
        }
        assert_eq!(frames_from(&b, 0), 3);
        assert_eq!(frames_from(&b, 19), 2);
        // A size past the end stops the count.
        b.extend(100u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        assert_eq!(frames_from(&b, 0), 3);
    }
}
